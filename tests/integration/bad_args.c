/*
 * Bad arguments through the real kernel path (open + ioctl on the FUSE nodes): argsz/size too
 * small, unknown flags, memory the daemon must find unmapped, read-only or unreadable, and the
 * ordering rules. Every errno is Linux 6.18's (shared/spec/linux-vfio-uapi.md §2-§5), and no
 * failed call may change state: the container's DMA_AVAIL and mappings are checked after them.
 *
 *   bad_args NODE_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client.h"

#define PAGE 4096UL
#define FULL_DMA_AVAIL 65535 /* type1's dma_entry_limit default (U16_MAX) */

/* A page no one may read or write: the argument pointer the daemon must refuse with EFAULT. */
static void *unreadable_page(void)
{
	void *p = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap PROT_NONE");
	return p;
}

/* An address that was mapped and is not any more. */
static void *unmapped_range(size_t size)
{
	void *p = alloc_memory(size);
	munmap(p, size);
	return p;
}

static void container_ordering(void)
{
	printf("-- container and group ordering\n");
	int container = open_node("vfio/vfio");
	EXPECT_EQ(ioctl(container, VFIO_GET_API_VERSION), VFIO_API_VERSION, "VFIO_GET_API_VERSION");
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU),
		     "VFIO_SET_IOMMU before any group");
	struct vfio_iommu_type1_info info = {.argsz = sizeof(info)};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_GET_INFO, &info),
		     "VFIO_IOMMU_GET_INFO without an IOMMU driver");

	int group = open_node("vfio/1");
	struct vfio_group_status status = {.argsz = sizeof(status) - 1};
	EXPECT_ERRNO(EINVAL, ioctl(group, VFIO_GROUP_GET_STATUS, &status),
		     "VFIO_GROUP_GET_STATUS argsz 7");
	EXPECT_ERRNO(EFAULT, ioctl(group, VFIO_GROUP_GET_STATUS, unreadable_page()),
		     "VFIO_GROUP_GET_STATUS with an unreadable argument");
	EXPECT_ERRNO(EFAULT, ioctl(group, VFIO_GROUP_GET_STATUS, NULL),
		     "VFIO_GROUP_GET_STATUS with a NULL argument");
	EXPECT_ERRNO(EFAULT, ioctl(group, VFIO_GROUP_SET_CONTAINER, unreadable_page()),
		     "VFIO_GROUP_SET_CONTAINER with an unreadable fd pointer");
	EXPECT_ERRNO(EINVAL, ioctl(group, VFIO_GROUP_UNSET_CONTAINER),
		     "VFIO_GROUP_UNSET_CONTAINER without a container");
	EXPECT_ERRNO(ENOTTY, ioctl(group, VFIO_IOMMU_MAP_DMA, NULL), "a container ioctl on a group");
	EXPECT_ERRNO(EINVAL, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01.0"),
		     "VFIO_GROUP_GET_DEVICE_FD without a container");

	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), "VFIO_GROUP_SET_CONTAINER");
	EXPECT_ERRNO(EINVAL, ioctl(group, VFIO_GROUP_SET_CONTAINER, &container),
		     "VFIO_GROUP_SET_CONTAINER a second time");
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ,
		.vaddr = (uintptr_t)alloc_memory(PAGE),
		.size = PAGE,
	};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "VFIO_IOMMU_MAP_DMA before VFIO_SET_IOMMU");
	EXPECT_ERRNO(EINVAL, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01.0"),
		     "VFIO_GROUP_GET_DEVICE_FD before VFIO_SET_IOMMU");
	EXPECT_ERRNO(ENODEV, ioctl(container, VFIO_SET_IOMMU, 42), "VFIO_SET_IOMMU type 42");
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "VFIO_SET_IOMMU TYPE1v2");
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU),
		     "VFIO_SET_IOMMU a second time");
	EXPECT_ERRNO(ENOTTY, ioctl(container, VFIO_IOMMU_ENABLE), "VFIO_IOMMU_ENABLE on type1");
	EXPECT_ERRNO(ENODEV, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:02.0"),
		     "VFIO_GROUP_GET_DEVICE_FD of a device in another group");
	EXPECT_ERRNO(EFAULT, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, unreadable_page()),
		     "VFIO_GROUP_GET_DEVICE_FD with an unreadable name");
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01.0"),
		     "VFIO_GROUP_GET_DEVICE_FD (a daemon cannot create an fd in the caller)");
	close(group);
	close(container);
}

