/*
 * Compile-time check, in C as the examples are written, that examples/include/vfio_emu_compat.h
 * compiles in its default configuration and gives the sizes, offsets and numbers that
 * shared/spec/linux-vfio-uapi.md states. A mismatch stops the build.
 */
#include <stddef.h>

#include "vfio_emu_compat.h"

#define SPEC_SIZE(type, bytes) _Static_assert(sizeof(struct type) == (bytes), #type ": size (spec)");
#define SPEC_OFFSET(type, member, bytes) \
	_Static_assert(offsetof(struct type, member) == (bytes), #type "." #member ": offset (spec)");
#define SPEC_VALUE(name, value) _Static_assert((name) == (value), #name ": value (spec)");

/* §5.10: the device cdev, defined by the compat header on Linux 6.1 hosts. */
SPEC_VALUE(VFIO_DEVICE_BIND_IOMMUFD, 0x3B76)
SPEC_VALUE(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3B77)
SPEC_VALUE(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3B78)
SPEC_OFFSET(vfio_device_bind_iommufd, iommufd, 8)
SPEC_OFFSET(vfio_device_bind_iommufd, out_devid, 12)
SPEC_OFFSET(vfio_device_attach_iommufd_pt, pt_id, 8)
#if VFIO_EMU_COMPAT_DEFINES_DEVICE_CDEV
SPEC_SIZE(vfio_device_bind_iommufd, 24)
SPEC_OFFSET(vfio_device_bind_iommufd, token_uuid_ptr, 16)
SPEC_VALUE(VFIO_DEVICE_BIND_FLAG_TOKEN, 1 << 0)
SPEC_SIZE(vfio_device_attach_iommufd_pt, 16)
SPEC_OFFSET(vfio_device_attach_iommufd_pt, pasid, 12)
SPEC_VALUE(VFIO_DEVICE_ATTACH_PASID, 1 << 0)
SPEC_SIZE(vfio_device_detach_iommufd_pt, 12)
SPEC_OFFSET(vfio_device_detach_iommufd_pt, pasid, 8)
SPEC_VALUE(VFIO_DEVICE_DETACH_PASID, 1 << 0)
#endif

/* §1.3, §5.1, §5.2: iommufd. */
SPEC_VALUE(IOMMU_DESTROY, 0x3B80)
SPEC_VALUE(IOMMU_IOAS_ALLOC, 0x3B81)
SPEC_VALUE(IOMMU_IOAS_ALLOW_IOVAS, 0x3B82)
SPEC_VALUE(IOMMU_IOAS_COPY, 0x3B83)
SPEC_VALUE(IOMMU_IOAS_IOVA_RANGES, 0x3B84)
SPEC_VALUE(IOMMU_IOAS_MAP, 0x3B85)
SPEC_VALUE(IOMMU_IOAS_UNMAP, 0x3B86)
SPEC_VALUE(IOMMU_OPTION, 0x3B87)
SPEC_VALUE(IOMMU_VFIO_IOAS, 0x3B88)
#if VFIO_EMU_COMPAT_DEFINES_IOMMUFD
/* Newer than the first <linux/iommufd.h> (6.2); checked only where the compat header defines them. */
SPEC_VALUE(IOMMU_HWPT_ALLOC, 0x3B89)
SPEC_VALUE(IOMMU_GET_HW_INFO, 0x3B8A)
SPEC_VALUE(IOMMU_HWPT_SET_DIRTY_TRACKING, 0x3B8B)
SPEC_VALUE(IOMMU_HWPT_GET_DIRTY_BITMAP, 0x3B8C)
SPEC_VALUE(IOMMU_HWPT_INVALIDATE, 0x3B8D)
SPEC_VALUE(IOMMU_FAULT_QUEUE_ALLOC, 0x3B8E)
SPEC_VALUE(IOMMU_IOAS_MAP_FILE, 0x3B8F)
SPEC_VALUE(IOMMU_VIOMMU_ALLOC, 0x3B90)
SPEC_VALUE(IOMMU_VDEVICE_ALLOC, 0x3B91)
SPEC_VALUE(IOMMU_IOAS_CHANGE_PROCESS, 0x3B92)
SPEC_VALUE(IOMMU_VEVENTQ_ALLOC, 0x3B93)
SPEC_VALUE(IOMMU_HW_QUEUE_ALLOC, 0x3B94)
SPEC_SIZE(iommu_ioas_map_file, 40)
SPEC_OFFSET(iommu_ioas_map_file, fd, 12)
SPEC_OFFSET(iommu_ioas_map_file, start, 16)
SPEC_OFFSET(iommu_ioas_map_file, iova, 32)
#endif

SPEC_SIZE(iommu_destroy, 8)
SPEC_SIZE(iommu_ioas_alloc, 12)
SPEC_OFFSET(iommu_ioas_alloc, out_ioas_id, 8)
SPEC_SIZE(iommu_iova_range, 16)
SPEC_OFFSET(iommu_iova_range, last, 8)
SPEC_SIZE(iommu_ioas_iova_ranges, 32)
SPEC_OFFSET(iommu_ioas_iova_ranges, allowed_iovas, 16)
SPEC_OFFSET(iommu_ioas_iova_ranges, out_iova_alignment, 24)
SPEC_SIZE(iommu_ioas_allow_iovas, 24)
SPEC_OFFSET(iommu_ioas_allow_iovas, allowed_iovas, 16)
SPEC_SIZE(iommu_ioas_map, 40)
SPEC_OFFSET(iommu_ioas_map, ioas_id, 8)
SPEC_OFFSET(iommu_ioas_map, user_va, 16)
SPEC_OFFSET(iommu_ioas_map, length, 24)
SPEC_OFFSET(iommu_ioas_map, iova, 32)
SPEC_SIZE(iommu_ioas_copy, 40)
SPEC_OFFSET(iommu_ioas_copy, src_ioas_id, 12)
SPEC_OFFSET(iommu_ioas_copy, dst_iova, 24)
SPEC_OFFSET(iommu_ioas_copy, src_iova, 32)
SPEC_SIZE(iommu_ioas_unmap, 24)
SPEC_OFFSET(iommu_ioas_unmap, iova, 8)
SPEC_OFFSET(iommu_ioas_unmap, length, 16)
SPEC_SIZE(iommu_option, 24)
SPEC_OFFSET(iommu_option, op, 8)
SPEC_OFFSET(iommu_option, object_id, 12)
SPEC_OFFSET(iommu_option, val64, 16)
SPEC_SIZE(iommu_vfio_ioas, 12)
SPEC_OFFSET(iommu_vfio_ioas, op, 8)
SPEC_VALUE(IOMMU_IOAS_MAP_FIXED_IOVA, 1 << 0)
SPEC_VALUE(IOMMU_IOAS_MAP_WRITEABLE, 1 << 1)
SPEC_VALUE(IOMMU_IOAS_MAP_READABLE, 1 << 2)
SPEC_VALUE(IOMMU_VFIO_IOAS_GET, 0)
SPEC_VALUE(IOMMU_VFIO_IOAS_SET, 1)
SPEC_VALUE(IOMMU_VFIO_IOAS_CLEAR, 2)
SPEC_VALUE(IOMMU_OPTION_RLIMIT_MODE, 0)
SPEC_VALUE(IOMMU_OPTION_HUGE_PAGES, 1)

/* What the C examples use from the host's <linux/vfio.h> (§2.2, §3.2, §3.3, §3.4). */
SPEC_SIZE(vfio_group_status, 8)
SPEC_SIZE(vfio_iommu_type1_info, 24)
SPEC_SIZE(vfio_iommu_type1_dma_map, 32)
SPEC_SIZE(vfio_iommu_type1_dma_unmap, 24)
SPEC_VALUE(VFIO_IOMMU_MAP_DMA, 0x3B71)
