/*
 * The daemon's limits set with its flags (run with --dma-entry-limit 2 --iommufd-objects 2
 * --ioas-mappings 1 --open-files-per-uid 1):
 * - type1: DMA_AVAIL starts at dma_entry_limit, the next MAP is ENOSPC;
 * - iommufd: a third object is ENOMEM, a second mapping in an IOAS is ENOMEM;
 * - a user other than root may hold one open node file: the second open is ENFILE, and after a
 *   close (its RELEASE arrives asynchronously) it opens again. Root has no such limit.
 *
 *   limits NODE_DIR
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

static void type1_entries(void)
{
	printf("-- dma_entry_limit\n");
	int group;
	int container = open_type1("1", &group);
	EXPECT_EQ(dma_avail(container), 2, "DMA_AVAIL is --dma-entry-limit");
	char *mem = alloc_memory(3 * 4096);
	EXPECT_OK(map_dma(container, mem, 0, 4096), "first MAP_DMA");
	EXPECT_OK(map_dma(container, mem + 4096, 0x1000, 4096), "second MAP_DMA");
	EXPECT_ERRNO(ENOSPC, map_dma(container, mem + 8192, 0x2000, 4096), "third MAP_DMA");
	close(container);
	close(group);
}

static void iommufd_objects_and_mappings(void)
{
	printf("-- iommufd_objects, ioas_mappings\n");
	int iommufd = open_node("iommu");
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc), "first IOAS_ALLOC");
	uint32_t ioas = alloc.out_ioas_id;
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc), "second IOAS_ALLOC");
	EXPECT_ERRNO(ENOMEM, ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc), "third IOAS_ALLOC");
	char *mem = alloc_memory(2 * 4096);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)mem,
		.length = 4096,
		.iova = 0x10000,
	};
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_MAP, &map), "first IOAS_MAP");
	map.user_va += 4096;
	map.iova = 0x20000;
	EXPECT_ERRNO(ENOMEM, ioctl(iommufd, IOMMU_IOAS_MAP, &map), "second IOAS_MAP");
	close(iommufd);
}

/* As uid 65534, through a directory fd taken as root (the test's directory is root's alone). */
static void open_files_of_a_user(void)
{
	printf("-- open_files_per_uid\n");
	int dir = open(node_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		die("open %s", node_dir);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		test_child("user 65534");
		if (setgid(65534) != 0 || setuid(65534) != 0)
			die("setuid");
		int first;
		EXPECT_OK(first = openat(dir, "vfio/vfio", O_RDWR), "the user's first open");
		EXPECT_ERRNO(ENFILE, openat(dir, "vfio/vfio", O_RDWR), "the user's second open");
		close(first);
		/* FUSE sends RELEASE after close() returns: the count drops moments later. */
		int again = -1;
		for (int i = 0; i < 200 && again < 0; i++) {
			again = openat(dir, "vfio/vfio", O_RDWR);
			if (again < 0 && errno != ENFILE)
				break;
			if (again < 0)
				nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
		}
		EXPECT_OK(again, "an open after the close");
		_exit(test_finish());
	}
	EXPECT_EQ(wait_child(pid), 0, "the user's checks");
	/* Root is exempt. */
	int fds[4];
	for (int i = 0; i < 4; i++)
		EXPECT_OK(fds[i] = openat(dir, "vfio/vfio", O_RDWR), "root's open %d", i + 1);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	close(dir);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	type1_entries();
	iommufd_objects_and_mappings();
	open_files_of_a_user();
	return test_finish();
}
