/*
 * Several processes at once, each with its own IOMMU context: eight processes each put their own
 * group (10..17, eight_groups.toml) in their own type1 container and map and unmap, and four more
 * each map and unmap in an IOAS of their own iommufd. Started together; no process may see
 * another's mappings (its DMA_AVAIL counts only its own), every call succeeds, and at the end each
 * context is empty.
 *
 *   parallel_processes NODE_DIR [ITERATIONS]      (daemon started with eight_groups.toml)
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "client.h"

#define FULL_DMA_AVAIL 65535
#define TYPE1_PROCESSES 8
#define FIRST_GROUP 10
#define IOMMUFD_PROCESSES 4
#define LIVE 8
#define MAP_SIZE 0x2000UL

static int iterations = 300;

/* Each process waits here until all are forked: the parent closes the pipe. */
static void wait_for_start(int start_fd)
{
	char c;
	if (read(start_fd, &c, 1) != 0)
		die("start barrier");
	close(start_fd);
}

static void type1_process(int index)
{
	char group_name[16];
	snprintf(group_name, sizeof(group_name), "%d", FIRST_GROUP + index);
	int group;
	int container = open_type1(group_name, &group);
	char *mem = alloc_memory(LIVE * MAP_SIZE);
	int failures = 0;
	for (int i = 0; i < iterations; i++) {
		int slot = i % LIVE;
		if (i >= LIVE && unmap_dma(container, (uint64_t)slot * MAP_SIZE, MAP_SIZE, NULL))
			failures++;
		if (map_dma(container, mem + slot * MAP_SIZE, (uint64_t)slot * MAP_SIZE, MAP_SIZE))
			failures++;
		/* Only this container's own mappings count; the other processes' do not. */
		int live = i < LIVE ? i + 1 : LIVE;
		if (i % 50 == 0 && dma_avail(container) != FULL_DMA_AVAIL - (uint32_t)live)
			failures++;
	}
	EXPECT_EQ(failures, 0, "group %s: calls that failed or saw another container", group_name);
	struct vfio_iommu_type1_dma_unmap all = {
		.argsz = sizeof(all),
		.flags = VFIO_DMA_UNMAP_FLAG_ALL,
	};
	EXPECT_OK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &all), "group %s: UNMAP_DMA FLAG_ALL",
		  group_name);
	EXPECT_EQ(all.size, LIVE * MAP_SIZE, "group %s: bytes still mapped at the end", group_name);
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL, "group %s: DMA_AVAIL at the end",
		  group_name);
	close(group);
	close(container);
}

static void iommufd_process(int index)
{
	int iommufd = open_node("iommu");
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOAS_ALLOC");
	char *mem = alloc_memory(LIVE * MAP_SIZE);
	int failures = 0;
	for (int i = 0; i < iterations; i++) {
		uint64_t iova = (uint64_t)(i % LIVE) * MAP_SIZE;
		struct iommu_ioas_unmap unmap = {
			.size = sizeof(unmap),
			.ioas_id = alloc.out_ioas_id,
			.iova = iova,
			.length = MAP_SIZE,
		};
		if (i >= LIVE && ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
			failures++;
		struct iommu_ioas_map map = {
			.size = sizeof(map),
			.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
			.ioas_id = alloc.out_ioas_id,
			.user_va = (uintptr_t)(mem + (i % LIVE) * MAP_SIZE),
			.length = MAP_SIZE,
			.iova = iova, /* the same IOVAs in every process: they are separate spaces */
		};
		if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
			failures++;
	}
	EXPECT_EQ(failures, 0, "iommufd process %d: calls that failed", index);
	struct iommu_ioas_unmap all = {
		.size = sizeof(all),
		.ioas_id = alloc.out_ioas_id,
		.iova = 0,
		.length = UINT64_MAX,
	};
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &all), "iommufd process %d: IOAS_UNMAP all",
		  index);
	EXPECT_EQ(all.length, LIVE * MAP_SIZE, "iommufd process %d: bytes mapped at the end",
		  index);
	close(iommufd);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	if (argc > 2)
		iterations = atoi(argv[2]);
	if (iterations < LIVE)
		die("ITERATIONS must be at least %d", LIVE);
	printf("-- %d type1 processes and %d iommufd processes, %d iterations each\n",
	       TYPE1_PROCESSES, IOMMUFD_PROCESSES, iterations);
	int start[2];
	if (pipe(start))
		die("pipe");
	pid_t pids[TYPE1_PROCESSES + IOMMUFD_PROCESSES];
	for (int i = 0; i < TYPE1_PROCESSES + IOMMUFD_PROCESSES; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork");
		if (pids[i] == 0) {
			char name[64];
			snprintf(name, sizeof(name), "parallel_processes (process %d)", i);
			test_child(name);
			close(start[1]);
			wait_for_start(start[0]);
			if (i < TYPE1_PROCESSES)
				type1_process(i);
			else
				iommufd_process(i - TYPE1_PROCESSES);
			_exit(test_finish());
		}
	}
	close(start[0]);
	close(start[1]); /* go */
	for (int i = 0; i < TYPE1_PROCESSES + IOMMUFD_PROCESSES; i++)
		EXPECT_EQ(wait_child(pids[i]), 0, "process %d exit status", i);
	return test_finish();
}
