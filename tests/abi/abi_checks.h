// Compile-time comparison of core/uapi/ with a C header that defines the same ABI (the system's
// <linux/vfio.h>, examples/include/vfio_emu_compat.h).
//
// The C headers define their constants as macros with the same names as ours, so a translation
// unit must (1) include core/uapi/ and this file, (2) snapshot our constants with
// VFIO_EMU_SNAPSHOT_CONSTANT, (3) include the C header, (4) compare with
// VFIO_EMU_EXPECT_SAME_CONSTANT. After step 3, `vfio_emu::uapi::NAME` no longer compiles when NAME is
// one of the header's macros; the snapshot `snapshot::NAME_ours` still does.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "core/uapi/iommufd.h"
#include "core/uapi/layout.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::abi_test {

template <typename T>
constexpr auto as_integer(T value) {
  if constexpr (std::is_enum_v<T>) {
    return static_cast<std::underlying_type_t<T>>(value);
  } else {
    return +value;  // promotes char (VFIO_TYPE is ';' in C)
  }
}

// Equal as numbers, whatever the signedness or enum type on either side.
template <typename A, typename B>
constexpr bool same_value(A a, B b) {
  return std::cmp_equal(as_integer(a), as_integer(b));
}

constexpr bool same_member(const uapi::MemberLayout& ours, const uapi::MemberLayout& theirs) {
  return ours.offset == theirs.offset && ours.size == theirs.size &&
         ours.flexible_array == theirs.flexible_array;
}

}  // namespace vfio_emu::abi_test

