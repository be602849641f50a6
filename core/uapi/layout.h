// Every uAPI struct of core/uapi/vfio.h and core/uapi/iommufd.h described as data: its name and
// size, and each member's name, offset and size. The numbers come from sizeof/offsetof on the real
// members, so they cannot drift from the definitions; layout.cc also refuses to compile if a
// struct's member list leaves bytes unaccounted for (a member missing from the list below) or is
// not in declaration order.
//
// The lists are X-macros, grouped by how each struct relates to the Linux 6.1 headers that Debian
// 12 installs, so tests/abi can compare each group with the header that has it. Each entry is
// X(struct, member...); union alternatives are listed at the same offset, one after the other.
//
// Consumers: tests/abi/abi_dump.cc prints the registry into the golden ABI file; the dispatcher's
// command table will reference the same structs for its minimum sizes.
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::uapi {

struct MemberLayout {
  std::string_view name;
  std::size_t offset;
  std::size_t size;  // for a flexible array member: the size of one element
  std::size_t alignment;
  bool flexible_array;  // `T name[]` at the end of the struct; takes no room in sizeof
};

struct StructLayout {
  std::string_view name;
  std::size_t size;
  std::size_t alignment;
  std::vector<MemberLayout> members;  // in declaration order
};

// All uAPI structs, VFIO first, then iommufd; the order is stable.
const std::vector<StructLayout>& uapi_struct_layouts();

// The layout of a member of type `Member` (as decltype(Struct::member) names it) at `offset`.
template <typename Member>
constexpr MemberLayout member_layout(std::string_view name, std::size_t offset) {
  if constexpr (std::is_unbounded_array_v<Member>) {
    using Element = std::remove_extent_t<Member>;
    return {name, offset, sizeof(Element), alignof(Element), true};
  } else {
    return {name, offset, sizeof(Member), alignof(Member), false};
  }
}

}  // namespace vfio_emu::uapi

// VFIO_EMU_FOR_EACH_MEMBER(macro, type, m1, m2, ...) expands to macro(type, m1) macro(type, m2) ...
// (up to 64 members; the largest uAPI struct has 11).
#define VFIO_EMU_FOR_EACH_MEMBER(macro, type, ...) \
  __VA_OPT__(VFIO_EMU_EXPAND_64(VFIO_EMU_FOR_EACH_MEMBER_STEP(macro, type, __VA_ARGS__)))
#define VFIO_EMU_FOR_EACH_MEMBER_STEP(macro, type, member, ...) \
  macro(type, member) __VA_OPT__(VFIO_EMU_FOR_EACH_MEMBER_AGAIN VFIO_EMU_PARENS(macro, type, __VA_ARGS__))
#define VFIO_EMU_FOR_EACH_MEMBER_AGAIN() VFIO_EMU_FOR_EACH_MEMBER_STEP
#define VFIO_EMU_PARENS ()
#define VFIO_EMU_EXPAND_64(...) VFIO_EMU_EXPAND_16(VFIO_EMU_EXPAND_16(VFIO_EMU_EXPAND_16(VFIO_EMU_EXPAND_16(__VA_ARGS__))))
#define VFIO_EMU_EXPAND_16(...) VFIO_EMU_EXPAND_4(VFIO_EMU_EXPAND_4(VFIO_EMU_EXPAND_4(VFIO_EMU_EXPAND_4(__VA_ARGS__))))
#define VFIO_EMU_EXPAND_4(...) VFIO_EMU_EXPAND_1(VFIO_EMU_EXPAND_1(VFIO_EMU_EXPAND_1(VFIO_EMU_EXPAND_1(__VA_ARGS__))))
#define VFIO_EMU_EXPAND_1(...) __VA_ARGS__

// VFIO structs whose members and layout are the same in Linux 6.1 and 6.18.
#define VFIO_EMU_UAPI_VFIO_STRUCTS_AS_IN_LINUX_6_1(X)                                                \
  X(vfio_info_cap_header, id, version, next)                                                        \
  X(vfio_group_status, argsz, flags)                                                                \
  X(vfio_region_info, argsz, flags, index, cap_offset, size, offset)                                \
  X(vfio_irq_info, argsz, flags, index, count)                                                      \
  X(vfio_irq_set, argsz, flags, index, start, count, data)                                          \
  X(vfio_pci_hot_reset_info, argsz, flags, count, devices)                                          \
  X(vfio_pci_hot_reset, argsz, flags, count, group_fds)                                             \
  X(vfio_device_feature, argsz, flags, data)                                                        \
  X(vfio_iova_range, start, end)                                                                    \
  X(vfio_iommu_type1_info_cap_iova_range, header, nr_iovas, reserved, iova_ranges)                  \
  X(vfio_iommu_type1_info_cap_migration, header, flags, pgsize_bitmap, max_dirty_bitmap_size)       \
  X(vfio_iommu_type1_info_dma_avail, header, avail)                                                 \
  X(vfio_iommu_type1_dma_map, argsz, flags, vaddr, iova, size)                                      \
  X(vfio_bitmap, pgsize, size, data)                                                                \
  X(vfio_iommu_type1_dma_unmap, argsz, flags, iova, size, data)                                     \
  X(vfio_iommu_type1_dirty_bitmap, argsz, flags, data)                                              \
  X(vfio_iommu_type1_dirty_bitmap_get, iova, size, bitmap)                                          \
  X(vfio_iommu_spapr_tce_ddw_info, pgsizes, max_dynamic_windows_supported, levels)                  \
  X(vfio_iommu_spapr_tce_info, argsz, flags, dma32_window_start, dma32_window_size, ddw)            \
  X(vfio_iommu_spapr_register_memory, argsz, flags, vaddr, size)                                    \
  X(vfio_iommu_spapr_tce_create, argsz, flags, page_shift, __resv1, window_size, levels, __resv2,   \
    start_addr)                                                                                     \
  X(vfio_iommu_spapr_tce_remove, argsz, flags, start_addr)                                          \
  X(vfio_eeh_pe_err, type, func, addr, mask)                                                        \
  X(vfio_eeh_pe_op, argsz, flags, op, err)

