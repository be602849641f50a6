/*
 * BAR mmap through the real FUSE node (passthrough onto the device's BAR memfd):
 *
 *   testdev  the passive device's BAR0: MMAP in GET_REGION_INFO; a store through the mapping is
 *            what pread returns and a pwrite is what the mapping loads; two processes' mappings
 *            are one memory; a device reset clears it; the mapping outlives close().
 *   split    the I/OAT engine driven through the mapping by process A while the memory it copies
 *            is process B's (B maps it into the IOAS over the same iommufd).
 *   killed   B, the owner of the memory, is killed while the engine copies it: the channel halts
 *            with CHANERR set, the daemon lives on, and a reset brings the channel back.
 *   storm    100 processes map the I/OAT BAR0 (unbound files: passthrough maps without asking)
 *            and store random values anywhere in it for 3 s, two of them SIGKILLed mid-storm, as
 *            co-tenants scribbling real registers would: afterwards the driver's reset and copy
 *            work, the daemon lives, and its fds and threads are back where they were.
 *   split-shared, killed-shared
 *            the same with B's memory MAP_SHARED, which the daemon copies through its own mapping
 *            of the same pages (core/owner_memory.h) instead of process_vm_readv/writev.
 *   dma      a BAR mapping as DMA memory (Linux's vfio_dma_mapping_mmio_test): iommufd cannot pin
 *            it (a vfio-pci BAR mapping is VM_PFNMAP: pin_user_pages() fails, EFAULT), type1 maps
 *            it (vfio_iommu_type1 follows PFNMAP mappings), and the refusal is for the BAR pages
 *            only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define CHAN 0x80
#define CHANCTRL (CHAN + 0x00)
#define CHANCMD (CHAN + 0x04)
#define DMACOUNT (CHAN + 0x06)
#define CHANSTS (CHAN + 0x08)
#define CHAINADDR (CHAN + 0x10)
#define CHANERR (CHAN + 0x28)
#define CHANCMD_SUSPEND 0x04
#define CHANCMD_RESET 0x20
#define ST_DONE 1
#define ST_SUSPENDED 2
#define ST_HALTED 3

struct desc {
	uint32_t size, ctl;
	uint64_t src, dst, next, rsv[4];
};

#define V8(p, off) (*(volatile uint8_t *)((p) + (off)))
#define V16(p, off) (*(volatile uint16_t *)((p) + (off)))
#define V32(p, off) (*(volatile uint32_t *)((p) + (off)))
#define V64(p, off) (*(volatile uint64_t *)((p) + (off)))

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Polls a channel's state as a driver does: a sleep between looks, at most `secs`. */
static int wait_state(uint8_t *bar, int want, double secs)
{
	const double end = now() + secs;
	for (;;) {
		int s = (int)(V64(bar, CHANSTS) & 7);
		if (s == want || now() > end)
			return s;
		usleep(100);
	}
}

/* CHANCMD RESET, and a wait (at most 5 s) until the channel has taken it. */
static void reset_channel(uint8_t *bar)
{
	V8(bar, CHANCMD) = CHANCMD_RESET;
	const double end = now() + 5;
	while ((V8(bar, CHANCMD) & CHANCMD_RESET) && now() < end)
		usleep(100);
}

static uint8_t *map_bar0(int dev, size_t *size)
{
	struct vfio_region_info r = {.argsz = sizeof(r), .index = VFIO_PCI_BAR0_REGION_INDEX};
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r))
		die("GET_REGION_INFO BAR0");
	EXPECT_EQ(r.flags & VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_MMAP,
		  "BAR0 says it can be mapped");
	void *p = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, (off_t)r.offset);
	if (p == MAP_FAILED)
		die("mmap BAR0");
	if (size)
		*size = r.size;
	return p;
}

static int open_bound(const char *cdev, int *iommufd)
{
	*iommufd = open_node("iommu");
	int dev = open_node(cdev);
	if (bind_iommufd(dev, *iommufd))
		die("BIND %s", cdev);
	return dev;
}

