/*
 * Many threads of one process map and unmap in parallel: 8 threads x 500 MAP_DMA/UNMAP_DMA of
 * disjoint ranges in one type1 container (while another thread keeps reading GET_INFO), then
 * 8 threads x 500 IOMMU_IOAS_MAP (the kernel chooses the IOVA)/IOMMU_IOAS_UNMAP in one IOAS. Every
 * call must succeed with the exact size, no two kernel-chosen IOVAs may overlap, and afterwards
 * nothing may be left: DMA_AVAIL is full again and an unmap of everything finds nothing.
 *
 * It also prints what one call costs through the FUSE node, single-threaded.
 *
 *   parallel_threads NODE_DIR [THREADS [ITERATIONS]]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define FULL_DMA_AVAIL 65535
#define MAX_THREADS 64
#define LIVE 4                   /* mappings each thread keeps at once */
#define MAP_SIZE 0x4000UL        /* 16 KiB */
#define THREAD_SPAN (1ULL << 30) /* each thread's own IOVA range */

static int threads = 8, iterations = 500;
static int container, iommufd;
static uint32_t ioas;
static char *memory;
static volatile int stop_reader;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct worker {
	pthread_t thread;
	int index;
	int failures;
	char first[200];
};

static void worker_failed(struct worker *w, const char *what, unsigned i, int error)
{
	if (w->failures++ == 0)
		snprintf(w->first, sizeof(w->first), "%s #%u: %s", what, i, strerror(error));
}

/* MAP_DMA i, UNMAP_DMA i - LIVE: a sliding window of LIVE mappings in this thread's range. */
static void *type1_worker(void *arg)
{
	struct worker *w = arg;
	const uint64_t base = (uint64_t)(w->index + 1) * THREAD_SPAN;
	char *mem = memory + (size_t)w->index * LIVE * MAP_SIZE;
	for (unsigned i = 0; i < (unsigned)iterations + LIVE; i++) {
		if (i < (unsigned)iterations &&
		    map_dma(container, mem + (i % LIVE) * MAP_SIZE, base + i * MAP_SIZE, MAP_SIZE))
			worker_failed(w, "MAP_DMA", i, errno);
		if (i >= LIVE) {
			uint64_t unmapped = 0;
			if (unmap_dma(container, base + (i - LIVE) * MAP_SIZE, MAP_SIZE, &unmapped))
				worker_failed(w, "UNMAP_DMA", i - LIVE, errno);
			else if (unmapped != MAP_SIZE)
				worker_failed(w, "UNMAP_DMA size", i - LIVE, EIO);
		}
	}
	return NULL;
}

/* GET_INFO in a loop while the workers map: DMA_AVAIL must always be plausible. */
static void *info_reader(void *arg)
{
	struct worker *w = arg;
	unsigned i = 0;
	while (!stop_reader) {
		uint32_t avail = dma_avail(container);
		if (avail > FULL_DMA_AVAIL || avail < FULL_DMA_AVAIL - (uint32_t)threads * (LIVE + 1))
			worker_failed(w, "DMA_AVAIL in range", i, ERANGE);
		i++;
	}
	return NULL;
}

/* IOAS_MAP without FIXED_IOVA, IOAS_UNMAP of what it returned. */
static void *iommufd_worker(void *arg)
{
	struct worker *w = arg;
	char *mem = memory + (size_t)w->index * LIVE * MAP_SIZE;
	uint64_t live[LIVE] = {0};
	for (unsigned i = 0; i < (unsigned)iterations + LIVE; i++) {
		unsigned slot = i % LIVE;
		if (i >= LIVE) {
			struct iommu_ioas_unmap unmap = {
				.size = sizeof(unmap),
				.ioas_id = ioas,
				.iova = live[slot],
				.length = MAP_SIZE,
			};
			if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
				worker_failed(w, "IOAS_UNMAP", i - LIVE, errno);
			else if (unmap.length != MAP_SIZE)
				worker_failed(w, "IOAS_UNMAP length", i - LIVE, EIO);
		}
		if (i < (unsigned)iterations) {
			struct iommu_ioas_map map = {
				.size = sizeof(map),
				.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
				.ioas_id = ioas,
				.user_va = (uintptr_t)(mem + slot * MAP_SIZE),
				.length = MAP_SIZE,
			};
			if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
				worker_failed(w, "IOAS_MAP", i, errno);
			else if (map.iova == 0)
				worker_failed(w, "IOAS_MAP chose IOVA 0", i, EINVAL);
			live[slot] = map.iova;
		}
	}
	return NULL;
}