// VFIO structs Linux changed after 6.1 (see the comments at their definitions):
// vfio_device_info gained `pad` (20 -> 24 bytes), vfio_pci_dependent_device gained the `devid`
// union alternative, vfio_iommu_type1_info named its tail padding `pad` (24 bytes either way).
#define VFIO_EMU_UAPI_VFIO_STRUCTS_GROWN_SINCE_LINUX_6_1(X)                                          \
  X(vfio_device_info, argsz, flags, num_regions, num_irqs, cap_offset, pad)                          \
  X(vfio_pci_dependent_device, group_id, devid, segment, bus, devfn)                                \
  X(vfio_iommu_type1_info, argsz, flags, iova_pgsizes, cap_offset, pad)

// VFIO structs that Linux 6.1 does not have: the device cdev's (Linux 6.6+).
#define VFIO_EMU_UAPI_VFIO_STRUCTS_AFTER_LINUX_6_1(X)                                                \
  X(vfio_device_bind_iommufd, argsz, flags, iommufd, out_devid, token_uuid_ptr)                     \
  X(vfio_device_attach_iommufd_pt, argsz, flags, pt_id, pasid)                                      \
  X(vfio_device_detach_iommufd_pt, argsz, flags, pasid)

// iommufd structs (Linux 6.1 installs no <linux/iommufd.h>).
#define VFIO_EMU_UAPI_IOMMUFD_STRUCTS(X)                                                             \
  X(iommu_destroy, size, id)                                                                        \
  X(iommu_ioas_alloc, size, flags, out_ioas_id)                                                     \
  X(iommu_iova_range, start, last)                                                                  \
  X(iommu_ioas_iova_ranges, size, ioas_id, num_iovas, __reserved, allowed_iovas, out_iova_alignment) \
  X(iommu_ioas_allow_iovas, size, ioas_id, num_iovas, __reserved, allowed_iovas)                    \
  X(iommu_ioas_map, size, flags, ioas_id, __reserved, user_va, length, iova)                        \
  X(iommu_ioas_map_file, size, flags, ioas_id, fd, start, length, iova)                             \
  X(iommu_ioas_copy, size, flags, dst_ioas_id, src_ioas_id, length, dst_iova, src_iova)             \
  X(iommu_ioas_unmap, size, ioas_id, iova, length)                                                  \
  X(iommu_option, size, option_id, op, __reserved, object_id, val64)                                \
  X(iommu_vfio_ioas, size, ioas_id, op, __reserved)                                                 \
  X(iommu_hwpt_vtd_s1, flags, pgtbl_addr, addr_width, __reserved)                                   \
  X(iommu_hwpt_alloc, size, flags, dev_id, pt_id, out_hwpt_id, __reserved, data_type, data_len,     \
    data_uptr, fault_id, __reserved2)                                                               \
  X(iommu_hw_info_vtd, flags, __reserved, cap_reg, ecap_reg)                                        \
  X(iommu_hw_info, size, flags, dev_id, data_len, data_uptr, in_data_type, out_data_type,           \
    out_max_pasid_log2, __reserved, out_capabilities)                                               \
  X(iommu_hwpt_set_dirty_tracking, size, flags, hwpt_id, __reserved)                                \
  X(iommu_hwpt_get_dirty_bitmap, size, hwpt_id, flags, __reserved, iova, length, page_size, data)   \
  X(iommu_hwpt_vtd_s1_invalidate, addr, npages, flags, __reserved)                                  \
  X(iommu_hwpt_invalidate, size, hwpt_id, data_uptr, data_type, entry_len, entry_num, __reserved)   \
  X(iommu_fault_alloc, size, flags, out_fault_id, out_fault_fd)                                     \
  X(iommu_viommu_alloc, size, flags, type, dev_id, hwpt_id, out_viommu_id, data_len, __reserved,    \
    data_uptr)                                                                                      \
  X(iommu_vdevice_alloc, size, viommu_id, dev_id, out_vdevice_id, virt_id)                          \
  X(iommu_ioas_change_process, size, __reserved)                                                    \
  X(iommu_veventq_alloc, size, flags, viommu_id, type, veventq_depth, out_veventq_id,               \
    out_veventq_fd, __reserved)                                                                     \
  X(iommu_hw_queue_alloc, size, flags, viommu_id, type, index, out_hw_queue_id,                     \
    nesting_parent_iova, length)

// Every uAPI struct, in registry order.
#define VFIO_EMU_UAPI_STRUCTS(X)                   \
  VFIO_EMU_UAPI_VFIO_STRUCTS_AS_IN_LINUX_6_1(X)     \
  VFIO_EMU_UAPI_VFIO_STRUCTS_GROWN_SINCE_LINUX_6_1(X) \
  VFIO_EMU_UAPI_VFIO_STRUCTS_AFTER_LINUX_6_1(X)     \
  VFIO_EMU_UAPI_IOMMUFD_STRUCTS(X)
