/*
 * store_order: under `vfio-emu run`, stores to the I/OAT engine's mapped BAR0 take effect before
 * the program's next load, as on hardware (tools/store_watch.h):
 *   - after a channel reset, a doorbell followed at once by a CHANSTS load never reads the HALTED
 *     the reset left (Linux's vfio_pci_driver_test mix_and_match does exactly this);
 *   - writing back the CHANERR bits read clears them (write 1 to clear) before the next load.
 * Each from the main thread, a thread started before BAR0 was mapped, a thread started after,
 * and a child process forked after the mapping.
 *
 *   store_order CDEV [rmw]
 *
 * rmw: one `orl $0, (CHANCTRL)` instead, an instruction the watcher does not carry out: the
 * program must die of SIGSEGV (with run's line naming it).
 *
 * Exits 0 when every check held; 2 when the only failures were loads that saw a store not yet
 * taken (what `run --no-store-watch` gives: stores polled); 1 on any other failure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vfio_emu_compat.h"

#define CHAN 0x80
#define CHANCTRL (CHAN + 0x00)
#define CHANCMD (CHAN + 0x04)
#define DMACOUNT (CHAN + 0x06)
#define CHANSTS (CHAN + 0x08)
#define CHAINADDR (CHAN + 0x10)
#define CHANERR (CHAN + 0x28)
#define CMD_RESET 0x20
#define STS_MASK 0x7ull
#define STS_DONE 0x1
#define STS_HALTED 0x3
#define CTRL_ANY_ERR_ABORT_EN 0x0008

struct desc {
	uint32_t size, ctl;
	uint64_t src, dst, next, rsv[4];
};

#define IOVA_MEM 0x100000
#define IOVA_UNMAPPED 0x900000

static volatile uint8_t *bar;
static struct desc *descs; /* [0] a good copy, [1] one whose source is not mapped */
static int stale, other;   /* failures: loads that missed a store, anything else */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

#define R8(o) (*(volatile uint8_t *)(bar + (o)))
#define R32(o) (*(volatile uint32_t *)(bar + (o)))
#define R64(o) (*(volatile uint64_t *)(bar + (o)))
#define W16(o, v) (*(volatile uint16_t *)(bar + (o)) = (uint16_t)(v))
#define W32(o, v) (*(volatile uint32_t *)(bar + (o)) = (uint32_t)(v))
#define W64(o, v) (*(volatile uint64_t *)(bar + (o)) = (uint64_t)(v))

static void die(const char *what)
{
	fprintf(stderr, "store_order: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bad(int *counter, const char *who, const char *what, unsigned long long v)
{
	fprintf(stderr, "store_order: %s: %s (%#llx)\n", who, what, v);
	__atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
}

/* Waits (polling, at most 5 s) until CHANSTS shows `want`. */
static int wait_sts(unsigned want)
{
	const double end = now() + 5;
	while ((R64(CHANSTS) & STS_MASK) != want)
		if (now() > end)
			return -1;
	return 0;
}

/* The selftests' ioat_reset, then their __ioat_memcpy_start of descriptor `d`, with the load
 * that follows. */
static uint64_t reset_and_ring(const char *who, int d)
{
	W32(CHANERR, R32(CHANERR));
	*(volatile uint8_t *)(bar + CHANCMD) = CMD_RESET;
	for (int i = 0; R8(CHANCMD) & CMD_RESET; i++) {
		if (i > 5000) {
			bad(&other, who, "reset not taken in 5 s", R8(CHANCMD));
			return 0;
		}
		usleep(1000);
	}
	if ((R64(CHANSTS) & STS_MASK) != STS_HALTED)
		bad(&other, who, "CHANSTS after the reset is not HALTED", R64(CHANSTS));
	W64(CHAINADDR, IOVA_MEM + (uint64_t)d * sizeof(struct desc));
	W16(CHANCTRL, CTRL_ANY_ERR_ABORT_EN);
	W16(DMACOUNT, 1);
	return R64(CHANSTS) & STS_MASK;
}

static void rounds(const char *who)
{
	pthread_mutex_lock(&mu);
	const double end = now() + 3;
	for (int i = 0; i < 20 && now() < end; i++) {
		/* A good copy: the load right after the doorbell must not see the reset's HALTED. */
		if (reset_and_ring(who, 0) == STS_HALTED)
			bad(&stale, who, "HALTED read right after the doorbell", STS_HALTED);
		if (wait_sts(STS_DONE) != 0) {
			bad(&other, who, "copy not done in 5 s", R64(CHANSTS));
			break;
		}
		/* A copy whose source faults: halted with CHANERR; writing it back clears it. */
		reset_and_ring(who, 1);
		const double until = now() + 5;
		while (((R64(CHANSTS) & STS_MASK) != STS_HALTED || R32(CHANERR) == 0) && now() < until)
			;
		if ((R64(CHANSTS) & STS_MASK) != STS_HALTED || R32(CHANERR) == 0) {
			bad(&other, who, "no halt with CHANERR on a faulting source", R32(CHANERR));
			break;
		}
		const uint32_t err = R32(CHANERR);
		W32(CHANERR, err);
		const uint32_t left = R32(CHANERR);
		if (left != 0)
			bad(&stale, who, "CHANERR written back still reads set", left);
	}
	pthread_mutex_unlock(&mu);
}

static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;
static int started;

static void *early_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&start_mu);
	while (!started)
		pthread_cond_wait(&start_cv, &start_mu);
	pthread_mutex_unlock(&start_mu);
	rounds("thread started before the mapping");
	return NULL;
}

