/*
 * A process killed mid-session (SIGKILL while it holds a container with mappings, a group, a
 * bound device cdev, an sPAPR window): when waitpid() has reaped it, Linux has released all its
 * files, so a new process can open the same group at once and finds everything fresh: no EBUSY,
 * the group not in any container, DMA_AVAIL full, the old IOVAs free, the TCE window slots free.
 *
 * Each scenario runs several rounds; in the last rounds the victim is killed while it is busy
 * issuing ioctls, not while it sleeps.
 *
 *   killed_client NODE_DIR
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define ROUNDS 10
#define MAPPINGS 64
#define MAP_SIZE 0x10000UL
#define FULL_DMA_AVAIL 65535

/* What the victim sets up before it is killed. */
enum victim_kind { TYPE1, CDEV, SPAPR };

static const char *const kind_name[] = {"type1 container", "bound cdev", "sPAPR v2 windows"};

/* Tells the parent the victim is set up; the victim then sleeps, or stays busy in ioctls. */
static void victim_ready(int ready_fd)
{
	if (write(ready_fd, "R", 1) != 1)
		_exit(1);
}

static void victim_type1(int ready_fd, int busy)
{
	int group;
	int container = open_type1("1", &group);
	char *mem = alloc_memory(MAPPINGS * MAP_SIZE);
	for (unsigned i = 0; i < MAPPINGS; i++)
		if (map_dma(container, mem + i * MAP_SIZE, i * MAP_SIZE, MAP_SIZE))
			die("victim: MAP_DMA %u", i);
	victim_ready(ready_fd);
	/* Map and unmap one more page forever, so SIGKILL lands in the middle of ioctls. */
	while (busy) {
		map_dma(container, mem, 1ULL << 32, MAP_SIZE);
		unmap_dma(container, 1ULL << 32, MAP_SIZE, NULL);
	}
}

static void victim_cdev(int ready_fd, int busy)
{
	int device = open_node("vfio/devices/vfio0");
	int iommufd = open_node("iommu");
	if (bind_iommufd(device, iommufd))
		die("victim: BIND_IOMMUFD");
	uint32_t ioas = attach_new_ioas(device, iommufd);
	char *mem = alloc_memory(MAPPINGS * MAP_SIZE);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)mem,
		.length = MAPPINGS * MAP_SIZE,
	};
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		die("victim: IOAS_MAP");
	victim_ready(ready_fd);
	char config[64];
	while (busy)
		if (pread(device, config, sizeof(config), 7LL << 40) < 0)
			die("victim: pread");
}

static void victim_spapr(int ready_fd, int busy)
{
	int container = open_node("vfio/vfio");
	int group = open_node("vfio/3");
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) ||
	    ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU))
		die("victim: SET_CONTAINER / SET_IOMMU v2");
	char *mem = alloc_memory(MAPPINGS * MAP_SIZE);
	struct vfio_iommu_spapr_register_memory reg = {
		.argsz = sizeof(reg),
		.vaddr = (uintptr_t)mem,
		.size = MAPPINGS * MAP_SIZE,
	};
	struct vfio_iommu_spapr_tce_create create = {
		.argsz = sizeof(create),
		.page_shift = 12,
		.window_size = 1ULL << 30,
		.levels = 1,
	};
	if (ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg) ||
	    ioctl(container, VFIO_IOMMU_SPAPR_TCE_CREATE, &create))
		die("victim: REGISTER_MEMORY / TCE_CREATE");
	if (map_dma(container, mem, create.start_addr, MAPPINGS * MAP_SIZE))
		die("victim: MAP_DMA");
	victim_ready(ready_fd);
	while (busy) {
		map_dma(container, mem, 0, MAP_SIZE);
		unmap_dma(container, 0, MAP_SIZE, NULL);
	}
}

