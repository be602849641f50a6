/*
 * type1: the VFIO type1 flow of Linux's Documentation/driver-api/vfio.rst ("VFIO Usage Example"),
 * one step at a time, printing what each step does.
 *
 *   type1 [--hold] [DIR [GROUP [BDF]]]
 *
 *   DIR    where the nodes are: DIR/vfio/vfio, DIR/vfio/GROUP (default /dev)
 *   GROUP  the IOMMU group number (default 1)
 *   BDF    the group's device, for VFIO_GROUP_GET_DEVICE_FD (default 0000:00:01.0)
 *   --hold keep the mapping until a line (or end of file) arrives on stdin, so that it can be
 *          looked at from outside (`vfio-emu maps`, `pt`, `translate`)
 *
 * It runs unchanged against a real kernel (a group bound to vfio-pci) and against vfio-emud.
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

#define BUFFER_SIZE (1024 * 1024)

static void print_page_sizes(uint64_t bitmap)
{
	static const char *const units[] = {"", "K", "M", "G", "T", "P", "E"};
	printf("  page sizes (bitmap %#llx):", (unsigned long long)bitmap);
	for (int bit = 0; bit < 64; bit++) {
		if (!(bitmap & (1ULL << bit)))
			continue;
		printf(" %llu%s", 1ULL << (bit % 10), units[bit / 10]);
	}
	printf("\n");
}

/*
 * VFIO_IOMMU_GET_INFO: ask with the bare struct, grow the buffer to the argsz the kernel
 * answers with, ask again, then walk the capability chain. Returns the first valid IOVA
 * (the start of the first IOVA range, 0 if the kernel reports none).
 */
static uint64_t get_info(int container)
{
	struct vfio_iommu_type1_info *info = calloc(1, sizeof(*info));
	if (info == NULL)
		fail("calloc");
	info->argsz = sizeof(*info);
	if (ioctl(container, VFIO_IOMMU_GET_INFO, info))
		fail("VFIO_IOMMU_GET_INFO");
	printf("VFIO_IOMMU_GET_INFO with argsz %zu: flags %#x, the capabilities need argsz %u\n",
	       sizeof(*info), info->flags, info->argsz);
	if (info->argsz > sizeof(*info)) {
		uint32_t argsz = info->argsz;
		info = realloc(info, argsz);
		if (info == NULL)
			fail("realloc");
		memset(info, 0, argsz);
		info->argsz = argsz;
		if (ioctl(container, VFIO_IOMMU_GET_INFO, info))
			fail("VFIO_IOMMU_GET_INFO (with room for the capabilities)");
		printf("VFIO_IOMMU_GET_INFO with argsz %u: flags %#x, cap_offset %u\n", argsz,
		       info->flags, info->cap_offset);
	}
	if (info->flags & VFIO_IOMMU_INFO_PGSIZES)
		print_page_sizes(info->iova_pgsizes);

	uint64_t first_iova = 0;
	int have_range = 0;
	uint32_t offset = (info->flags & VFIO_IOMMU_INFO_CAPS) ? info->cap_offset : 0;
	while (offset != 0) {
		if (offset + sizeof(struct vfio_info_cap_header) > info->argsz) {
			fprintf(stderr, "type1: capability at %u runs past argsz %u\n", offset,
				info->argsz);
			exit(1);
		}
		struct vfio_info_cap_header *hdr = (void *)((char *)info + offset);
		switch (hdr->id) {
		case VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: {
			struct vfio_iommu_type1_info_cap_iova_range *cap = (void *)hdr;
			printf("  capability IOVA_RANGE (v%u) at %u: %u ranges\n", hdr->version,
			       offset, cap->nr_iovas);
			for (uint32_t i = 0; i < cap->nr_iovas; i++) {
				printf("    [%#llx, %#llx]\n",
				       (unsigned long long)cap->iova_ranges[i].start,
				       (unsigned long long)cap->iova_ranges[i].end);
			}
			if (cap->nr_iovas > 0 && !have_range) {
				first_iova = cap->iova_ranges[0].start;
				have_range = 1;
			}
			break;
		}
		case VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION: {
			struct vfio_iommu_type1_info_cap_migration *cap = (void *)hdr;
			printf("  capability MIGRATION (v%u) at %u: dirty page size %#llx, "
			       "max bitmap %#llx bytes\n",
			       hdr->version, offset, (unsigned long long)cap->pgsize_bitmap,
			       (unsigned long long)cap->max_dirty_bitmap_size);
			break;
		}
		case VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: {
			struct vfio_iommu_type1_info_dma_avail *cap = (void *)hdr;
			printf("  capability DMA_AVAIL (v%u) at %u: %u more mappings allowed\n",
			       hdr->version, offset, cap->avail);
			break;
		}
		default:
			printf("  capability %u (v%u) at %u: not known to this program\n", hdr->id,
			       hdr->version, offset);
		}
		offset = hdr->next;
	}
	free(info);
	return first_iova;
}

