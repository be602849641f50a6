/*
 * mapping_client: maps known ranges through the emulated nodes and keeps them mapped, so the
 * tests of the `vfio-emu` tool have something exact to look at.
 *
 *   mapping_client DIR
 *
 * VT-d (group 1, type1v2):
 *   IOVA 0x100000,   3 x 4 KiB, read-only       -> three level-1 leaves
 *   IOVA 0x200000,   2 MiB, read/write          -> one level-2 leaf (2 MiB aligned buffer)
 *   IOVA 0x40000000, 1 GiB, read/write          -> one level-3 leaf (1 GiB aligned buffer,
 *                                                  MAP_NORESERVE: no memory is touched)
 * TCE (group 3, sPAPR v2): 2 MiB registered, a 64 KiB-page window of 1 GiB with 2 levels,
 *   1 MiB of the registered memory mapped at the start of the window (16 TCEs), read/write.
 *
 * With --small N (for the tests of long, paged answers) also:
 *   VT-d container: N mappings of 4 KiB from IOVA 0x100000000 every 8 KiB (so no two are
 *                   contiguous), of N consecutive pages of one MAP_NORESERVE buffer, read/write;
 *   iommufd: an IOAS (no device attached) with M areas (--areas M, default 3) of 4 KiB,
 *            read/write, at IOVA 0x1000, 0x3000, 0x5000, ... (type1 allows at most 65535
 *            mappings per container; an IOAS has no such limit).
 *
 * When everything is mapped it prints one line, "ready {JSON}", the JSON naming what it mapped
 * (addresses as "0x..." strings), then waits until stdin is closed and exits 0 without unmapping:
 * the daemon cleans up when the fds close. On failure it names the ioctl and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "examples/include/vfio_emu_compat.h"

#define KIB (1ULL << 10)
#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

#define VTD_GROUP "vfio/1"
#define TCE_GROUP "vfio/3"
/* 64K TCEs need hugetlb pages behind the registered memory (Linux's mm_iommu rule on a kernel of
 * 4K pages); without any, the window has 4K TCEs. */
#define TCE_HUGE_PAGE_SHIFT 16
#define TCE_WINDOW_SIZE GIB
#define TCE_LEVELS 2
#define TCE_REGISTERED (2 * MIB)
#define TCE_MAPPED MIB

static void fail(const char *what)
{
	fprintf(stderr, "mapping_client: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int open_node(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail(path);
	return fd;
}

/* A new container with `group` in it and the IOMMU `type` set; the group's fd stays open. */
static int open_container(const char *dir, const char *group, unsigned long type)
{
	int container = open_node(dir, "vfio/vfio");
	int group_fd = open_node(dir, group);
	if (ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container))
		fail("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, type))
		fail("VFIO_SET_IOMMU");
	return container;
}

/* An anonymous mapping of `size` bytes aligned to `align`; the slack is unmapped. */
static void *map_aligned(uint64_t size, uint64_t align, int extra_flags)
{
	char *raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
	if (raw == MAP_FAILED)
		fail("mmap");
	char *aligned = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	if (aligned > raw)
		munmap(raw, aligned - raw);
	munmap(aligned + size, raw + align - aligned);
	return aligned;
}

struct mapping {
	uint64_t iova, size;
	void *vaddr;
	const char *prot;
};

static void map_dma(int container, const struct mapping *m, const char *what)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | (m->prot[1] == 'w' ? VFIO_DMA_MAP_FLAG_WRITE : 0),
		.vaddr = (uintptr_t)m->vaddr,
		.iova = m->iova,
		.size = m->size,
	};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map))
		fail(what);
}

static void print_mappings(const char *name, const struct mapping *m, int n)
{
	printf("\"%s\":[", name);
	for (int i = 0; i < n; i++)
		printf("%s{\"iova\":\"0x%llx\",\"size\":%llu,\"vaddr\":\"%p\",\"prot\":\"%s\"}",
		       i ? "," : "", (unsigned long long)m[i].iova, (unsigned long long)m[i].size,
		       m[i].vaddr, m[i].prot);
	printf("]");
}