/* Starts a victim, lets it set up, kills it with SIGKILL and reaps it. */
static void run_and_kill(enum victim_kind kind, int busy)
{
	int ready[2];
	if (pipe(ready))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(ready[0]);
		if (kind == TYPE1)
			victim_type1(ready[1], busy);
		else if (kind == CDEV)
			victim_cdev(ready[1], busy);
		else
			victim_spapr(ready[1], busy);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c;
	if (read(ready[0], &c, 1) != 1)
		die("the victim failed to set up");
	close(ready[0]);
	if (busy) {
		struct timespec t = {0, (long)(rand() % 20) * 1000000L};
		nanosleep(&t, NULL);
	}
	kill(pid, SIGKILL);
	if (wait_child(pid) != 128 + SIGKILL)
		die("the victim did not die of SIGKILL");
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Opens a node right after the kill: it must succeed, and at once (Linux has released the dead
 * process's files by the time waitpid returns). Returns the fd or -1. */
static int open_after_kill(const char *name, int round)
{
	double start = now();
	int fd;
	EXPECT_OK(fd = try_open_node(name), "round %d: open %s right after the kill", round, name);
	double took = now() - start;
	EXPECT_EQ(took < 0.5, 1, "round %d: the open took %.3f s (< 0.5 s)", round, took);
	return fd;
}

static void expect_group_fresh(int group, int round)
{
	struct vfio_group_status status = {.argsz = sizeof(status)};
	EXPECT_OK(ioctl(group, VFIO_GROUP_GET_STATUS, &status), "round %d: GET_STATUS", round);
	EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE,
		  "round %d: group flags (viable, in no container)", round);
}

/* The dead process's group, opened at once and checked fresh, in a new container with an IOMMU
 * of `type`. Returns the container, or -1 if the group did not open (*group_fd: the group). */
static int fresh_container(const char *group_name, int type, int *group_fd, int round)
{
	int group = open_after_kill(group_name, round);
	*group_fd = group;
	if (group < 0)
		return -1;
	expect_group_fresh(group, round);
	int container = open_node("vfio/vfio");
	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), "round %d: SET_CONTAINER",
		  round);
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, type), "round %d: SET_IOMMU %d", round, type);
	return container;
}

static void check_type1_fresh(int round)
{
	int group;
	int container = fresh_container("vfio/1", VFIO_TYPE1v2_IOMMU, &group, round);
	if (container < 0)
		return;
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL, "round %d: DMA_AVAIL", round);
	char *mem = alloc_memory(MAPPINGS * MAP_SIZE);
	EXPECT_OK(map_dma(container, mem, 0, MAPPINGS * MAP_SIZE),
		  "round %d: MAP_DMA over the dead process's IOVAs", round);
	uint64_t unmapped = 0;
	EXPECT_OK(unmap_dma(container, 0, 1ULL << 40, &unmapped), "round %d: UNMAP_DMA", round);
	EXPECT_EQ(unmapped, MAPPINGS * MAP_SIZE, "round %d: bytes unmapped", round);
	munmap(mem, MAPPINGS * MAP_SIZE);
	close(group);
	close(container);
}

static void check_cdev_fresh(int round)
{
	/* The group of the dead process's bound device opens: nothing holds the device. */
	int group = open_after_kill("vfio/1", round);
	if (group < 0)
		return;
	expect_group_fresh(group, round);
	close(group);
	/* BIND is refused while the group is open, and the group's release trails its close(). */
	int device = open_node("vfio/devices/vfio0");
	int iommufd = open_node("iommu");
	EXPECT_OK(bind_iommufd_settled(device, iommufd),
		  "round %d: BIND_IOMMUFD of the dead process's device", round);
	close(device);
	close(iommufd);
}

static void check_spapr_fresh(int round)
{
	int group;
	int container = fresh_container("vfio/3", VFIO_SPAPR_TCE_v2_IOMMU, &group, round);
	if (container < 0)
		return;
	char *mem = alloc_memory(MAPPINGS * MAP_SIZE);
	struct vfio_iommu_spapr_register_memory reg = {
		.argsz = sizeof(reg),
		.vaddr = (uintptr_t)mem,
		.size = MAPPINGS * MAP_SIZE,
	};
	EXPECT_OK(ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg),
		  "round %d: REGISTER_MEMORY", round);
	/* Two window slots: the default window and one more. The dead process's is free again. */
	struct vfio_iommu_spapr_tce_create create = {
		.argsz = sizeof(create),
		.page_shift = 12,
		.window_size = 1ULL << 30,
		.levels = 1,
	};
	EXPECT_OK(ioctl(container, VFIO_IOMMU_SPAPR_TCE_CREATE, &create),
		  "round %d: TCE_CREATE in the slot the dead process had", round);
	EXPECT_OK(map_dma(container, mem, create.start_addr, MAPPINGS * MAP_SIZE),
		  "round %d: MAP_DMA in the new window", round);
	close(group);
	close(container);
	munmap(mem, MAPPINGS * MAP_SIZE);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	srand((unsigned)getpid());
	static void (*const check_fresh[])(int) = {check_type1_fresh, check_cdev_fresh,
						   check_spapr_fresh};
	for (int kind = TYPE1; kind <= SPAPR; kind++) {
		for (int round = 0; round < ROUNDS; round++) {
			int busy = round >= ROUNDS / 2;
			printf("-- %s, round %d: killed while %s\n", kind_name[kind], round,
			       busy ? "busy in ioctls" : "idle");
			run_and_kill((enum victim_kind)kind, busy);
			check_fresh[kind](round);
		}
	}
	return test_finish();
}