static void test_testdev(void)
{
	int iommufd;
	int dev = open_bound("vfio/devices/vfio0", &iommufd);
	size_t size;
	uint8_t *bar = map_bar0(dev, &size);
	EXPECT_EQ(size, 16384, "testdev BAR0 size");

	V32(bar, 0x40) = 0x11223344;
	uint32_t v = 0;
	EXPECT_OK(pread(dev, &v, 4, 0x40), "pread after a store through the mapping");
	EXPECT_EQ(v, 0x11223344, "pread sees the mapping's store");
	v = 0xa5a5f00d;
	EXPECT_OK(pwrite(dev, &v, 4, 0x3ffc), "pwrite the last word");
	EXPECT_EQ(V32(bar, 0x3ffc), 0xa5a5f00d, "the mapping sees the pwrite");

	/* Another process's mapping is the same memory. */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair");
	pid_t child = fork();
	if (child == 0) {
		test_child("testdev-child");
		close(sv[0]);
		uint8_t *other = map_bar0(dev, NULL);
		EXPECT_EQ(V32(other, 0x40), 0x11223344, "the child's own mapping");
		V64(other, 0x100) = 0x0123456789abcdefULL;
		send_msg(sv[1], 'w');
		expect_msg(sv[1], 'r');
		EXPECT_EQ(V64(other, 0x108), 0x55, "the child sees the parent's store");
		_exit(test_finish());
	}
	close(sv[1]);
	expect_msg(sv[0], 'w');
	EXPECT_EQ(V64(bar, 0x100), 0x0123456789abcdefULL, "the parent sees the child's store");
	V64(bar, 0x108) = 0x55;
	send_msg(sv[0], 'r');
	int status;
	waitpid(child, &status, 0);
	EXPECT_EQ(WIFEXITED(status) && WEXITSTATUS(status) == 0, 1, "the child's checks");

	/* VFIO_DEVICE_RESET: the BAR's memory to its reset contents, mapping included. */
	EXPECT_OK(ioctl(dev, VFIO_DEVICE_RESET), "VFIO_DEVICE_RESET");
	EXPECT_EQ(V32(bar, 0x40), 0, "reset clears what the mapping shows");

	/* The mapping outlives the file, as a mapping of a vfio-pci BAR does (it holds the file). */
	close(dev);
	V32(bar, 0x80) = 0x77;
	EXPECT_EQ(V32(bar, 0x80), 0x77, "the mapping after close()");
	munmap(bar, size);
	close(iommufd);
}

static int ioas_map_errno(int iommufd, uint32_t ioas, void *p, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)p,
		.length = len,
		.iova = iova,
	};
	return ioctl(iommufd, IOMMU_IOAS_MAP, &m) ? errno : 0;
}

static uint64_t ioas_map(int iommufd, uint32_t ioas, void *p, uint64_t iova, uint64_t len)
{
	errno = ioas_map_errno(iommufd, ioas, p, iova, len);
	if (errno)
		die("IOMMU_IOAS_MAP %#llx", (unsigned long long)iova);
	return iova;
}

#define IOVA_DESC 0x100000ULL
#define IOVA_SRC 0x1000000ULL
#define IOVA_DST 0x10000000ULL

/* Process B: maps `bytes` of source and destination and a descriptor ring of `ndesc` copies of
 * `chunk` bytes into the IOAS, tells A, then waits for A's word and checks the copy. */
static int shared_memory; /* B's memory is MAP_SHARED */

static void *owner_memory(size_t size)
{
	if (!shared_memory)
		return alloc_memory(size);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap %#zx shared bytes", size);
	return p;
}

