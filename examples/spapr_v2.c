/*
 * spapr_v2: the sPAPR TCE v2 flow of IBM POWER (Documentation/driver-api/vfio.rst, "PPC64 sPAPR
 * implementation note", notes 5 and 6), one step at a time, printing what each step does.
 *
 *   spapr_v2 [DIR [GROUP]]
 *
 *   DIR    where the nodes are: DIR/vfio/vfio, DIR/vfio/GROUP (default /dev)
 *   GROUP  an IOMMU group behind a TCE IOMMU (default 3, the TCE group of vfio-emud's built-in
 *          machine)
 *
 * v2 differs from type1: memory is registered (pinned) once with REGISTER_MEMORY; MAP and UNMAP
 * then only write TCEs, inside DMA windows whose bus address the platform chooses.
 * Exits 0 on success; on failure names the ioctl and the error and exits 1.
 */
/* MAP_ANONYMOUS, O_CLOEXEC, pread and MSG_CMSG_CLOEXEC under plain -std=c11 too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio_emu_compat.h"
#include "walkthrough.h"

#define HUGE_TCE_PAGE_SHIFT 16             /* 64 KiB IOMMU pages in the new window ... */
#define BASE_TCE_PAGE_SHIFT 12             /* ... or 4 KiB ones without hugetlb pages */
#define WINDOW_SIZE (1ULL << 30)           /* 1 GiB of bus addresses */
#define WINDOW_LEVELS 2                    /* a two-level TCE table */
#define MEMORY_SIZE (2UL * 1024 * 1024)    /* registered memory */
#define MAP_SIZE (1UL * 1024 * 1024)       /* the part of it that is mapped */

/* The memory DMA may use, and the largest TCE page it can back. Linux (mm_iommu_do_alloc)
 * lets a registered region back IOMMU pages larger than the kernel's page only when hugetlb
 * pages lie behind it: on a kernel of 4 KiB pages, 64K TCEs need hugetlb memory. */
static void *alloc_dma_memory(size_t size, unsigned *tce_page_shift)
{
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	*tce_page_shift = HUGE_TCE_PAGE_SHIFT;
	if (m == MAP_FAILED) {
		printf("no hugetlb pages (vm.nr_hugepages is 0?): the window gets 4K TCEs\n");
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		*tce_page_shift = BASE_TCE_PAGE_SHIFT;
	}
	if (m == MAP_FAILED)
		fail("mmap");
	memset(m, 0, size);
	return m;
}