static void type1_map_unmap(void)
{
	printf("-- type1 MAP_DMA / UNMAP_DMA\n");
	int group;
	int container = open_type1("1", &group);
	struct vfio_iommu_type1_info info = {.argsz = 15};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_GET_INFO, &info),
		     "VFIO_IOMMU_GET_INFO argsz 15");
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_GET_INFO, unreadable_page()),
		     "VFIO_IOMMU_GET_INFO with an unreadable argument");

	char *buf = alloc_memory(4 * PAGE);
	struct vfio_iommu_type1_dma_map map;
	const struct vfio_iommu_type1_dma_map good = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf,
		.iova = 0x100000,
		.size = 4 * PAGE,
	};

	map = good;
	map.argsz = sizeof(map) - 1;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_MAP_DMA, &map), "MAP_DMA argsz 31");
	map = good;
	map.flags |= 1u << 3;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_MAP_DMA, &map), "MAP_DMA flag 1<<3");
	map = good;
	map.flags = 0;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA with neither READ nor WRITE");
	map = good;
	map.size = 0;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_MAP_DMA, &map), "MAP_DMA size 0");
	map = good;
	map.iova += 0x800;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA iova not page aligned");
	map = good;
	map.iova = 0xfffffffffffff000ULL;
	map.size = 2 * PAGE;
	EXPECT_ERRNO(EOVERFLOW, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA iova + size wraps past 2^64");
	map = good;
	map.iova = 0xfee00000;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA into the reserved MSI window");
	map = good;
	map.vaddr = (uintptr_t)unmapped_range(4 * PAGE);
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA of unmapped memory");

	/* The last page of the buffer goes away: the whole map must fail, nothing half-done. */
	char *partial = alloc_memory(4 * PAGE);
	munmap(partial + 3 * PAGE, PAGE);
	map = good;
	map.vaddr = (uintptr_t)partial;
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA of memory whose last page is unmapped");

	char *readonly = mmap(NULL, 4 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (readonly == MAP_FAILED)
		die("mmap PROT_READ");
	map = good;
	map.vaddr = (uintptr_t)readonly;
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA READ|WRITE of read-only memory");
	map.flags = VFIO_DMA_MAP_FLAG_READ;
	EXPECT_OK(ioctl(container, VFIO_IOMMU_MAP_DMA, &map), "MAP_DMA READ of read-only memory");
	uint64_t unmapped = 0;
	EXPECT_OK(unmap_dma(container, good.iova, good.size, &unmapped),
		  "UNMAP_DMA of the read-only mapping");
	EXPECT_EQ(unmapped, good.size, "bytes unmapped");

	void *none = unreadable_page();
	map = good;
	map.vaddr = (uintptr_t)none;
	map.size = PAGE;
	map.flags = VFIO_DMA_MAP_FLAG_READ;
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "MAP_DMA READ of PROT_NONE memory");
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_MAP_DMA, unreadable_page()),
		     "MAP_DMA with an unreadable argument");
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_MAP_DMA, (void *)1),
		     "MAP_DMA with argument pointer 0x1");

	/* Nothing above changed anything. */
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL, "DMA_AVAIL after the failed maps");
	EXPECT_OK(unmap_dma(container, 0, 1ULL << 32, &unmapped), "UNMAP_DMA of the low 4 GiB");
	EXPECT_EQ(unmapped, 0, "bytes unmapped (nothing is mapped)");

	map = good;
	EXPECT_OK(ioctl(container, VFIO_IOMMU_MAP_DMA, &map), "MAP_DMA");
	EXPECT_ERRNO(EEXIST, ioctl(container, VFIO_IOMMU_MAP_DMA, &map), "MAP_DMA of the same iova");
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL - 1, "DMA_AVAIL with one mapping");

	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap) - 1,
		.iova = good.iova,
		.size = good.size,
	};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap), "UNMAP_DMA argsz 23");
	unmap.argsz = sizeof(unmap);
	unmap.flags = 1u << 3;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap), "UNMAP_DMA flag 1<<3");
	unmap.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap),
		     "UNMAP_DMA FLAG_ALL with iova and size set");
	unmap.flags = 0;
	unmap.size = PAGE;
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap),
		     "UNMAP_DMA of the first page of a mapping (TYPE1v2 never bisects)");
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_UNMAP_DMA, unreadable_page()),
		     "UNMAP_DMA with an unreadable argument");
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL - 1, "DMA_AVAIL after the failed unmaps");

	unmap.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	unmap.iova = 0;
	unmap.size = 0;
	EXPECT_OK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap), "UNMAP_DMA FLAG_ALL");
	EXPECT_EQ(unmap.size, good.size, "bytes unmapped by FLAG_ALL");
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL, "DMA_AVAIL after FLAG_ALL");
	close(group);
	close(container);
}

