// The command table: every ioctl vfio-emu serves, on every node kind, in one place. A row names
// the node kind, the backend that serves it (a container's IOMMU driver, iommufd's VFIO
// compatibility layer), the number, how the argument is read (ArgRule, see core/command.h), the
// flags the layers around the handler act on, and the handler. The same table drives dispatch
// (core/dispatcher.cc), tracing and the counters (names), the fuzzer and the ABI snapshot
// (tests/abi/uapi.golden).
//
// The rows are in (node, backend, number) order; the index below is built from them at compile
// time, and a number taken twice on one node and backend does not compile.
#include <array>
#include <cstddef>

#include "core/command.h"
#include "core/container.h"
#include "core/device.h"
#include "core/device_irqs.h"
#include "core/group.h"
#include "core/iommufd/ioctls.h"
#include "core/spapr.h"
#include "core/type1.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"

namespace vfio_emu::core {

std::string_view backend_name(Backend b) {
  switch (b) {
    case Backend::kNone: return "";
    case Backend::kType1: return "type1";
    case Backend::kSpapr: return "spapr";
    case Backend::kIommufdCompat: return "vfio-compat";
  }
  return "?";
}

namespace {

using namespace uapi;
using enum NodeKind;
constexpr Backend kType1 = Backend::kType1, kSpapr = Backend::kSpapr,
                  kIommufdCompat = Backend::kIommufdCompat;
constexpr ArgKind kValue = ArgKind::kValue, kInt = ArgKind::kInt, kString = ArgKind::kString,
                  kStruct = ArgKind::kStruct;
constexpr ArgRule kArgsz = ArgRule::kArgsz, kHandler = ArgRule::kHandler, kSize = ArgRule::kSize;

constexpr u8 kNoFlags = 0;

// A VFIO row.
constexpr Command vfio(u32 cmd, std::string_view name, NodeKind node, Backend backend, ArgKind arg,
                       ArgRule rule, u32 min_size, u8 flags, Handler handler) {
  return Command{cmd, name, node, backend, arg, rule, min_size, 0, flags, handler};
}

// An iommufd row, as Linux's IOCTL_OP(_ioctl, _fn, _struct, _last): the minimum size is
// offsetofend(_struct, _last), the kernel size sizeof(_struct).
#define IOMMUFD_OP(ioctl, fn, type, last)                                                       \
  Command {                                                                                     \
    ioctl, #ioctl, kIommufd, Backend::kNone, kStruct, kSize,                                    \
        static_cast<u32>(offsetof(type, last) + sizeof(type::last)), sizeof(type), kNoFlags, fn \
  }
#define VFIO(ioctl, ...) vfio(ioctl, #ioctl, __VA_ARGS__)

constexpr Command kCommands[] = {
    // ---- /dev/vfio/vfio (core/container.cc), then its IOMMU drivers ----
    VFIO(VFIO_GET_API_VERSION, kContainer, Backend::kNone, ArgKind::kNone, ArgRule::kNone, 0, kNoFlags,
         container_ioctl::get_api_version),
    VFIO(VFIO_CHECK_EXTENSION, kContainer, Backend::kNone, kValue, ArgRule::kNone, 0, kNoFlags,
         container_ioctl::check_extension),
    VFIO(VFIO_SET_IOMMU, kContainer, Backend::kNone, kValue, ArgRule::kNone, 0, kNoFlags,
         container_ioctl::set_iommu),
    // type1 (core/type1.cc)
    VFIO(VFIO_IOMMU_GET_INFO, kContainer, kType1, kStruct, kArgsz, 16, kNoFlags,
         driver_ioctl<&Type1Driver::get_info>),
    VFIO(VFIO_IOMMU_MAP_DMA, kContainer, kType1, kStruct, kArgsz,
         sizeof(vfio_iommu_type1_dma_map), kNoFlags, driver_ioctl<&Type1Driver::map_dma>),
    VFIO(VFIO_IOMMU_UNMAP_DMA, kContainer, kType1, kStruct, kArgsz, 24, kNoFlags,
         driver_ioctl<&Type1Driver::unmap_dma>),
    VFIO(VFIO_IOMMU_DIRTY_PAGES, kContainer, kType1, kStruct, kHandler, 8, kNoFlags,
         driver_ioctl<&Type1Driver::dirty_pages>),
    // sPAPR TCE (core/spapr.cc): every struct is read after the driver's own first checks
    VFIO(VFIO_IOMMU_SPAPR_TCE_GET_INFO, kContainer, kSpapr, kStruct, kHandler, 16, kNoFlags,
         driver_ioctl<&SpaprDriver::get_info>),
    VFIO(VFIO_IOMMU_MAP_DMA, kContainer, kSpapr, kStruct, kHandler,
         sizeof(vfio_iommu_type1_dma_map), kNoFlags, driver_ioctl<&SpaprDriver::map_dma>),
    VFIO(VFIO_IOMMU_UNMAP_DMA, kContainer, kSpapr, kStruct, kHandler, 24, kNoFlags,
         driver_ioctl<&SpaprDriver::unmap_dma>),
    VFIO(VFIO_IOMMU_ENABLE, kContainer, kSpapr, ArgKind::kNone, ArgRule::kNone, 0, kNoFlags,
         driver_ioctl<&SpaprDriver::enable>),
    VFIO(VFIO_IOMMU_DISABLE, kContainer, kSpapr, ArgKind::kNone, ArgRule::kNone, 0, kNoFlags,
         driver_ioctl<&SpaprDriver::disable>),
    VFIO(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, kContainer, kSpapr, kStruct, kHandler,
         sizeof(vfio_iommu_spapr_register_memory), kNoFlags,
         driver_ioctl<&SpaprDriver::register_memory>),
    VFIO(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, kContainer, kSpapr, kStruct, kHandler,
         sizeof(vfio_iommu_spapr_register_memory), kNoFlags,
         driver_ioctl<&SpaprDriver::unregister_memory>),
    VFIO(VFIO_IOMMU_SPAPR_TCE_CREATE, kContainer, kSpapr, kStruct, kHandler,
         sizeof(vfio_iommu_spapr_tce_create), kNoFlags, driver_ioctl<&SpaprDriver::create_window>),
    VFIO(VFIO_IOMMU_SPAPR_TCE_REMOVE, kContainer, kSpapr, kStruct, kHandler,
         sizeof(vfio_iommu_spapr_tce_remove), kNoFlags, driver_ioctl<&SpaprDriver::remove_window>),
    VFIO(VFIO_EEH_PE_OP, kContainer, kSpapr, kStruct, kHandler, 12, kNoFlags,
         driver_ioctl<&SpaprDriver::eeh_pe_op>),

    // ---- /dev/vfio/<group> (core/group.cc) ----
    VFIO(VFIO_GROUP_GET_STATUS, kGroup, Backend::kNone, kStruct, kHandler,
         sizeof(vfio_group_status), kNoFlags, group_ioctl::get_status),
    VFIO(VFIO_GROUP_SET_CONTAINER, kGroup, Backend::kNone, kInt, ArgRule::kNone,
         sizeof(std::int32_t), kNoFlags, group_ioctl::set_container),
    VFIO(VFIO_GROUP_UNSET_CONTAINER, kGroup, Backend::kNone, ArgKind::kNone, ArgRule::kNone, 0, kNoFlags,
         group_ioctl::unset_container),
    VFIO(VFIO_GROUP_GET_DEVICE_FD, kGroup, Backend::kNone, kString, ArgRule::kNone, 0, kNoFlags,
         group_ioctl::get_device_fd),
    VFIO(VFIO_EMU_GROUP_DEVICE, kGroup, Backend::kNone, kString, ArgRule::kNone, 0, kNoFlags,
         group_ioctl::group_device),

    // ---- /dev/vfio/devices/vfioN (core/device.cc, core/device_irqs.cc) ----
    VFIO(VFIO_DEVICE_GET_INFO, kDevice, Backend::kNone, kStruct, kArgsz,
         offsetof(vfio_device_info, num_irqs) + 4, kNoFlags, device_ioctl::get_info),
    VFIO(VFIO_DEVICE_GET_REGION_INFO, kDevice, Backend::kNone, kStruct, kArgsz,
         sizeof(vfio_region_info), kNoFlags, device_ioctl::get_region_info),
    VFIO(VFIO_DEVICE_GET_IRQ_INFO, kDevice, Backend::kNone, kStruct, kArgsz,
         sizeof(vfio_irq_info), kNoFlags, device_ioctl::get_irq_info),
    VFIO(VFIO_DEVICE_SET_IRQS, kDevice, Backend::kNone, kStruct, kArgsz,
         offsetof(vfio_irq_set, count) + 4, kNoFlags, set_irqs_ioctl),
    VFIO(VFIO_DEVICE_RESET, kDevice, Backend::kNone, ArgKind::kNone, ArgRule::kNone, 0, kNoFlags,
         device_ioctl::reset),
    VFIO(VFIO_DEVICE_FEATURE, kDevice, Backend::kNone, kStruct, kArgsz,
         offsetof(vfio_device_feature, flags) + 4, kNoFlags, device_ioctl::device_feature),
    // An extensible struct (copy_struct_from_user on argsz): the handler reads it.
    VFIO(VFIO_DEVICE_BIND_IOMMUFD, kDevice, Backend::kNone, kStruct, kHandler,
         offsetof(vfio_device_bind_iommufd, out_devid) + 4, kBeforeBind | kWaitsForClosedFile,
         device_ioctl::bind_iommufd),
    VFIO(VFIO_DEVICE_ATTACH_IOMMUFD_PT, kDevice, Backend::kNone, kStruct, kArgsz,
         offsetof(vfio_device_attach_iommufd_pt, pt_id) + 4, kNoFlags, device_ioctl::attach_pt),
    VFIO(VFIO_DEVICE_DETACH_IOMMUFD_PT, kDevice, Backend::kNone, kStruct, kArgsz,
         offsetof(vfio_device_detach_iommufd_pt, flags) + 4, kNoFlags, device_ioctl::detach_pt),
    VFIO(VFIO_EMU_DEVICE_USE_GROUP, kDevice, Backend::kNone, kValue, ArgRule::kNone, 0,
         kBeforeBind | kWaitsForClosedFile, device_ioctl::use_group),

    // ---- /dev/iommu (core/iommufd/) ----
    IOMMUFD_OP(IOMMU_DESTROY, iommufd_ioctl::destroy, iommu_destroy, id),
    IOMMUFD_OP(IOMMU_IOAS_ALLOC, ioas_ioctl::ioas_alloc, iommu_ioas_alloc, out_ioas_id),
    IOMMUFD_OP(IOMMU_IOAS_ALLOW_IOVAS, ioas_ioctl::ioas_allow_iovas, iommu_ioas_allow_iovas,
               allowed_iovas),
    IOMMUFD_OP(IOMMU_IOAS_COPY, ioas_ioctl::ioas_copy, iommu_ioas_copy, src_iova),
    IOMMUFD_OP(IOMMU_IOAS_IOVA_RANGES, ioas_ioctl::ioas_iova_ranges, iommu_ioas_iova_ranges,
               out_iova_alignment),
    IOMMUFD_OP(IOMMU_IOAS_MAP, ioas_ioctl::ioas_map, iommu_ioas_map, iova),
    IOMMUFD_OP(IOMMU_IOAS_UNMAP, ioas_ioctl::ioas_unmap, iommu_ioas_unmap, length),
    IOMMUFD_OP(IOMMU_OPTION, iommufd_ioctl::option, iommu_option, val64),
    IOMMUFD_OP(IOMMU_VFIO_IOAS, compat_ioctl::vfio_ioas, iommu_vfio_ioas, __reserved),
    IOMMUFD_OP(IOMMU_HWPT_ALLOC, hwpt_ioctl::hwpt_alloc, iommu_hwpt_alloc, __reserved),
    IOMMUFD_OP(IOMMU_GET_HW_INFO, idev_ioctl::get_hw_info, iommu_hw_info, __reserved),
    IOMMUFD_OP(IOMMU_HWPT_SET_DIRTY_TRACKING, hwpt_ioctl::hwpt_set_dirty_tracking,
               iommu_hwpt_set_dirty_tracking, __reserved),
    IOMMUFD_OP(IOMMU_HWPT_GET_DIRTY_BITMAP, hwpt_ioctl::hwpt_get_dirty_bitmap,
               iommu_hwpt_get_dirty_bitmap, data),
    IOMMUFD_OP(IOMMU_HWPT_INVALIDATE, hwpt_ioctl::hwpt_invalidate, iommu_hwpt_invalidate, __reserved),
    IOMMUFD_OP(IOMMU_FAULT_QUEUE_ALLOC, hwpt_ioctl::fault_queue_alloc, iommu_fault_alloc,
               out_fault_fd),
    IOMMUFD_OP(IOMMU_IOAS_MAP_FILE, ioas_ioctl::ioas_map_file, iommu_ioas_map_file, iova),
    IOMMUFD_OP(IOMMU_VIOMMU_ALLOC, viommu_ioctl::viommu_alloc, iommu_viommu_alloc, out_viommu_id),
    IOMMUFD_OP(IOMMU_VDEVICE_ALLOC, viommu_ioctl::vdevice_alloc, iommu_vdevice_alloc, virt_id),
    IOMMUFD_OP(IOMMU_IOAS_CHANGE_PROCESS, ioas_ioctl::ioas_change_process, iommu_ioas_change_process,
               __reserved),
    IOMMUFD_OP(IOMMU_VEVENTQ_ALLOC, viommu_ioctl::veventq_alloc, iommu_veventq_alloc,
               out_veventq_fd),
    IOMMUFD_OP(IOMMU_HW_QUEUE_ALLOC, viommu_ioctl::hw_queue_alloc, iommu_hw_queue_alloc, length),
    // iommufd's VFIO container compatibility (core/iommufd/vfio_compat.c)
    VFIO(VFIO_GET_API_VERSION, kIommufd, kIommufdCompat, ArgKind::kNone, ArgRule::kNone, 0, kNoFlags,
         compat_ioctl::compat_get_api_version),
    VFIO(VFIO_CHECK_EXTENSION, kIommufd, kIommufdCompat, kValue, ArgRule::kNone, 0, kNoFlags,
         compat_ioctl::compat_check_extension),
    VFIO(VFIO_SET_IOMMU, kIommufd, kIommufdCompat, kValue, ArgRule::kNone, 0, kNoFlags,
         compat_ioctl::compat_set_iommu),
    VFIO(VFIO_IOMMU_GET_INFO, kIommufd, kIommufdCompat, kStruct, kArgsz, 16, kNoFlags,
         compat_ioctl::compat_get_info),
    VFIO(VFIO_IOMMU_MAP_DMA, kIommufd, kIommufdCompat, kStruct, kArgsz,
         sizeof(vfio_iommu_type1_dma_map), kNoFlags, compat_ioctl::compat_map_dma),
    // The write back is announced before the read (one CUSE retry round): the handler reads.
    VFIO(VFIO_IOMMU_UNMAP_DMA, kIommufd, kIommufdCompat, kStruct, kHandler, 24, kNoFlags,
         compat_ioctl::compat_unmap_dma),
};

#undef VFIO
#undef IOMMUFD_OP

constexpr size_t kNodeKinds = 4;
constexpr size_t slot_of(NodeKind node, Backend backend) {
  return static_cast<size_t>(node) * kBackends + static_cast<size_t>(backend);
}

// Row + 1 by (node, backend) slot and the number's low byte (every number is _IO(';', nr)).
using Index = std::array<std::array<u8, 256>, kNodeKinds * kBackends>;

constexpr Index build_index() {
  Index index{};
  for (size_t i = 0; i < std::size(kCommands); ++i) {
    const Command& c = kCommands[i];
    u8& at = index[slot_of(c.node, c.backend)][c.cmd & 0xff];
    if (at != 0 || (c.cmd >> 8) != VFIO_TYPE) throw "two rows for one number";  // not constexpr
    if (i > 0) {
      const Command& p = kCommands[i - 1];
      if (slot_of(p.node, p.backend) > slot_of(c.node, c.backend) ||
          (slot_of(p.node, p.backend) == slot_of(c.node, c.backend) && p.cmd >= c.cmd))
        throw "rows out of (node, backend, number) order";
    }
    at = static_cast<u8>(i + 1);
  }
  return index;
}

static_assert(std::size(kCommands) < 255);
constexpr Index kIndex = build_index();

}  // namespace

std::span<const Command> all_commands() { return kCommands; }

const Command* find_command(NodeKind node, Backend backend, u32 cmd) {
  const u8 at = kIndex[slot_of(node, backend)][cmd & 0xff];
  if (at == 0 || kCommands[at - 1].cmd != cmd) return nullptr;
  return &kCommands[at - 1];
}

}  // namespace vfio_emu::core