static void run_workers(const char *what, void *(*fn)(void *))
{
	struct worker w[MAX_THREADS] = {{0}};
	double start = now();
	for (int t = 0; t < threads; t++) {
		w[t].index = t;
		if (pthread_create(&w[t].thread, NULL, fn, &w[t]))
			die("pthread_create");
	}
	int failures = 0;
	for (int t = 0; t < threads; t++) {
		pthread_join(w[t].thread, NULL);
		if (w[t].failures)
			note("thread %d: %d failures, the first: %s", t, w[t].failures, w[t].first);
		failures += w[t].failures;
	}
	double took = now() - start;
	note("%d threads x %d map+unmap: %.3f s, %.0f calls/s", threads, iterations, took,
	     2.0 * threads * iterations / took);
	EXPECT_EQ(failures, 0, "%s: calls that failed", what);
}

static void type1_in_parallel(void)
{
	printf("-- %d threads x %d MAP_DMA/UNMAP_DMA in one type1 container\n", threads, iterations);
	int group;
	container = open_type1("1", &group);
	struct worker reader = {0};
	if (pthread_create(&reader.thread, NULL, info_reader, &reader))
		die("pthread_create");
	run_workers("type1", type1_worker);
	stop_reader = 1;
	pthread_join(reader.thread, NULL);
	if (reader.failures)
		note("GET_INFO reader: %s", reader.first);
	EXPECT_EQ(reader.failures, 0, "GET_INFO reads with an implausible DMA_AVAIL");

	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL, "DMA_AVAIL after all threads unmapped");
	uint64_t unmapped = 1;
	EXPECT_OK(unmap_dma(container, THREAD_SPAN, (uint64_t)threads * THREAD_SPAN, &unmapped),
		  "UNMAP_DMA of every thread's range");
	EXPECT_EQ(unmapped, 0, "bytes left mapped in the threads' ranges");
	struct vfio_iommu_type1_dma_unmap all = {
		.argsz = sizeof(all),
		.flags = VFIO_DMA_UNMAP_FLAG_ALL,
	};
	EXPECT_OK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &all), "UNMAP_DMA FLAG_ALL");
	EXPECT_EQ(all.size, 0, "bytes left mapped anywhere");
	close(group);
	close(container);
}

static void iommufd_in_parallel(void)
{
	printf("-- %d threads x %d IOAS_MAP/IOAS_UNMAP in one IOAS with a device attached\n",
	       threads, iterations);
	iommufd = open_node("iommu");
	int device = open_node("vfio/devices/vfio1");
	if (bind_iommufd(device, iommufd))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	ioas = attach_new_ioas(device, iommufd);
	run_workers("iommufd", iommufd_worker);
	struct iommu_ioas_unmap all = {
		.size = sizeof(all),
		.ioas_id = ioas,
		.iova = 0,
		.length = UINT64_MAX,
	};
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &all), "IOAS_UNMAP all");
	EXPECT_EQ(all.length, 0, "bytes left mapped in the IOAS");
	close(device);
	close(iommufd);
}

/* What one call costs through the FUSE node: GET_API_VERSION, and a 4 KiB map + unmap pair. */
static void single_thread_cost(void)
{
	printf("-- single-threaded cost of a call\n");
	int group;
	int c = open_type1("2", &group);
	const int n = 20000;
	double start = now();
	for (int i = 0; i < n; i++)
		if (ioctl(c, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
			die("VFIO_GET_API_VERSION");
	note("VFIO_GET_API_VERSION: %.1f us per call", (now() - start) / n * 1e6);
	start = now();
	for (int i = 0; i < n / 2; i++)
		if (map_dma(c, memory, 0, 4096) || unmap_dma(c, 0, 4096, NULL))
			die("4 KiB MAP_DMA + UNMAP_DMA");
	note("4 KiB VFIO_IOMMU_MAP_DMA + VFIO_IOMMU_UNMAP_DMA: %.1f us per pair",
	     (now() - start) / (n / 2) * 1e6);
	EXPECT_EQ(dma_avail(c), FULL_DMA_AVAIL, "DMA_AVAIL after the timed calls");
	close(group);
	close(c);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	if (argc > 2)
		threads = atoi(argv[2]);
	if (argc > 3)
		iterations = atoi(argv[3]);
	if (threads < 1 || threads > MAX_THREADS || iterations < 1)
		die("THREADS must be 1..%d, ITERATIONS >= 1", MAX_THREADS);
	memory = alloc_memory((size_t)threads * LIVE * MAP_SIZE);
	type1_in_parallel();
	iommufd_in_parallel();
	single_thread_cost();
	return test_finish();
}
