// Compile-time checks of core/uapi/ against
//   1. the numbers and layouts that shared/spec/linux-vfio-uapi.md states (§ cited per block), and
//   2. the system's <linux/vfio.h> (Debian 12: Linux 6.1 uapi headers; tests/abi/meson.build builds
//      this file only when the host headers are 6.1): every constant, struct size, member offset
//      and member size that 6.1 has must be equal, except the growth noted in part 2.
// A mismatch stops the build.
#include <cstddef>
#include <cstdint>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "tests/abi/abi_checks.h"

namespace ours = vfio_emu::uapi;

// =================================================================================================
// Part 1: the spec. Before <linux/vfio.h>, whose macros would replace our names.
// =================================================================================================

#define SPEC_SIZE(type, bytes) static_assert(sizeof(ours::type) == (bytes), #type ": size (spec)");
#define SPEC_OFFSET(type, member, bytes) \
  static_assert(offsetof(ours::type, member) == (bytes), #type "::" #member ": offset (spec)");
#define SPEC_VALUE(name, value) static_assert(ours::name == (value), #name ": value (spec)");

// §1: _IO(';', nr) = 0x3B00 | nr.
SPEC_VALUE(VFIO_TYPE, 0x3B)
SPEC_VALUE(VFIO_BASE, 0x64)
SPEC_VALUE(VFIO_API_VERSION, 0)
SPEC_VALUE(IOMMUFD_TYPE, 0x3B)
SPEC_VALUE(IOMMUFD_CMD_BASE, 0x80)

// §1.1 (the device cdev numbers are in spec_device_cdev.inc)
SPEC_VALUE(VFIO_GET_API_VERSION, 0x3B64)
SPEC_VALUE(VFIO_CHECK_EXTENSION, 0x3B65)
SPEC_VALUE(VFIO_SET_IOMMU, 0x3B66)
SPEC_VALUE(VFIO_GROUP_GET_STATUS, 0x3B67)
SPEC_VALUE(VFIO_GROUP_SET_CONTAINER, 0x3B68)
SPEC_VALUE(VFIO_GROUP_UNSET_CONTAINER, 0x3B69)
SPEC_VALUE(VFIO_GROUP_GET_DEVICE_FD, 0x3B6A)
SPEC_VALUE(VFIO_DEVICE_GET_INFO, 0x3B6B)
SPEC_VALUE(VFIO_DEVICE_GET_REGION_INFO, 0x3B6C)
SPEC_VALUE(VFIO_DEVICE_GET_IRQ_INFO, 0x3B6D)
SPEC_VALUE(VFIO_DEVICE_SET_IRQS, 0x3B6E)
SPEC_VALUE(VFIO_DEVICE_RESET, 0x3B6F)
SPEC_VALUE(VFIO_IOMMU_GET_INFO, 0x3B70)
SPEC_VALUE(VFIO_IOMMU_SPAPR_TCE_GET_INFO, 0x3B70)
SPEC_VALUE(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 0x3B70)
SPEC_VALUE(VFIO_IOMMU_MAP_DMA, 0x3B71)
SPEC_VALUE(VFIO_DEVICE_PCI_HOT_RESET, 0x3B71)
SPEC_VALUE(VFIO_IOMMU_UNMAP_DMA, 0x3B72)
SPEC_VALUE(VFIO_DEVICE_QUERY_GFX_PLANE, 0x3B72)
SPEC_VALUE(VFIO_IOMMU_ENABLE, 0x3B73)
SPEC_VALUE(VFIO_DEVICE_GET_GFX_DMABUF, 0x3B73)
SPEC_VALUE(VFIO_IOMMU_DISABLE, 0x3B74)
SPEC_VALUE(VFIO_DEVICE_IOEVENTFD, 0x3B74)
SPEC_VALUE(VFIO_IOMMU_DIRTY_PAGES, 0x3B75)
SPEC_VALUE(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, 0x3B75)
SPEC_VALUE(VFIO_DEVICE_FEATURE, 0x3B75)
SPEC_VALUE(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, 0x3B76)
SPEC_VALUE(VFIO_IOMMU_SPAPR_TCE_CREATE, 0x3B77)
SPEC_VALUE(VFIO_IOMMU_SPAPR_TCE_REMOVE, 0x3B78)
SPEC_VALUE(VFIO_EEH_PE_OP, 0x3B79)

// §1.2
SPEC_VALUE(VFIO_TYPE1_IOMMU, 1)
SPEC_VALUE(VFIO_SPAPR_TCE_IOMMU, 2)
SPEC_VALUE(VFIO_TYPE1v2_IOMMU, 3)
SPEC_VALUE(VFIO_DMA_CC_IOMMU, 4)
SPEC_VALUE(VFIO_EEH, 5)
SPEC_VALUE(VFIO_TYPE1_NESTING_IOMMU, 6)
SPEC_VALUE(VFIO_SPAPR_TCE_v2_IOMMU, 7)
SPEC_VALUE(VFIO_NOIOMMU_IOMMU, 8)
SPEC_VALUE(VFIO_UNMAP_ALL, 9)
SPEC_VALUE(VFIO_UPDATE_VADDR, 10)


// The private identify ioctl collides with no VFIO or iommufd number (core/uapi/vfio_emu.h).
namespace {
constexpr std::uint32_t kLinuxIoctlNumbers[] = {
    ours::VFIO_GET_API_VERSION, ours::VFIO_CHECK_EXTENSION, ours::VFIO_SET_IOMMU,
    ours::VFIO_GROUP_GET_STATUS, ours::VFIO_GROUP_SET_CONTAINER, ours::VFIO_GROUP_UNSET_CONTAINER,
    ours::VFIO_GROUP_GET_DEVICE_FD, ours::VFIO_DEVICE_GET_INFO, ours::VFIO_DEVICE_GET_REGION_INFO,
    ours::VFIO_DEVICE_GET_IRQ_INFO, ours::VFIO_DEVICE_SET_IRQS, ours::VFIO_DEVICE_RESET,
    ours::VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, ours::VFIO_DEVICE_PCI_HOT_RESET,
    ours::VFIO_DEVICE_QUERY_GFX_PLANE, ours::VFIO_DEVICE_GET_GFX_DMABUF, ours::VFIO_DEVICE_IOEVENTFD,
    ours::VFIO_DEVICE_FEATURE, ours::VFIO_DEVICE_BIND_IOMMUFD, ours::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    ours::VFIO_DEVICE_DETACH_IOMMUFD_PT, ours::VFIO_IOMMU_GET_INFO, ours::VFIO_IOMMU_MAP_DMA,
    ours::VFIO_IOMMU_UNMAP_DMA, ours::VFIO_IOMMU_ENABLE, ours::VFIO_IOMMU_DISABLE,
    ours::VFIO_IOMMU_DIRTY_PAGES, ours::VFIO_IOMMU_SPAPR_TCE_GET_INFO,
    ours::VFIO_IOMMU_SPAPR_REGISTER_MEMORY, ours::VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY,
    ours::VFIO_IOMMU_SPAPR_TCE_CREATE, ours::VFIO_IOMMU_SPAPR_TCE_REMOVE, ours::VFIO_EEH_PE_OP,
    ours::IOMMU_DESTROY, ours::IOMMU_IOAS_ALLOC, ours::IOMMU_IOAS_ALLOW_IOVAS, ours::IOMMU_IOAS_COPY,
    ours::IOMMU_IOAS_IOVA_RANGES, ours::IOMMU_IOAS_MAP, ours::IOMMU_IOAS_UNMAP, ours::IOMMU_OPTION,
    ours::IOMMU_VFIO_IOAS, ours::IOMMU_HWPT_ALLOC, ours::IOMMU_GET_HW_INFO,
    ours::IOMMU_HWPT_SET_DIRTY_TRACKING, ours::IOMMU_HWPT_GET_DIRTY_BITMAP, ours::IOMMU_HWPT_INVALIDATE,
    ours::IOMMU_FAULT_QUEUE_ALLOC, ours::IOMMU_IOAS_MAP_FILE, ours::IOMMU_VIOMMU_ALLOC,
    ours::IOMMU_VDEVICE_ALLOC, ours::IOMMU_IOAS_CHANGE_PROCESS, ours::IOMMU_VEVENTQ_ALLOC,
    ours::IOMMU_HW_QUEUE_ALLOC,
};

constexpr bool identify_is_free() {
  for (std::uint32_t number : kLinuxIoctlNumbers) {
    if (number == ours::VFIO_EMU_IDENTIFY) return false;
  }
  return true;
}
static_assert(identify_is_free(), "VFIO_EMU_IDENTIFY collides with a Linux ioctl");
}  // namespace

// §2.2
SPEC_SIZE(vfio_group_status, 8)
SPEC_OFFSET(vfio_group_status, argsz, 0)
SPEC_OFFSET(vfio_group_status, flags, 4)
SPEC_VALUE(VFIO_GROUP_FLAGS_VIABLE, 1U << 0)
SPEC_VALUE(VFIO_GROUP_FLAGS_CONTAINER_SET, 1U << 1)

// §3.2
SPEC_SIZE(vfio_iommu_type1_info, 24)
SPEC_OFFSET(vfio_iommu_type1_info, argsz, 0)
SPEC_OFFSET(vfio_iommu_type1_info, flags, 4)
SPEC_OFFSET(vfio_iommu_type1_info, iova_pgsizes, 8)
SPEC_OFFSET(vfio_iommu_type1_info, cap_offset, 16)
SPEC_OFFSET(vfio_iommu_type1_info, pad, 20)
SPEC_VALUE(VFIO_IOMMU_INFO_PGSIZES, 1U << 0)
SPEC_VALUE(VFIO_IOMMU_INFO_CAPS, 1U << 1)
SPEC_SIZE(vfio_info_cap_header, 8)
SPEC_OFFSET(vfio_info_cap_header, id, 0)
SPEC_OFFSET(vfio_info_cap_header, version, 2)
SPEC_OFFSET(vfio_info_cap_header, next, 4)
SPEC_VALUE(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1)
SPEC_VALUE(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 2)
SPEC_VALUE(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 3)
SPEC_SIZE(vfio_iommu_type1_info_cap_iova_range, 16)  // + 16 per range
SPEC_OFFSET(vfio_iommu_type1_info_cap_iova_range, nr_iovas, 8)
SPEC_OFFSET(vfio_iommu_type1_info_cap_iova_range, reserved, 12)
SPEC_OFFSET(vfio_iommu_type1_info_cap_iova_range, iova_ranges, 16)
SPEC_SIZE(vfio_iova_range, 16)
SPEC_OFFSET(vfio_iova_range, start, 0)
SPEC_OFFSET(vfio_iova_range, end, 8)
SPEC_SIZE(vfio_iommu_type1_info_cap_migration, 32)
SPEC_OFFSET(vfio_iommu_type1_info_cap_migration, flags, 8)
SPEC_OFFSET(vfio_iommu_type1_info_cap_migration, pgsize_bitmap, 16)
SPEC_OFFSET(vfio_iommu_type1_info_cap_migration, max_dirty_bitmap_size, 24)
SPEC_SIZE(vfio_iommu_type1_info_dma_avail, 12)
SPEC_OFFSET(vfio_iommu_type1_info_dma_avail, avail, 8)

// §3.3
SPEC_SIZE(vfio_iommu_type1_dma_map, 32)
SPEC_OFFSET(vfio_iommu_type1_dma_map, argsz, 0)
SPEC_OFFSET(vfio_iommu_type1_dma_map, flags, 4)
SPEC_OFFSET(vfio_iommu_type1_dma_map, vaddr, 8)
SPEC_OFFSET(vfio_iommu_type1_dma_map, iova, 16)
SPEC_OFFSET(vfio_iommu_type1_dma_map, size, 24)
SPEC_VALUE(VFIO_DMA_MAP_FLAG_READ, 1U << 0)
SPEC_VALUE(VFIO_DMA_MAP_FLAG_WRITE, 1U << 1)
SPEC_VALUE(VFIO_DMA_MAP_FLAG_VADDR, 1U << 2)

// §3.4
SPEC_SIZE(vfio_iommu_type1_dma_unmap, 24)
SPEC_OFFSET(vfio_iommu_type1_dma_unmap, argsz, 0)
SPEC_OFFSET(vfio_iommu_type1_dma_unmap, flags, 4)
SPEC_OFFSET(vfio_iommu_type1_dma_unmap, iova, 8)
SPEC_OFFSET(vfio_iommu_type1_dma_unmap, size, 16)
SPEC_OFFSET(vfio_iommu_type1_dma_unmap, data, 24)
SPEC_VALUE(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 1U << 0)
SPEC_VALUE(VFIO_DMA_UNMAP_FLAG_ALL, 1U << 1)
SPEC_VALUE(VFIO_DMA_UNMAP_FLAG_VADDR, 1U << 2)
SPEC_SIZE(vfio_bitmap, 24)
SPEC_OFFSET(vfio_bitmap, pgsize, 0)
SPEC_OFFSET(vfio_bitmap, size, 8)
SPEC_OFFSET(vfio_bitmap, data, 16)

// §3.5
SPEC_SIZE(vfio_iommu_type1_dirty_bitmap, 8)
SPEC_OFFSET(vfio_iommu_type1_dirty_bitmap, data, 8)
SPEC_VALUE(VFIO_IOMMU_DIRTY_PAGES_FLAG_START, 1U << 0)
SPEC_VALUE(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, 1U << 1)
SPEC_VALUE(VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, 1U << 2)
SPEC_SIZE(vfio_iommu_type1_dirty_bitmap_get, 40)
SPEC_OFFSET(vfio_iommu_type1_dirty_bitmap_get, iova, 0)
SPEC_OFFSET(vfio_iommu_type1_dirty_bitmap_get, size, 8)
SPEC_OFFSET(vfio_iommu_type1_dirty_bitmap_get, bitmap, 16)

// §4.1
SPEC_SIZE(vfio_iommu_spapr_tce_ddw_info, 16)
SPEC_OFFSET(vfio_iommu_spapr_tce_ddw_info, pgsizes, 0)
SPEC_OFFSET(vfio_iommu_spapr_tce_ddw_info, max_dynamic_windows_supported, 8)
SPEC_OFFSET(vfio_iommu_spapr_tce_ddw_info, levels, 12)
SPEC_SIZE(vfio_iommu_spapr_tce_info, 32)
SPEC_OFFSET(vfio_iommu_spapr_tce_info, dma32_window_start, 8)
SPEC_OFFSET(vfio_iommu_spapr_tce_info, dma32_window_size, 12)
SPEC_OFFSET(vfio_iommu_spapr_tce_info, ddw, 16)
SPEC_VALUE(VFIO_IOMMU_SPAPR_INFO_DDW, 1U << 0)
SPEC_SIZE(vfio_iommu_spapr_register_memory, 24)
SPEC_OFFSET(vfio_iommu_spapr_register_memory, vaddr, 8)
SPEC_OFFSET(vfio_iommu_spapr_register_memory, size, 16)
SPEC_SIZE(vfio_iommu_spapr_tce_create, 40)
SPEC_OFFSET(vfio_iommu_spapr_tce_create, page_shift, 8)
SPEC_OFFSET(vfio_iommu_spapr_tce_create, __resv1, 12)
SPEC_OFFSET(vfio_iommu_spapr_tce_create, window_size, 16)
SPEC_OFFSET(vfio_iommu_spapr_tce_create, levels, 24)
SPEC_OFFSET(vfio_iommu_spapr_tce_create, __resv2, 28)
SPEC_OFFSET(vfio_iommu_spapr_tce_create, start_addr, 32)
SPEC_SIZE(vfio_iommu_spapr_tce_remove, 16)
SPEC_OFFSET(vfio_iommu_spapr_tce_remove, start_addr, 8)

// §4.10. The spec gives the size and the first three fields; the union starts at 16 because the
// error struct holds u64s.
SPEC_SIZE(vfio_eeh_pe_op, 40)
SPEC_OFFSET(vfio_eeh_pe_op, argsz, 0)
SPEC_OFFSET(vfio_eeh_pe_op, flags, 4)
SPEC_OFFSET(vfio_eeh_pe_op, op, 8)
SPEC_VALUE(VFIO_EEH_PE_DISABLE, 0)
SPEC_VALUE(VFIO_EEH_PE_ENABLE, 1)
SPEC_VALUE(VFIO_EEH_PE_UNFREEZE_IO, 2)
SPEC_VALUE(VFIO_EEH_PE_UNFREEZE_DMA, 3)
SPEC_VALUE(VFIO_EEH_PE_GET_STATE, 4)
SPEC_VALUE(VFIO_EEH_PE_RESET_DEACTIVATE, 5)
SPEC_VALUE(VFIO_EEH_PE_RESET_HOT, 6)
SPEC_VALUE(VFIO_EEH_PE_RESET_FUNDAMENTAL, 7)
SPEC_VALUE(VFIO_EEH_PE_CONFIGURE, 8)
SPEC_VALUE(VFIO_EEH_PE_INJECT_ERR, 9)
SPEC_VALUE(VFIO_EEH_PE_STATE_NORMAL, 0)
SPEC_VALUE(VFIO_EEH_PE_STATE_RESET, 1)
SPEC_VALUE(VFIO_EEH_PE_STATE_STOPPED, 2)
SPEC_VALUE(VFIO_EEH_PE_STATE_STOPPED_DMA, 4)
SPEC_VALUE(VFIO_EEH_PE_STATE_UNAVAIL, 5)
// The spec names EEH_ERR_TYPE_32 and EEH_ERR_FUNC_LD_CFG_ADDR without values; these are
// arch/powerpc/include/uapi/asm/eeh.h's, which x86 hosts do not install to compare against.
static_assert(ours::EEH_ERR_TYPE_32 == 0 && ours::EEH_ERR_TYPE_64 == 1);
static_assert(ours::EEH_ERR_FUNC_LD_CFG_ADDR == 4 && ours::EEH_ERR_FUNC_MAX == 19);

// §1.3, §5.1, §5.2 and §5.10: shared with compat_c.c, which checks the C examples' header.
#include "tests/abi/spec_iommufd.inc"
#include "tests/abi/spec_device_cdev.inc"

// =================================================================================================
// Part 2: Linux 6.1's <linux/vfio.h>.
// =================================================================================================

namespace snapshot {
VFIO_EMU_VFIO_CONSTANTS_IN_LINUX_6_1(VFIO_EMU_SNAPSHOT_CONSTANT)
}  // namespace snapshot

#include <linux/vfio.h>

VFIO_EMU_VFIO_CONSTANTS_IN_LINUX_6_1(VFIO_EMU_EXPECT_SAME_CONSTANT)

VFIO_EMU_UAPI_VFIO_STRUCTS_AS_IN_LINUX_6_1(VFIO_EMU_EXPECT_SAME_STRUCT)

// The structs that grew after 6.1: everything 6.1 has is identical, and the growth is exactly this.

// vfio_device_info: 6.1 ends at cap_offset (20 bytes); `pad` was appended (24 bytes).
VFIO_EMU_EXPECT_SAME_MEMBERS(vfio_device_info, argsz, flags, num_regions, num_irqs, cap_offset)
static_assert(sizeof(::vfio_device_info) == 20 && sizeof(ours::vfio_device_info) == 24);
static_assert(offsetof(ours::vfio_device_info, pad) == sizeof(::vfio_device_info));

// vfio_iommu_type1_info: 6.1's implicit tail padding after cap_offset is the explicit `pad`.
VFIO_EMU_EXPECT_SAME_MEMBERS(vfio_iommu_type1_info, argsz, flags, iova_pgsizes, cap_offset)
static_assert(sizeof(ours::vfio_iommu_type1_info) == sizeof(::vfio_iommu_type1_info));
static_assert(offsetof(ours::vfio_iommu_type1_info, pad) == offsetof(::vfio_iommu_type1_info, cap_offset) + 4);

// vfio_pci_dependent_device: `devid` (cdev callers) is a union alternative of 6.1's `group_id`.
VFIO_EMU_EXPECT_SAME_MEMBERS(vfio_pci_dependent_device, group_id, segment, bus, devfn)
static_assert(sizeof(ours::vfio_pci_dependent_device) == sizeof(::vfio_pci_dependent_device));
static_assert(offsetof(ours::vfio_pci_dependent_device, devid) == offsetof(::vfio_pci_dependent_device, group_id));

// Linux 6.1 has no device cdev: VFIO_EMU_UAPI_VFIO_STRUCTS_AFTER_LINUX_6_1 is checked against the
// spec in part 1 and against examples/include/vfio_emu_compat.h in compat_vs_uapi.cc.
#ifdef VFIO_DEVICE_BIND_IOMMUFD
#error "this host's <linux/vfio.h> is newer than 6.1; tests/abi/meson.build should not build this file"
#endif