int main(int argc, char **argv)
{
	walkthrough_name = "spapr_v2";
	const char *dir = argc > 1 ? argv[1] : "/dev";
	const char *group_name = argc > 2 ? argv[2] : "3";
	char group_path[64];
	snprintf(group_path, sizeof(group_path), "vfio/%s", group_name);

	/* 1. Container, API version, and the v2 model. */
	int container = open_node(dir, "vfio/vfio");
	int version = ioctl(container, VFIO_GET_API_VERSION);
	if (version != VFIO_API_VERSION) {
		fprintf(stderr, "spapr_v2: VFIO_GET_API_VERSION: %d, want %d (%s)\n", version,
			VFIO_API_VERSION, version < 0 ? strerror(errno) : "unknown version");
		return 1;
	}
	printf("VFIO_GET_API_VERSION: %d\n", version);
	int has_v2 = ioctl(container, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU);
	if (has_v2 < 0)
		fail("VFIO_CHECK_EXTENSION");
	printf("VFIO_CHECK_EXTENSION SPAPR_TCE_v2: %d\n", has_v2);
	if (!has_v2) {
		fprintf(stderr, "spapr_v2: the container has no sPAPR TCE v2 IOMMU\n");
		return 1;
	}

	/* 2. The group: viable, then into the container. */
	int group = open_node(dir, group_path);
	struct vfio_group_status status = {.argsz = sizeof(status)};
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &status))
		fail("VFIO_GROUP_GET_STATUS");
	printf("VFIO_GROUP_GET_STATUS: flags %#x\n", status.flags);
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		fprintf(stderr, "spapr_v2: group %s is not viable\n", group_name);
		return 1;
	}
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		fail("VFIO_GROUP_SET_CONTAINER");
	printf("VFIO_GROUP_SET_CONTAINER: group %s is in the container\n", group_name);

	/* 3. v2: no VFIO_IOMMU_ENABLE (it is ENOTTY); registering memory enables the container. */
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU))
		fail("VFIO_SET_IOMMU");
	printf("VFIO_SET_IOMMU: SPAPR_TCE_v2\n");

	/* 4. The default 32-bit window and the dynamic-window (DDW) limits. argsz 32 asks for
	 * the DDW part too; vfio.rst's own example forgets to set argsz. */
	struct vfio_iommu_spapr_tce_info info = {.argsz = sizeof(info)};
	if (ioctl(container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info))
		fail("VFIO_IOMMU_SPAPR_TCE_GET_INFO");
	printf("VFIO_IOMMU_SPAPR_TCE_GET_INFO (argsz %zu): flags %#x, 32-bit window at %#x, "
	       "%#x bytes\n",
	       sizeof(info), info.flags, info.dma32_window_start, info.dma32_window_size);
	if (info.flags & VFIO_IOMMU_SPAPR_INFO_DDW) {
		printf("  DDW: page sizes %#llx, up to %u dynamic windows, up to %u levels\n",
		       (unsigned long long)info.ddw.pgsizes, info.ddw.max_dynamic_windows_supported,
		       info.ddw.levels);
	} else {
		fprintf(stderr, "spapr_v2: the platform has no dynamic DMA windows\n");
		return 1;
	}

	/* 5. Register (pin) the memory DMA may ever use. */
	unsigned tce_page_shift;
	void *memory = alloc_dma_memory(MEMORY_SIZE, &tce_page_shift);
	const unsigned long tce_page_size = 1UL << tce_page_shift;
	if (!(info.ddw.pgsizes & tce_page_size)) {
		fprintf(stderr, "spapr_v2: the platform has no %lu-byte TCE pages\n", tce_page_size);
		return 1;
	}
	struct vfio_iommu_spapr_register_memory reg = {
		.argsz = sizeof(reg),
		.vaddr = (uintptr_t)memory,
		.size = MEMORY_SIZE,
	};
	if (ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg))
		fail("VFIO_IOMMU_SPAPR_REGISTER_MEMORY");
	printf("VFIO_IOMMU_SPAPR_REGISTER_MEMORY: vaddr %p, %#lx bytes\n", memory, MEMORY_SIZE);

	/* 6. A new DMA window: the hardware chooses where it starts on the bus. */
	struct vfio_iommu_spapr_tce_create create = {
		.argsz = sizeof(create),
		.page_shift = tce_page_shift,
		.window_size = WINDOW_SIZE,
		.levels = WINDOW_LEVELS,
	};
	if (ioctl(container, VFIO_IOMMU_SPAPR_TCE_CREATE, &create))
		fail("VFIO_IOMMU_SPAPR_TCE_CREATE");
	printf("VFIO_IOMMU_SPAPR_TCE_CREATE: %lu-byte pages, %#llx bytes, %u levels: the window "
	       "starts at bus address %#llx\n",
	       tce_page_size, (unsigned long long)create.window_size, create.levels,
	       (unsigned long long)create.start_addr);

	/* 7. Map part of the registered memory at the start of the new window. */
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)memory,
		.iova = create.start_addr,
		.size = MAP_SIZE,
	};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map))
		fail("VFIO_IOMMU_MAP_DMA");
	printf("VFIO_IOMMU_MAP_DMA: vaddr %p -> bus %#llx, %#lx bytes (%lu TCEs)\n", memory,
	       (unsigned long long)map.iova, MAP_SIZE, MAP_SIZE / tce_page_size);

	/* 8. Unmap clears every TCE in the range; sPAPR does not write the size back. */
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.iova = create.start_addr,
		.size = MAP_SIZE,
	};
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap))
		fail("VFIO_IOMMU_UNMAP_DMA");
	printf("VFIO_IOMMU_UNMAP_DMA: bus %#llx, %#lx bytes cleared\n",
	       (unsigned long long)unmap.iova, MAP_SIZE);

	/* 9. Remove the window, then unregister exactly what was registered. */
	struct vfio_iommu_spapr_tce_remove remove = {
		.argsz = sizeof(remove),
		.start_addr = create.start_addr,
	};
	if (ioctl(container, VFIO_IOMMU_SPAPR_TCE_REMOVE, &remove))
		fail("VFIO_IOMMU_SPAPR_TCE_REMOVE");
	printf("VFIO_IOMMU_SPAPR_TCE_REMOVE: the window at %#llx is gone\n",
	       (unsigned long long)remove.start_addr);
	if (ioctl(container, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &reg))
		fail("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY");
	printf("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: vaddr %p, %#lx bytes\n", memory, MEMORY_SIZE);

	munmap(memory, MEMORY_SIZE);
	close(group);
	close(container);
	printf("spapr_v2: done\n");
	return 0;
}
