/*
 * iommufd_cdev: the VFIO device cdev + iommufd flow (Documentation/driver-api/vfio.rst, "VFIO
 * Device cdev", Linux 6.6+), one step at a time, printing what each step does.
 *
 *   iommufd_cdev [DIR [CDEV]]
 *
 *   DIR   where the nodes are: DIR/vfio/devices/CDEV and DIR/iommu (default /dev)
 *   CDEV  the device's cdev name, as /sys/bus/pci/devices/<bdf>/vfio-dev/ lists it
 *         (default vfio0)
 *
 * No group and no container: the device fd is opened by name and bound to an iommufd; the
 * iommufd holds the I/O address spaces (IOAS).
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

/* vfio-pci places region N at file offset N << 40 (include/linux/vfio_pci_core.h, not uAPI:
 * portable code takes the offset from VFIO_DEVICE_GET_REGION_INFO, as below). */
#ifndef VFIO_PCI_INDEX_TO_OFFSET
#define VFIO_PCI_INDEX_TO_OFFSET(index) ((uint64_t)(index) << 40)
#endif

#define BUFFER_SIZE (1024 * 1024)

static void *alloc_buffer(void)
{
	void *p = mmap(NULL, BUFFER_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);
	if (p == MAP_FAILED)
		fail("mmap");
	return p;
}

/*
 * IOMMU_IOAS_IOVA_RANGES: ask with room for none; the kernel answers EMSGSIZE with the count
 * it needs; ask again with room for all. Returns the start of the first usable range.
 */
static uint64_t print_iova_ranges(int iommufd, uint32_t ioas_id)
{
	struct iommu_ioas_iova_ranges ranges = {
		.size = sizeof(ranges),
		.ioas_id = ioas_id,
		.num_iovas = 0,
	};
	if (ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &ranges) == 0) {
		fprintf(stderr, "iommufd_cdev: IOMMU_IOAS_IOVA_RANGES with no room succeeded: the "
				"IOAS has no usable IOVA\n");
		exit(1);
	}
	if (errno != EMSGSIZE)
		fail("IOMMU_IOAS_IOVA_RANGES (asking for the count)");
	printf("IOMMU_IOAS_IOVA_RANGES with num_iovas 0: EMSGSIZE, %u ranges to fetch\n",
	       ranges.num_iovas);

	struct iommu_iova_range *list = calloc(ranges.num_iovas, sizeof(*list));
	if (list == NULL)
		fail("calloc");
	ranges.allowed_iovas = (uintptr_t)list;
	if (ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &ranges))
		fail("IOMMU_IOAS_IOVA_RANGES");
	printf("IOMMU_IOAS_IOVA_RANGES: %u ranges, IOVA alignment %#llx\n", ranges.num_iovas,
	       (unsigned long long)ranges.out_iova_alignment);
	for (uint32_t i = 0; i < ranges.num_iovas; i++)
		printf("  [%#llx, %#llx]\n", (unsigned long long)list[i].start,
		       (unsigned long long)list[i].last);
	uint64_t first = list[0].start;
	free(list);
	return first;
}