static void iommufd_sizes_and_flags(void)
{
	printf("-- iommufd size and flags\n");
	int iommufd = open_node("iommu");
	struct {
		struct iommu_ioas_alloc alloc;
		uint32_t tail;
	} big = {{.size = sizeof(big)}, 0};
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc) - 1};
	EXPECT_ERRNO(EINVAL, ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc), "IOMMU_IOAS_ALLOC size 11");
	alloc.size = sizeof(alloc);
	alloc.flags = 1;
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc),
		     "IOMMU_IOAS_ALLOC flags 1");
	big.tail = 1;
	EXPECT_ERRNO(E2BIG, ioctl(iommufd, IOMMU_IOAS_ALLOC, &big),
		     "IOMMU_IOAS_ALLOC size 16 with a non-zero byte past the struct");
	EXPECT_ERRNO(EFAULT, ioctl(iommufd, IOMMU_IOAS_ALLOC, unreadable_page()),
		     "IOMMU_IOAS_ALLOC with an unreadable argument");
	big.tail = 0;
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &big),
		  "IOMMU_IOAS_ALLOC size 16 with zeros past the struct");
	uint32_t ioas = big.alloc.out_ioas_id;

	char *buf = alloc_memory(4 * PAGE);
	struct iommu_ioas_map map;
	const struct iommu_ioas_map good = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)buf,
		.length = 4 * PAGE,
		.iova = 0x100000,
	};
	map = good;
	map.size = sizeof(map) - 1;
	EXPECT_ERRNO(EINVAL, ioctl(iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP size 39");
	map = good;
	map.flags |= 1u << 3;
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP flag 1<<3");
	map = good;
	map.__reserved = 1;
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(iommufd, IOMMU_IOAS_MAP, &map),
		     "IOMMU_IOAS_MAP __reserved 1");
	map = good;
	map.flags = IOMMU_IOAS_MAP_FIXED_IOVA;
	EXPECT_ERRNO(EINVAL, ioctl(iommufd, IOMMU_IOAS_MAP, &map),
		     "IOMMU_IOAS_MAP with neither READABLE nor WRITEABLE");
	map = good;
	map.ioas_id = ioas + 100;
	EXPECT_ERRNO(ENOENT, ioctl(iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP unknown IOAS");
	map = good;
	map.length = 0;
	EXPECT_ERRNO(EINVAL, ioctl(iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP length 0");
	map = good;
	map.length = UINT64_MAX;
	EXPECT_ERRNO(EOVERFLOW, ioctl(iommufd, IOMMU_IOAS_MAP, &map),
		     "IOMMU_IOAS_MAP length U64_MAX");
	EXPECT_ERRNO(EFAULT, ioctl(iommufd, IOMMU_IOAS_MAP, unreadable_page()),
		     "IOMMU_IOAS_MAP with an unreadable argument");

	map = good;
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP");
	EXPECT_ERRNO(EEXIST, ioctl(iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP of the same iova");

	struct iommu_ioas_unmap unmap = {
		.size = sizeof(unmap),
		.ioas_id = ioas,
		.iova = 0x800000,
		.length = PAGE,
	};
	EXPECT_ERRNO(ENOENT, ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap),
		     "IOMMU_IOAS_UNMAP of an empty range");
	unmap.iova = good.iova;
	EXPECT_ERRNO(ENOENT, ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap),
		     "IOMMU_IOAS_UNMAP of part of a mapping");
	unmap.length = 0;
	EXPECT_ERRNO(EINVAL, ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap), "IOMMU_IOAS_UNMAP length 0");

	struct iommu_ioas_iova_ranges ranges = {
		.size = sizeof(ranges),
		.ioas_id = ioas,
		.num_iovas = 1,
		.allowed_iovas = (uintptr_t)unreadable_page(),
	};
	EXPECT_ERRNO(EFAULT, ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &ranges),
		     "IOMMU_IOAS_IOVA_RANGES into an unwritable array");
	ranges.__reserved = 1;
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &ranges),
		     "IOMMU_IOAS_IOVA_RANGES __reserved 1");
	EXPECT_ERRNO(ENOTTY, ioctl(iommufd, _IO(IOMMUFD_TYPE, 0xfe), NULL),
		     "an unknown iommufd ioctl");

	unmap.iova = 0;
	unmap.length = UINT64_MAX;
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap), "IOMMU_IOAS_UNMAP all");
	EXPECT_EQ(unmap.length, good.length, "bytes unmapped");
	close(iommufd);
}