static void *late_thread(void *arg)
{
	(void)arg;
	rounds("thread started after the mapping");
	return NULL;
}

int main(int argc, char **argv)
{
	char path[256];
	if (argc < 2) {
		fprintf(stderr, "usage: store_order CDEV [rmw]\n");
		return 1;
	}
	pthread_t early, late;
	if (pthread_create(&early, NULL, early_thread, NULL))
		die("pthread_create");

	int iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	snprintf(path, sizeof(path), "/dev/vfio/devices/%s", argv[1]);
	int dev = open(path, O_RDWR | O_CLOEXEC);
	if (iommufd < 0 || dev < 0)
		die("open /dev/iommu or the cdev");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) || ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("BIND / IOAS_ALLOC");
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach),
							.pt_id = alloc.out_ioas_id };
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("ATTACH_IOMMUFD_PT");
	/* Memory: the two descriptors, then the copy's source and destination. */
	uint8_t *mem = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap memory");
	struct iommu_ioas_map map = { .size = sizeof(map),
				      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
					       IOMMU_IOAS_MAP_WRITEABLE,
				      .ioas_id = alloc.out_ioas_id,
				      .user_va = (uintptr_t)mem,
				      .length = 3 * 4096,
				      .iova = IOVA_MEM };
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		die("IOMMU_IOAS_MAP");
	descs = (struct desc *)mem;
	for (int d = 0; d < 2; d++) {
		descs[d].size = 4096;
		descs[d].src = d == 0 ? IOVA_MEM + 4096 : IOVA_UNMAPPED;
		descs[d].dst = IOVA_MEM + 2 * 4096;
		descs[d].next = IOVA_MEM + (uint64_t)d * sizeof(struct desc);
	}
	struct vfio_region_info info = { .argsz = sizeof(info), .index = VFIO_PCI_BAR0_REGION_INDEX };
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &info))
		die("GET_REGION_INFO");
	if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		fprintf(stderr, "store_order: BAR0 cannot be mapped here (no FUSE passthrough)\n");
		return 77;
	}
	void *m = mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, (off_t)info.offset);
	if (m == MAP_FAILED)
		die("mmap BAR0");
	bar = m;

	if (argc > 2 && strcmp(argv[2], "rmw") == 0) {
		/* A read-modify-write store, which run's watcher cannot carry out: SIGSEGV. */
		__asm__ volatile("orl $0, (%0)" : : "r"(bar + 0x80) : "memory");
		printf("store_order: the read-modify-write store went through\n");
		return 0;
	}
	rounds("main thread");
	if (pthread_create(&late, NULL, late_thread, NULL))
		die("pthread_create");
	pthread_mutex_lock(&start_mu);
	started = 1;
	pthread_cond_broadcast(&start_cv);
	pthread_mutex_unlock(&start_mu);
	pthread_join(early, NULL);
	pthread_join(late, NULL);

	/* A process forked after the mapping: it shares the device file and the memory. */
	fflush(NULL);
	const pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		rounds("forked child");
		_exit(other ? 1 : stale ? 2 : 0);
	}
	int status = 0;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
		die("waitpid");
	if (WEXITSTATUS(status) == 1)
		other++;
	else if (WEXITSTATUS(status) == 2)
		stale++;
	printf("store_order: %d load(s) that missed a store, %d other failure(s)\n", stale, other);
	return other ? 1 : stale ? 2 : 0;
}