int main(int argc, char **argv)
{
	walkthrough_name = "type1";
	int hold = argc > 1 && strcmp(argv[1], "--hold") == 0;
	if (hold) {
		argv++;
		argc--;
	}
	const char *dir = argc > 1 ? argv[1] : "/dev";
	const char *group_name = argc > 2 ? argv[2] : "1";
	const char *bdf = argc > 3 ? argv[3] : "0000:00:01.0";
	char group_path[64];
	snprintf(group_path, sizeof(group_path), "vfio/%s", group_name);

	/* 1. The container: one IOMMU context, not yet tied to anything. */
	int container = open_node(dir, "vfio/vfio");

	/* 2. The API version must be VFIO_API_VERSION, or nothing else applies. */
	int version = ioctl(container, VFIO_GET_API_VERSION);
	if (version < 0)
		fail("VFIO_GET_API_VERSION");
	if (version != VFIO_API_VERSION) {
		fprintf(stderr, "type1: unknown API version %d (this program knows %d)\n", version,
			VFIO_API_VERSION);
		return 1;
	}
	printf("VFIO_GET_API_VERSION: %d\n", version);

	/* 3. Which IOMMU models the container offers (the argument is a value, not a pointer). */
	int has_v1 = ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU);
	int has_v2 = ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
	int has_unmap_all = ioctl(container, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL);
	if (has_v1 < 0 || has_v2 < 0 || has_unmap_all < 0)
		fail("VFIO_CHECK_EXTENSION");
	printf("VFIO_CHECK_EXTENSION: TYPE1 %d, TYPE1v2 %d, UNMAP_ALL %d\n", has_v1, has_v2,
	       has_unmap_all);
	if (!has_v1 && !has_v2) {
		fprintf(stderr, "type1: the container supports neither TYPE1 nor TYPE1v2\n");
		return 1;
	}

	/* 4. The group, and whether every device in it is ready for user space. */
	int group = open_node(dir, group_path);
	struct vfio_group_status status = {.argsz = sizeof(status)};
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &status))
		fail("VFIO_GROUP_GET_STATUS");
	printf("VFIO_GROUP_GET_STATUS: flags %#x\n", status.flags);
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		fprintf(stderr, "type1: group %s is not viable (are all its devices bound to "
				"vfio-pci?)\n",
			group_name);
		return 1;
	}

	/* 5. Put the group in the container: the argument is a pointer to the container fd. */
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		fail("VFIO_GROUP_SET_CONTAINER");
	printf("VFIO_GROUP_SET_CONTAINER: group %s is in the container\n", group_name);

	/* 6. Choose the IOMMU model; only now can the container map anything. */
	int type = has_v2 ? VFIO_TYPE1v2_IOMMU : VFIO_TYPE1_IOMMU;
	if (ioctl(container, VFIO_SET_IOMMU, type))
		fail("VFIO_SET_IOMMU");
	printf("VFIO_SET_IOMMU: %s\n", type == VFIO_TYPE1v2_IOMMU ? "TYPE1v2" : "TYPE1");

	/* 7. What the IOMMU offers: page sizes, usable IOVA ranges, mappings left. */
	uint64_t iova = get_info(container);

	/* 8. A buffer the device may read and write, mapped at the first usable IOVA. */
	void *buffer = mmap(NULL, BUFFER_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
	if (buffer == MAP_FAILED)
		fail("mmap");
	struct vfio_iommu_type1_dma_map dma_map = {
		.argsz = sizeof(dma_map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buffer,
		.iova = iova,
		.size = BUFFER_SIZE,
	};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &dma_map))
		fail("VFIO_IOMMU_MAP_DMA");
	printf("VFIO_IOMMU_MAP_DMA: vaddr %p -> iova %#llx, size %#llx (struct of %zu bytes)\n",
	       buffer, (unsigned long long)dma_map.iova, (unsigned long long)dma_map.size,
	       sizeof(dma_map));

	/*
	 * 9. vfio.rst now asks the group for a device fd. A user-space emulator cannot create an
	 * fd in the caller, so vfio-emud answers EOPNOTSUPP: use the device cdev instead
	 * (DIR/vfio/devices/vfioN + VFIO_DEVICE_BIND_IOMMUFD, see the iommufd_cdev example).
	 */
	int device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (device >= 0) {
		printf("VFIO_GROUP_GET_DEVICE_FD \"%s\": fd %d (a real kernel)\n", bdf, device);
		close(device);
	} else if (errno == EOPNOTSUPP) {
		printf("VFIO_GROUP_GET_DEVICE_FD \"%s\": EOPNOTSUPP, as expected from vfio-emud: "
		       "a daemon cannot create an fd in this process; reach the device through "
		       "its cdev and VFIO_DEVICE_BIND_IOMMUFD\n",
		       bdf);
	} else {
		fail("VFIO_GROUP_GET_DEVICE_FD");
	}

	if (hold) {
		printf("holding the mapping: press Enter (or close stdin) to unmap and exit\n");
		fflush(stdout);
		int c;
		while ((c = getchar()) != EOF && c != '\n')
			;
	}

	/* 10. Unmap: the kernel reports how many bytes it removed. */
	struct vfio_iommu_type1_dma_unmap dma_unmap = {
		.argsz = sizeof(dma_unmap),
		.iova = iova,
		.size = BUFFER_SIZE,
	};
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &dma_unmap))
		fail("VFIO_IOMMU_UNMAP_DMA");
	printf("VFIO_IOMMU_UNMAP_DMA: iova %#llx, %#llx bytes unmapped (struct of %zu bytes)\n",
	       (unsigned long long)dma_unmap.iova, (unsigned long long)dma_unmap.size,
	       sizeof(dma_unmap));
	if (dma_unmap.size != BUFFER_SIZE) {
		fprintf(stderr, "type1: VFIO_IOMMU_UNMAP_DMA unmapped %#llx bytes, not %#x\n",
			(unsigned long long)dma_unmap.size, BUFFER_SIZE);
		return 1;
	}

	munmap(buffer, BUFFER_SIZE);
	close(group); /* the last group leaves: the container drops its IOMMU */
	close(container);
	printf("type1: done\n");
	return 0;
}