static void spapr_order(void)
{
	printf("-- sPAPR TCE v2\n");
	int container = open_node("vfio/vfio");
	int group = open_node("vfio/3");
	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), "VFIO_GROUP_SET_CONTAINER");
	EXPECT_ERRNO(ENODEV, ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU),
		     "VFIO_SET_IOMMU TYPE1v2 on a TCE group");
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU), "VFIO_SET_IOMMU v2");
	EXPECT_ERRNO(ENOTTY, ioctl(container, VFIO_IOMMU_ENABLE), "VFIO_IOMMU_ENABLE on v2");
	struct vfio_iommu_spapr_tce_info info = {.argsz = 15};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info),
		     "SPAPR_TCE_GET_INFO argsz 15");
	char *buf = alloc_memory(16 * PAGE);
	EXPECT_ERRNO(EPERM, map_dma(container, buf, 0, PAGE), "MAP_DMA before REGISTER_MEMORY");
	struct vfio_iommu_spapr_register_memory reg = {
		.argsz = sizeof(reg),
		.flags = 1,
		.vaddr = (uintptr_t)buf,
		.size = 16 * PAGE,
	};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg),
		     "REGISTER_MEMORY flags 1");
	reg.flags = 0;
	reg.vaddr = (uintptr_t)unmapped_range(16 * PAGE);
	EXPECT_ERRNO(EFAULT, ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg),
		     "REGISTER_MEMORY of unmapped memory");
	reg.vaddr = (uintptr_t)buf;
	EXPECT_OK(ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg), "REGISTER_MEMORY");
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.flags = VFIO_DMA_UNMAP_FLAG_ALL,
		.size = PAGE,
	};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap),
		     "sPAPR UNMAP_DMA with a flag");
	EXPECT_ERRNO(ENXIO, map_dma(container, buf, 1ULL << 40, PAGE),
		     "MAP_DMA outside every window");
	EXPECT_ERRNO(EINVAL, map_dma(container, alloc_memory(PAGE), 0, PAGE),
		     "MAP_DMA of memory that is not registered");
	close(group);
	close(container);
}

static void cdev_args(void)
{
	printf("-- device cdev BIND arguments\n");
	int device = open_node("vfio/devices/vfio1");
	int iommufd = open_node("iommu");
	struct vfio_device_bind_iommufd bind = {.argsz = 15, .iommufd = iommufd};
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind), "BIND argsz 15");
	bind.argsz = sizeof(bind);
	bind.flags = 1u << 1;
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind), "BIND flag 1<<1");
	bind.flags = 0;
	bind.iommufd = -1;
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind), "BIND iommufd -1");
	EXPECT_ERRNO(EFAULT, ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, unreadable_page()),
		     "BIND with an unreadable argument");
	bind.iommufd = iommufd;
	EXPECT_OK(ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind), "BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind), "BIND a second time");
	struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach), .pt_id = 999};
	EXPECT_ERRNO(ENOENT, ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach),
		     "ATTACH_IOMMUFD_PT to an unknown id");
	attach.argsz = 11;
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach),
		     "ATTACH_IOMMUFD_PT argsz 11");
	struct vfio_device_info info = {.argsz = 15};
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_GET_INFO, &info), "DEVICE_GET_INFO argsz 15");
	struct vfio_region_info region = {.argsz = sizeof(region), .index = 42};
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &region),
		     "DEVICE_GET_REGION_INFO index 42");
	char byte;
	EXPECT_ERRNO(EFAULT, pread(device, &byte, 1, (off_t)(7ULL << 40) + 256),
		     "pread past the end of config space");
	close(device);
	close(iommufd);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	container_ordering();
	type1_map_unmap();
	iommufd_sizes_and_flags();
	spapr_order();
	cdev_args();
	return test_finish();
}