static void memory_owner(int sock, int iommufd, uint32_t ioas, size_t bytes, size_t chunk,
			 int ndesc)
{
	uint8_t *src = owner_memory(bytes), *dst = owner_memory(bytes);
	struct desc *ring = owner_memory(4096);
	for (size_t i = 0; i < bytes; i++)
		src[i] = (uint8_t)(i * 31 + 3);
	for (int n = 0; n < ndesc; n++) {
		const uint64_t off = ((uint64_t)n * chunk) % bytes;
		ring[n] = (struct desc){.size = (uint32_t)chunk,
				       .src = IOVA_SRC + off,
				       .dst = IOVA_DST + off,
				       .next = IOVA_DESC + (uint64_t)((n + 1) % ndesc) * 64};
	}
	ioas_map(iommufd, ioas, src, IOVA_SRC, bytes);
	ioas_map(iommufd, ioas, dst, IOVA_DST, bytes);
	ioas_map(iommufd, ioas, ring, IOVA_DESC, 4096);
	send_msg(sock, 'm');
	expect_msg(sock, 'd');
	EXPECT_EQ(memcmp(src, dst, bytes), 0, "B's destination holds B's source");
}

/* A: resets channel 0 and rings for `count` descriptors of the ring at IOVA_DESC. */
static void start_copy(uint8_t *bar, uint16_t count)
{
	V32(bar, CHANERR) = V32(bar, CHANERR);
	reset_channel(bar);
	EXPECT_EQ(V64(bar, CHANSTS) & 7, ST_HALTED, "halted after the reset");
	V64(bar, CHAINADDR) = IOVA_DESC;
	V16(bar, CHANCTRL) = 0x0008; /* ANY_ERR_ABORT_EN */
	V16(bar, DMACOUNT) = count;
}