#define SMALL_IOVA (4 * GIB)
#define SMALL_STRIDE (8 * KIB)
/* --small: `count` 4 KiB type1 mappings, then an IOAS with `nareas` areas; prints their JSON. */
static void map_small(const char *dir, int container, unsigned long count, unsigned long nareas)
{
	char *pages = map_aligned(count * 4 * KIB, 4 * KIB, MAP_NORESERVE);
	for (unsigned long i = 0; i < count; i++) {
		struct mapping m = {SMALL_IOVA + i * SMALL_STRIDE, 4 * KIB, pages + i * 4 * KIB, "rw"};
		map_dma(container, &m, "VFIO_IOMMU_MAP_DMA (small)");
	}
	int iommufd = open_node(dir, "iommu");
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		fail("IOMMU_IOAS_ALLOC");
	struct mapping *areas = calloc(nareas, sizeof(*areas));
	char *area_pages = map_aligned(nareas * 4 * KIB, 4 * KIB, MAP_NORESERVE);
	if (!areas)
		fail("calloc");
	for (unsigned long i = 0; i < nareas; i++) {
		areas[i] = (struct mapping){0x1000 + i * 0x2000, 4 * KIB, area_pages + i * 4 * KIB, "rw"};
		struct iommu_ioas_map map = {
			.size = sizeof(map),
			.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
				 IOMMU_IOAS_MAP_WRITEABLE,
			.ioas_id = alloc.out_ioas_id,
			.user_va = (uintptr_t)areas[i].vaddr,
			.length = areas[i].size,
			.iova = areas[i].iova,
		};
		if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
			fail("IOMMU_IOAS_MAP");
	}
	printf(",\"small\":{\"count\":%lu,\"iova\":\"0x%llx\",\"stride\":%llu,\"vaddr\":\"%p\"}",
	       count, (unsigned long long)SMALL_IOVA, (unsigned long long)SMALL_STRIDE, pages);
	printf(",\"ioas\":{\"id\":%u,", alloc.out_ioas_id);
	print_mappings("areas", areas, (int)nareas);
	printf("}");
	free(areas);
}

int main(int argc, char **argv)
{
	unsigned long small = 0, nareas = 3;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--small") == 0)
			small = strtoul(argv[i + 1], NULL, 0);
		else if (strcmp(argv[i], "--areas") == 0)
			nareas = strtoul(argv[i + 1], NULL, 0);
		else
			small = 0, argc = 0;
	}
	if (argc < 2 || argc % 2 != 0 || (argc > 2 && small == 0)) {
		fprintf(stderr, "usage: mapping_client DIR [--small N [--areas M]]\n");
		return 2;
	}
	const char *dir = argv[1];

	/* VT-d: a type1v2 container with group 1. */
	int vtd_container = open_container(dir, VTD_GROUP, VFIO_TYPE1v2_IOMMU);
	struct mapping vtd[3] = {
		{0x100000, 3 * 4 * KIB, map_aligned(3 * 4 * KIB, 4 * KIB, 0), "r-"},
		{0x200000, 2 * MIB, map_aligned(2 * MIB, 2 * MIB, 0), "rw"},
		{GIB, GIB, map_aligned(GIB, GIB, MAP_NORESERVE), "rw"},
	};
	map_dma(vtd_container, &vtd[0], "VFIO_IOMMU_MAP_DMA 4K pages");
	map_dma(vtd_container, &vtd[1], "VFIO_IOMMU_MAP_DMA 2M page");
	map_dma(vtd_container, &vtd[2], "VFIO_IOMMU_MAP_DMA 1G page");

	/* TCE: an sPAPR v2 container with group 3, memory registered, a new 64K-page window. */
	int tce_container = open_container(dir, TCE_GROUP, VFIO_SPAPR_TCE_v2_IOMMU);
	int tce_page_shift = TCE_HUGE_PAGE_SHIFT;
	void *memory = mmap(NULL, TCE_REGISTERED, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (memory == MAP_FAILED) {
		tce_page_shift = 12;
		memory = map_aligned(TCE_REGISTERED, 4 * KIB, 0);
	}
	memset(memory, 0, TCE_REGISTERED);
	struct vfio_iommu_spapr_register_memory reg = {
		.argsz = sizeof(reg),
		.vaddr = (uintptr_t)memory,
		.size = TCE_REGISTERED,
	};
	if (ioctl(tce_container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg))
		fail("VFIO_IOMMU_SPAPR_REGISTER_MEMORY");
	struct vfio_iommu_spapr_tce_create create = {
		.argsz = sizeof(create),
		.page_shift = (uint32_t)tce_page_shift,
		.window_size = TCE_WINDOW_SIZE,
		.levels = TCE_LEVELS,
	};
	if (ioctl(tce_container, VFIO_IOMMU_SPAPR_TCE_CREATE, &create))
		fail("VFIO_IOMMU_SPAPR_TCE_CREATE");
	struct mapping tce = {create.start_addr, TCE_MAPPED, memory, "rw"};
	map_dma(tce_container, &tce, "VFIO_IOMMU_MAP_DMA (TCE)");

	printf("ready {\"pid\":%d,", (int)getpid());
	print_mappings("vtd", vtd, 3);
	printf(",\"tce\":{\"window_start\":\"0x%llx\",\"page_shift\":%d,\"window_size\":%llu,"
	       "\"levels\":%d,\"registered\":{\"vaddr\":\"%p\",\"size\":%llu},",
	       (unsigned long long)create.start_addr, tce_page_shift,
	       (unsigned long long)TCE_WINDOW_SIZE, TCE_LEVELS, memory,
	       (unsigned long long)TCE_REGISTERED);
	print_mappings("maps", &tce, 1);
	printf("}");
	if (small > 0)
		map_small(dir, vtd_container, small, nareas);
	printf("}\n");
	fflush(stdout);

	/* Keep every fd open until the test is done with us. */
	char buf[256];
	while (read(STDIN_FILENO, buf, sizeof(buf)) > 0) {
	}
	return 0;
}
