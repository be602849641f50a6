/*
 * Compile-time check, in C as the examples are written, that examples/include/vfio_emu_compat.h
 * gives the numbers, sizes and offsets that shared/spec/linux-vfio-uapi.md states for what it
 * adds to the host's headers. A mismatch stops the build.
 *
 * Its own iommufd definitions are forced, as in compat_vs_uapi.cc, so they are what gets checked
 * even on hosts that have <linux/iommufd.h>.
 */
#include <stddef.h>

#define VFIO_EMU_COMPAT_NO_SYSTEM_IOMMUFD
#include "vfio_emu_compat.h"

#define SPEC_SIZE(type, bytes) _Static_assert(sizeof(struct type) == (bytes), #type ": size (spec)");
#define SPEC_OFFSET(type, member, bytes) \
	_Static_assert(offsetof(struct type, member) == (bytes), #type "." #member ": offset (spec)");
#define SPEC_VALUE(name, value) _Static_assert((name) == (value), #name ": value (spec)");

_Static_assert(VFIO_EMU_COMPAT_DEFINES_IOMMUFD == 1, "the compat header's own iommufd definitions must be checked");
#include "spec_iommufd.inc"

#if VFIO_EMU_COMPAT_DEFINES_DEVICE_CDEV
#include "spec_device_cdev.inc"
#else
/* From a host header (6.6+), possibly before the token and PASID members: what every version has. */
SPEC_VALUE(VFIO_DEVICE_BIND_IOMMUFD, 0x3B76)
SPEC_VALUE(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3B77)
SPEC_VALUE(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3B78)
SPEC_OFFSET(vfio_device_bind_iommufd, out_devid, 12)
SPEC_OFFSET(vfio_device_attach_iommufd_pt, pt_id, 8)
#endif

/* What the C examples use from the host's <linux/vfio.h> (§2.2, §3.2, §3.3, §3.4). */
SPEC_SIZE(vfio_group_status, 8)
SPEC_SIZE(vfio_iommu_type1_info, 24)
SPEC_SIZE(vfio_iommu_type1_dma_map, 32)
SPEC_SIZE(vfio_iommu_type1_dma_unmap, 24)
SPEC_VALUE(VFIO_IOMMU_MAP_DMA, 0x3B71)