static void test_split(int killed)
{
	int iommufd;
	int dev = open_bound("vfio/devices/vfio4", &iommufd);
	const uint32_t ioas = attach_new_ioas(dev, iommufd);
	uint8_t *bar = map_bar0(dev, NULL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair");
	/* killed: 64 MiB copied in 1 MiB pieces 4096 times over (4 GiB): seconds of DMA. */
	const size_t bytes = killed ? (64u << 20) : (1u << 20);
	const size_t chunk = killed ? (1u << 20) : (64u << 10);
	const int ndesc = killed ? 64 : 16;
	pid_t b = fork();
	if (b == 0) {
		test_child(killed ? "memory-owner-killed" : "memory-owner");
		close(sv[0]);
		close(dev);
		memory_owner(sv[1], iommufd, ioas, bytes, chunk, ndesc);
		_exit(test_finish());
	}
	close(sv[1]);
	expect_msg(sv[0], 'm');
	if (!killed) {
		start_copy(bar, (uint16_t)ndesc);
		EXPECT_EQ(wait_state(bar, ST_DONE, 10), ST_DONE, "A's engine finished B's copy");
		EXPECT_EQ(V32(bar, CHANERR), 0, "no CHANERR");
		V8(bar, CHANCMD) = CHANCMD_SUSPEND;
		EXPECT_EQ(wait_state(bar, ST_SUSPENDED, 5), ST_SUSPENDED, "suspended");
		send_msg(sv[0], 'd');
		int status;
		waitpid(b, &status, 0);
		EXPECT_EQ(WIFEXITED(status) && WEXITSTATUS(status) == 0, 1, "B's checks");
	} else {
		start_copy(bar, 4096);
		usleep(100 * 1000);
		EXPECT_EQ(V64(bar, CHANSTS) & 7, 0, "still copying when B dies");
		kill(b, SIGKILL);
		waitpid(b, NULL, 0);
		EXPECT_EQ(wait_state(bar, ST_HALTED, 20), ST_HALTED,
			  "the channel halts on memory whose owner is gone");
		note("CHANERR after the owner died: %#x", V32(bar, CHANERR));
		EXPECT_EQ(V32(bar, CHANERR) != 0, 1, "CHANERR says why");
		/* The device is still the driver's: a reset brings the channel back. */
		reset_channel(bar);
		EXPECT_EQ(V32(bar, CHANERR), 0, "CHANERR clear after the reset");
		EXPECT_EQ(V64(bar, CHANSTS) & 7, ST_HALTED, "halted and clean after the reset");
	}
	close(sv[0]);
	close(dev);
	close(iommufd);
}

static void test_dma_of_bar(void)
{
	int iommufd;
	int dev = open_bound("vfio/devices/vfio0", &iommufd);
	const uint32_t ioas = attach_new_ioas(dev, iommufd); /* a domain: MAP pins at once */
	size_t size;
	uint8_t *bar = map_bar0(dev, &size);
	EXPECT_EQ(ioas_map_errno(iommufd, ioas, bar, 0x100000, size), EFAULT,
		  "IOMMU_IOAS_MAP of the whole BAR mapping: EFAULT");
	EXPECT_EQ(ioas_map_errno(iommufd, ioas, bar + 4096, 0x100000, 4096), EFAULT,
		  "IOMMU_IOAS_MAP of one page of it: EFAULT");
	/* The BAR pages end the range, ordinary memory before them is still pinnable. */
	uint8_t *mem = alloc_memory(2 * 4096);
	EXPECT_EQ(ioas_map_errno(iommufd, ioas, mem, 0x200000, 2 * 4096), 0,
		  "IOMMU_IOAS_MAP of ordinary memory");

	/* type1, on another group of the same unit: the same BAR mapping maps. */
	int group;
	int container = open_type1("2", &group);
	EXPECT_EQ(map_dma(container, bar, 0x100000, size), 0, "type1 MAP_DMA of a BAR mapping");
	uint64_t unmapped = 0;
	EXPECT_EQ(unmap_dma(container, 0x100000, size, &unmapped), 0, "type1 UNMAP_DMA");
	EXPECT_EQ(unmapped, size, "all of it unmapped");
	close(group);
	close(container);
	munmap(bar, size);
	close(dev);
	close(iommufd);
}

/* The number of entries in /proc/PID/<dir> (fd, task). */
static int count_entries(pid_t pid, const char *dir)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, dir);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_storm(void)
{
	const pid_t daemon = daemon_pid();
	int iommufd;
	int dev = open_bound("vfio/devices/vfio4", &iommufd);
	const uint32_t ioas = attach_new_ioas(dev, iommufd);
	uint8_t *bar = map_bar0(dev, NULL);
	const size_t bytes = 1u << 20;
	uint8_t *src = alloc_memory(bytes), *dst = alloc_memory(bytes);
	struct desc *ring = alloc_memory(4096);
	for (size_t i = 0; i < bytes; i++)
		src[i] = (uint8_t)(i * 13 + 1);
	ring[0] = (struct desc){.size = (uint32_t)bytes, .src = IOVA_SRC, .dst = IOVA_DST,
				.next = IOVA_DESC};
	ioas_map(iommufd, ioas, src, IOVA_SRC, bytes);
	ioas_map(iommufd, ioas, dst, IOVA_DST, bytes);
	ioas_map(iommufd, ioas, ring, IOVA_DESC, 4096);
	/* One copy first: what the daemon keeps for a DMA owner (core/owner_memory.h) and what its
	 * worker threads are is there before the count. */
	reset_channel(bar);
	V64(bar, CHAINADDR) = IOVA_DESC;
	V16(bar, CHANCTRL) = 0x0008;
	V16(bar, DMACOUNT) = 1;
	EXPECT_EQ(wait_state(bar, ST_DONE, 10), ST_DONE, "a copy before the storm");
	memset(dst, 0, bytes);
	const int fds_before = count_entries(daemon, "fd");
	const int threads_before = count_entries(daemon, "task");

	enum { kScribblers = 100, kVictim1 = 7, kVictim2 = 42 };
	pid_t kids[kScribblers];
	for (int k = 0; k < kScribblers; k++) {
		kids[k] = fork();
		if (kids[k] < 0)
			die("fork");
		if (kids[k] == 0) {
			int fd = open_node("vfio/devices/vfio4");
			volatile uint8_t *b = mmap(NULL, 0x4000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (b == MAP_FAILED)
				_exit(3);
			uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
			/* 3 s of storm each; the two to be SIGKILLed go on until then (30 s at most), so
			 * a loaded machine's slow forks cannot let them finish first. */
			const double storm_end = now() + (k == kVictim1 || k == kVictim2 ? 30 : 3);
			/* Bounded by time and by count: a loaded machine does fewer rounds. */
			for (long i = 0; i < 50000000 && now() < storm_end; i++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				*(volatile uint64_t *)(b + ((x >> 40) & 0x3ff8)) = x;
			}
			_exit(0);
		}
	}
	usleep(1000 * 1000);
	kill(kids[kVictim1], SIGKILL);
	kill(kids[kVictim2], SIGKILL);
	int clean = 0, killed = 0;
	for (int k = 0; k < kScribblers; k++) {
		int status;
		if (waitpid(kids[k], &status, 0) != kids[k])
			die("waitpid");
		clean += WIFEXITED(status) && WEXITSTATUS(status) == 0;
		killed += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	}
	EXPECT_EQ(clean, kScribblers - 2, "scribblers that ran to their deadline");
	EXPECT_EQ(killed, 2, "scribblers SIGKILLed mid-storm");
	EXPECT_EQ(kill(daemon, 0), 0, "the daemon lives");

	/* The driver takes its channel back: reset, one copy of 1 MiB. */
	V32(bar, CHANERR) = V32(bar, CHANERR);
	reset_channel(bar);
	EXPECT_EQ(V64(bar, CHANSTS) & 7, ST_HALTED, "halted after the reset");
	EXPECT_EQ(V32(bar, CHANERR), 0, "CHANERR clear after the reset");
	V64(bar, CHAINADDR) = IOVA_DESC;
	V16(bar, CHANCTRL) = 0x0008;
	V16(bar, DMACOUNT) = 1;
	EXPECT_EQ(wait_state(bar, ST_DONE, 10), ST_DONE, "the driver's copy after the storm");
	EXPECT_EQ(memcmp(src, dst, bytes), 0, "the copy is right");

	/* The scribblers' files are released (FUSE sends RELEASE asynchronously): what the daemon
	 * holds goes back to what it held before. */
	int fds_after = -1, threads_after = -1;
	for (int i = 0; i < 50; i++) {
		fds_after = count_entries(daemon, "fd");
		threads_after = count_entries(daemon, "task");
		if (fds_after <= fds_before && threads_after <= threads_before + 4)
			break;
		usleep(100 * 1000);
	}
	note("daemon fds %d -> %d, threads %d -> %d", fds_before, fds_after, threads_before,
	     threads_after);
	EXPECT_EQ(fds_after <= fds_before, 1, "no fd left behind");
	/* libfuse keeps up to 4 idle workers after a burst (cuse/fuse_transport.cc): more would be
	 * threads the 100 clients left behind. */
	EXPECT_EQ(threads_after <= threads_before + 4, 1, "no thread left behind");
	close(dev);
	close(iommufd);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	const char *mode = argc > 2 ? argv[2] : "testdev";
	if (strcmp(mode, "testdev") == 0)
		test_testdev();
	else if (strcmp(mode, "split") == 0)
		test_split(0);
	else if (strcmp(mode, "killed") == 0)
		test_split(1);
	else if (strcmp(mode, "storm") == 0)
		test_storm();
	else if (strcmp(mode, "split-shared") == 0)
		shared_memory = 1, test_split(0);
	else if (strcmp(mode, "killed-shared") == 0)
		shared_memory = 1, test_split(1);
	else if (strcmp(mode, "dma") == 0)
		test_dma_of_bar();
	else
		die("unknown mode %s", mode);
	return test_finish();
}