#define VFIO_EMU_SNAPSHOT_CONSTANT(name) constexpr auto name##_ours = ::vfio_emu::uapi::name;
#define VFIO_EMU_EXPECT_SAME_CONSTANT(name) \
  static_assert(::vfio_emu::abi_test::same_value(snapshot::name##_ours, name), #name " differs");

// The member of our struct and of the C struct of the same name have the same offset and size.
#define VFIO_EMU_EXPECT_SAME_MEMBER(type, member)                                                  \
  static_assert(::vfio_emu::abi_test::same_member(                                                 \
                    ::vfio_emu::uapi::member_layout<decltype(::vfio_emu::uapi::type::member)>(      \
                        #member, offsetof(::vfio_emu::uapi::type, member)),                         \
                    ::vfio_emu::uapi::member_layout<decltype(::type::member)>(#member,             \
                                                                              offsetof(::type, member))), \
                #type "::" #member ": offset or size differs");

// Same sizeof and the same offset and size of every listed member.
#define VFIO_EMU_EXPECT_SAME_STRUCT(type, ...)                                              \
  static_assert(sizeof(::vfio_emu::uapi::type) == sizeof(::type), #type ": sizeof differs"); \
  VFIO_EMU_FOR_EACH_MEMBER(VFIO_EMU_EXPECT_SAME_MEMBER, type, __VA_ARGS__)

// The listed members only (for structs that grew after the C header was written).
#define VFIO_EMU_EXPECT_SAME_MEMBERS(type, ...) VFIO_EMU_FOR_EACH_MEMBER(VFIO_EMU_EXPECT_SAME_MEMBER, type, __VA_ARGS__)

// VFIO constants that Linux 6.1's <linux/vfio.h> has, with the 6.18 value.
#define VFIO_EMU_VFIO_CONSTANTS_IN_LINUX_6_1(X)                                                        \
  X(VFIO_API_VERSION) X(VFIO_TYPE) X(VFIO_BASE)                                                       \
  X(VFIO_TYPE1_IOMMU) X(VFIO_SPAPR_TCE_IOMMU) X(VFIO_TYPE1v2_IOMMU) X(VFIO_DMA_CC_IOMMU) X(VFIO_EEH)  \
  X(VFIO_TYPE1_NESTING_IOMMU) X(VFIO_SPAPR_TCE_v2_IOMMU) X(VFIO_NOIOMMU_IOMMU) X(VFIO_UNMAP_ALL)      \
  X(VFIO_UPDATE_VADDR)                                                                                \
  X(VFIO_GET_API_VERSION) X(VFIO_CHECK_EXTENSION) X(VFIO_SET_IOMMU)                                   \
  X(VFIO_GROUP_GET_STATUS) X(VFIO_GROUP_SET_CONTAINER) X(VFIO_GROUP_UNSET_CONTAINER)                  \
  X(VFIO_GROUP_GET_DEVICE_FD)                                                                         \
  X(VFIO_DEVICE_GET_INFO) X(VFIO_DEVICE_GET_REGION_INFO) X(VFIO_DEVICE_GET_IRQ_INFO)                  \
  X(VFIO_DEVICE_SET_IRQS) X(VFIO_DEVICE_RESET) X(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO)                  \
  X(VFIO_DEVICE_PCI_HOT_RESET) X(VFIO_DEVICE_QUERY_GFX_PLANE) X(VFIO_DEVICE_GET_GFX_DMABUF)           \
  X(VFIO_DEVICE_IOEVENTFD) X(VFIO_DEVICE_FEATURE)                                                     \
  X(VFIO_IOMMU_GET_INFO) X(VFIO_IOMMU_SPAPR_TCE_GET_INFO) X(VFIO_IOMMU_MAP_DMA) X(VFIO_IOMMU_UNMAP_DMA) \
  X(VFIO_IOMMU_ENABLE) X(VFIO_IOMMU_DISABLE) X(VFIO_IOMMU_DIRTY_PAGES)                                \
  X(VFIO_IOMMU_SPAPR_REGISTER_MEMORY) X(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)                           \
  X(VFIO_IOMMU_SPAPR_TCE_CREATE) X(VFIO_IOMMU_SPAPR_TCE_REMOVE) X(VFIO_EEH_PE_OP)                     \
  X(VFIO_GROUP_FLAGS_VIABLE) X(VFIO_GROUP_FLAGS_CONTAINER_SET)                                        \
  X(VFIO_DEVICE_FLAGS_RESET) X(VFIO_DEVICE_FLAGS_PCI) X(VFIO_DEVICE_FLAGS_PLATFORM)                   \
  X(VFIO_DEVICE_FLAGS_AMBA) X(VFIO_DEVICE_FLAGS_CCW) X(VFIO_DEVICE_FLAGS_AP)                          \
  X(VFIO_DEVICE_FLAGS_FSL_MC) X(VFIO_DEVICE_FLAGS_CAPS)                                               \
  X(VFIO_REGION_INFO_FLAG_READ) X(VFIO_REGION_INFO_FLAG_WRITE) X(VFIO_REGION_INFO_FLAG_MMAP)          \
  X(VFIO_REGION_INFO_FLAG_CAPS)                                                                       \
  X(VFIO_IRQ_INFO_EVENTFD) X(VFIO_IRQ_INFO_MASKABLE) X(VFIO_IRQ_INFO_AUTOMASKED)                      \
  X(VFIO_IRQ_INFO_NORESIZE)                                                                           \
  X(VFIO_IRQ_SET_DATA_NONE) X(VFIO_IRQ_SET_DATA_BOOL) X(VFIO_IRQ_SET_DATA_EVENTFD)                    \
  X(VFIO_IRQ_SET_ACTION_MASK) X(VFIO_IRQ_SET_ACTION_UNMASK) X(VFIO_IRQ_SET_ACTION_TRIGGER)            \
  X(VFIO_IRQ_SET_DATA_TYPE_MASK) X(VFIO_IRQ_SET_ACTION_TYPE_MASK)                                     \
  X(VFIO_PCI_BAR0_REGION_INDEX) X(VFIO_PCI_BAR1_REGION_INDEX) X(VFIO_PCI_BAR2_REGION_INDEX)           \
  X(VFIO_PCI_BAR3_REGION_INDEX) X(VFIO_PCI_BAR4_REGION_INDEX) X(VFIO_PCI_BAR5_REGION_INDEX)           \
  X(VFIO_PCI_ROM_REGION_INDEX) X(VFIO_PCI_CONFIG_REGION_INDEX) X(VFIO_PCI_VGA_REGION_INDEX)           \
  X(VFIO_PCI_NUM_REGIONS)                                                                             \
  X(VFIO_PCI_INTX_IRQ_INDEX) X(VFIO_PCI_MSI_IRQ_INDEX) X(VFIO_PCI_MSIX_IRQ_INDEX)                     \
  X(VFIO_PCI_ERR_IRQ_INDEX) X(VFIO_PCI_REQ_IRQ_INDEX) X(VFIO_PCI_NUM_IRQS)                            \
  X(VFIO_DEVICE_FEATURE_MASK) X(VFIO_DEVICE_FEATURE_GET) X(VFIO_DEVICE_FEATURE_SET)                   \
  X(VFIO_DEVICE_FEATURE_PROBE)                                                                        \
  X(VFIO_DEVICE_FEATURE_PCI_VF_TOKEN) X(VFIO_DEVICE_FEATURE_MIGRATION)                                \
  X(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE) X(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY)                      \
  X(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP) X(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT)            \
  X(VFIO_DEVICE_FEATURE_DMA_LOGGING_START) X(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP)                    \
  X(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT)                                                           \
  X(VFIO_IOMMU_INFO_PGSIZES) X(VFIO_IOMMU_INFO_CAPS)                                                  \
  X(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) X(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION)                      \
  X(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)                                                                  \
  X(VFIO_DMA_MAP_FLAG_READ) X(VFIO_DMA_MAP_FLAG_WRITE) X(VFIO_DMA_MAP_FLAG_VADDR)                     \
  X(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) X(VFIO_DMA_UNMAP_FLAG_ALL) X(VFIO_DMA_UNMAP_FLAG_VADDR)      \
  X(VFIO_IOMMU_DIRTY_PAGES_FLAG_START) X(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)                            \
  X(VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)                                                           \
  X(VFIO_IOMMU_SPAPR_INFO_DDW)                                                                        \
  X(VFIO_EEH_PE_DISABLE) X(VFIO_EEH_PE_ENABLE) X(VFIO_EEH_PE_UNFREEZE_IO) X(VFIO_EEH_PE_UNFREEZE_DMA) \
  X(VFIO_EEH_PE_GET_STATE) X(VFIO_EEH_PE_RESET_DEACTIVATE) X(VFIO_EEH_PE_RESET_HOT)                   \
  X(VFIO_EEH_PE_RESET_FUNDAMENTAL) X(VFIO_EEH_PE_CONFIGURE) X(VFIO_EEH_PE_INJECT_ERR)                 \
  X(VFIO_EEH_PE_STATE_NORMAL) X(VFIO_EEH_PE_STATE_RESET) X(VFIO_EEH_PE_STATE_STOPPED)                 \
  X(VFIO_EEH_PE_STATE_STOPPED_DMA) X(VFIO_EEH_PE_STATE_UNAVAIL)

// The device cdev constants (Linux 6.6+), which examples/include/vfio_emu_compat.h supplies.
#define VFIO_EMU_VFIO_DEVICE_CDEV_CONSTANTS(X)                                          \
  X(VFIO_DEVICE_BIND_IOMMUFD) X(VFIO_DEVICE_ATTACH_IOMMUFD_PT) X(VFIO_DEVICE_DETACH_IOMMUFD_PT) \
  X(VFIO_DEVICE_BIND_FLAG_TOKEN) X(VFIO_DEVICE_ATTACH_PASID) X(VFIO_DEVICE_DETACH_PASID)

// Every iommufd constant of core/uapi/iommufd.h.
#define VFIO_EMU_IOMMUFD_CONSTANTS(X)                                                                  \
  X(IOMMUFD_TYPE) X(IOMMUFD_CMD_BASE) X(IOMMUFD_CMD_DESTROY) X(IOMMUFD_CMD_IOAS_ALLOC)                \
  X(IOMMUFD_CMD_IOAS_ALLOW_IOVAS) X(IOMMUFD_CMD_IOAS_COPY) X(IOMMUFD_CMD_IOAS_IOVA_RANGES)            \
  X(IOMMUFD_CMD_IOAS_MAP) X(IOMMUFD_CMD_IOAS_UNMAP) X(IOMMUFD_CMD_OPTION) X(IOMMUFD_CMD_VFIO_IOAS)    \
  X(IOMMUFD_CMD_HWPT_ALLOC) X(IOMMUFD_CMD_GET_HW_INFO) X(IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING)         \
  X(IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP) X(IOMMUFD_CMD_HWPT_INVALIDATE) X(IOMMUFD_CMD_FAULT_QUEUE_ALLOC) \
  X(IOMMUFD_CMD_IOAS_MAP_FILE) X(IOMMUFD_CMD_VIOMMU_ALLOC) X(IOMMUFD_CMD_VDEVICE_ALLOC)               \
  X(IOMMUFD_CMD_IOAS_CHANGE_PROCESS) X(IOMMUFD_CMD_VEVENTQ_ALLOC) X(IOMMUFD_CMD_HW_QUEUE_ALLOC)       \
  X(IOMMU_DESTROY) X(IOMMU_IOAS_ALLOC) X(IOMMU_IOAS_ALLOW_IOVAS) X(IOMMU_IOAS_COPY)                   \
  X(IOMMU_IOAS_IOVA_RANGES) X(IOMMU_IOAS_MAP) X(IOMMU_IOAS_UNMAP) X(IOMMU_OPTION) X(IOMMU_VFIO_IOAS)  \
  X(IOMMU_HWPT_ALLOC) X(IOMMU_GET_HW_INFO) X(IOMMU_HWPT_SET_DIRTY_TRACKING)                           \
  X(IOMMU_HWPT_GET_DIRTY_BITMAP) X(IOMMU_HWPT_INVALIDATE) X(IOMMU_FAULT_QUEUE_ALLOC)                  \
  X(IOMMU_IOAS_MAP_FILE) X(IOMMU_VIOMMU_ALLOC) X(IOMMU_VDEVICE_ALLOC) X(IOMMU_IOAS_CHANGE_PROCESS)    \
  X(IOMMU_VEVENTQ_ALLOC) X(IOMMU_HW_QUEUE_ALLOC)                                                      \
  X(IOMMU_IOAS_MAP_FIXED_IOVA) X(IOMMU_IOAS_MAP_WRITEABLE) X(IOMMU_IOAS_MAP_READABLE)                 \
  X(IOMMU_OPTION_RLIMIT_MODE) X(IOMMU_OPTION_HUGE_PAGES) X(IOMMU_OPTION_OP_SET) X(IOMMU_OPTION_OP_GET) \
  X(IOMMU_VFIO_IOAS_GET) X(IOMMU_VFIO_IOAS_SET) X(IOMMU_VFIO_IOAS_CLEAR)                              \
  X(IOMMU_HWPT_ALLOC_NEST_PARENT) X(IOMMU_HWPT_ALLOC_DIRTY_TRACKING) X(IOMMU_HWPT_FAULT_ID_VALID)     \
  X(IOMMU_HWPT_ALLOC_PASID)                                                                           \
  X(IOMMU_HWPT_DATA_NONE) X(IOMMU_HWPT_DATA_VTD_S1) X(IOMMU_HWPT_DATA_ARM_SMMUV3)                     \
  X(IOMMU_VTD_S1_SRE) X(IOMMU_VTD_S1_EAFE) X(IOMMU_VTD_S1_WPE)                                        \
  X(IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17)                                                            \
  X(IOMMU_HW_INFO_TYPE_NONE) X(IOMMU_HW_INFO_TYPE_DEFAULT) X(IOMMU_HW_INFO_TYPE_INTEL_VTD)            \
  X(IOMMU_HW_INFO_TYPE_ARM_SMMUV3) X(IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV)                               \
  X(IOMMU_HW_CAP_DIRTY_TRACKING) X(IOMMU_HW_CAP_PCI_PASID_EXEC) X(IOMMU_HW_CAP_PCI_PASID_PRIV)        \
  X(IOMMU_HW_INFO_FLAG_INPUT_TYPE)                                                                    \
  X(IOMMU_HWPT_DIRTY_TRACKING_ENABLE) X(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)                         \
  X(IOMMU_HWPT_INVALIDATE_DATA_VTD_S1) X(IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3)                     \
  X(IOMMU_VTD_INV_FLAGS_LEAF)                                                                         \
  X(IOMMU_VIOMMU_TYPE_DEFAULT) X(IOMMU_VIOMMU_TYPE_ARM_SMMUV3) X(IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV)    \
  X(IOMMU_VEVENTQ_TYPE_DEFAULT) X(IOMMU_VEVENTQ_TYPE_ARM_SMMUV3) X(IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV) \
  X(IOMMU_HW_QUEUE_TYPE_DEFAULT) X(IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV)