int main(int argc, char **argv)
{
	walkthrough_name = "iommufd_cdev";
	const char *dir = argc > 1 ? argv[1] : "/dev";
	const char *cdev_name = argc > 2 ? argv[2] : "vfio0";
	char cdev_path[256];
	snprintf(cdev_path, sizeof(cdev_path), "vfio/devices/%s", cdev_name);

	/* 1. The device cdev and an iommufd. The device fd grants nothing until it is bound. */
	int device = open_node(dir, cdev_path);
	int iommufd = open_node(dir, "iommu");

	/* 2. Bind the device to the iommufd; the device becomes an iommufd object. */
	struct vfio_device_bind_iommufd bind = {
		.argsz = sizeof(bind),
		.flags = 0,
		.iommufd = iommufd,
	};
	if (ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		fail("VFIO_DEVICE_BIND_IOMMUFD");
	printf("VFIO_DEVICE_BIND_IOMMUFD: device object id %u\n", bind.out_devid);

	/* 3. An I/O address space. */
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		fail("IOMMU_IOAS_ALLOC");
	printf("IOMMU_IOAS_ALLOC: IOAS id %u\n", alloc.out_ioas_id);

	/* 4. Attach the device to it: the kernel creates (or reuses) a hardware page table. */
	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach),
		.pt_id = alloc.out_ioas_id,
	};
	if (ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	printf("VFIO_DEVICE_ATTACH_IOMMUFD_PT: attached to IOAS %u through page table %u\n",
	       alloc.out_ioas_id, attach.pt_id);

	/* 5. Which IOVAs the device may use now (its reserved regions are cut out). */
	uint64_t first_iova = print_iova_ranges(iommufd, alloc.out_ioas_id);

	/* 6. Map a buffer at an IOVA of our choice: FIXED_IOVA. */
	void *fixed_buffer = alloc_buffer();
	struct iommu_ioas_map fixed = {
		.size = sizeof(fixed),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)fixed_buffer,
		.length = BUFFER_SIZE,
		.iova = first_iova,
	};
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &fixed))
		fail("IOMMU_IOAS_MAP (FIXED_IOVA)");
	printf("IOMMU_IOAS_MAP FIXED_IOVA: vaddr %p -> iova %#llx, %#x bytes\n", fixed_buffer,
	       (unsigned long long)fixed.iova, BUFFER_SIZE);

	/* 7. Map another and let the kernel choose the IOVA. It never picks 0: 0 is a valid
	 * IOVA, which is why choosing it yourself needs the explicit FIXED_IOVA flag. */
	void *auto_buffer = alloc_buffer();
	struct iommu_ioas_map chosen = {
		.size = sizeof(chosen),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)auto_buffer,
		.length = BUFFER_SIZE,
	};
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &chosen))
		fail("IOMMU_IOAS_MAP");
	printf("IOMMU_IOAS_MAP: vaddr %p -> iova %#llx (chosen by the kernel), %#x bytes\n",
	       auto_buffer, (unsigned long long)chosen.iova, BUFFER_SIZE);
	if (chosen.iova == 0) {
		fprintf(stderr, "iommufd_cdev: IOMMU_IOAS_MAP chose IOVA 0\n");
		return 1;
	}

	/* 8. The device: its regions and interrupts. */
	struct vfio_device_info info = {.argsz = sizeof(info)};
	if (ioctl(device, VFIO_DEVICE_GET_INFO, &info))
		fail("VFIO_DEVICE_GET_INFO");
	printf("VFIO_DEVICE_GET_INFO: flags %#x (%s), %u regions, %u irqs\n", info.flags,
	       (info.flags & VFIO_DEVICE_FLAGS_PCI) ? "PCI" : "not PCI", info.num_regions,
	       info.num_irqs);

	/* 9. PCI config space: where it is, then the vendor and device id at its start. */
	struct vfio_region_info region = {
		.argsz = sizeof(region),
		.index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &region))
		fail("VFIO_DEVICE_GET_REGION_INFO (config)");
	printf("VFIO_DEVICE_GET_REGION_INFO config: offset %#llx, size %#llx, flags %#x\n",
	       (unsigned long long)region.offset, (unsigned long long)region.size, region.flags);
	if (region.offset != VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX)) {
		fprintf(stderr, "iommufd_cdev: config region at %#llx, not at %#llx\n",
			(unsigned long long)region.offset,
			(unsigned long long)VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX));
		return 1;
	}
	uint16_t ids[2];
	ssize_t n = pread(device, ids, sizeof(ids), (off_t)region.offset);
	if (n < 0 && errno == ESPIPE) {
		/* A CUSE character device is not seekable: region access needs another transport. */
		printf("pread config space: not seekable (ESPIPE): a CUSE node, skipped\n");
	} else {
		if (n < 0)
			fail("pread of config space");
		if (n != (ssize_t)sizeof(ids)) {
			fprintf(stderr, "iommufd_cdev: pread of config space: %zd bytes, want %zu\n",
				n, sizeof(ids));
			return 1;
		}
		printf("pread config space at %#llx: vendor %04x device %04x\n",
		       (unsigned long long)region.offset, ids[0], ids[1]);
	}

	/* 10. Unmap everything: iova 0 with length UINT64_MAX means the whole address space. */
	struct iommu_ioas_unmap unmap = {
		.size = sizeof(unmap),
		.ioas_id = alloc.out_ioas_id,
		.iova = 0,
		.length = UINT64_MAX,
	};
	if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
		fail("IOMMU_IOAS_UNMAP (all)");
	printf("IOMMU_IOAS_UNMAP all: %#llx bytes unmapped\n", (unsigned long long)unmap.length);
	if (unmap.length != 2 * BUFFER_SIZE) {
		fprintf(stderr, "iommufd_cdev: IOMMU_IOAS_UNMAP unmapped %#llx bytes, not %#x\n",
			(unsigned long long)unmap.length, 2 * BUFFER_SIZE);
		return 1;
	}

	munmap(fixed_buffer, BUFFER_SIZE);
	munmap(auto_buffer, BUFFER_SIZE);
	close(device); /* unbinds and detaches */
	close(iommufd);
	printf("iommufd_cdev: done\n");
	return 0;
}
