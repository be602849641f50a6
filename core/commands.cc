// The front door: the command table, and Emulator::ioctl serving one ioctl from it.
//
// The table holds every ioctl vfio-emu serves, on every node kind, in one place. A row names the
// node kind, the backend that serves it (a container's IOMMU driver, iommufd's VFIO compatibility
// layer), the number, how the argument is read (ArgRule, see core/command.h), the flags the
// layers around the handler act on, and the handler. The same table drives dispatch, tracing and
// the counters (names), the fuzzer and the ABI snapshot (tests/abi/uapi.golden). The rows are in
// (node, backend, number) order; the index is built from them at compile time, and a number taken
// twice on one node and backend does not compile.
//
// A call: the node kind routes it to a backend (core/node_type.h: a container to its IOMMU
// driver, under the container's lock) -> the index gives the row -> the node kind admits it (a
// device file before BIND) -> the row's ArgRule reads the struct -> the handler. Every call is
// counted and traced, whatever its end.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <new>

#include "core/command.h"
#include "core/container.h"
#include "core/device.h"
#include "core/device_irqs.h"
#include "core/emulator.h"
#include "core/group.h"
#include "core/iommufd/ioctls.h"
#include "core/log.h"
#include "core/node_type.h"
#include "core/pci_hot_reset.h"
#include "core/reject.h"
#include "core/spapr.h"
#include "core/type1.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "iommu/table_memory.h"

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
    VFIO(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, kDevice, Backend::kNone, kStruct, kArgsz,
         sizeof(vfio_pci_hot_reset_info), kNoFlags, device_ioctl::get_pci_hot_reset_info),
    VFIO(VFIO_DEVICE_PCI_HOT_RESET, kDevice, Backend::kNone, kStruct, kArgsz,
         sizeof(vfio_pci_hot_reset), kNoFlags, device_ioctl::pci_hot_reset),
    VFIO(VFIO_DEVICE_FEATURE, kDevice, Backend::kNone, kStruct, kArgsz,
         offsetof(vfio_device_feature, flags) + 4, kNoFlags, device_ioctl::device_feature),
    // An extensible struct (copy_struct_from_user on argsz): the handler reads it.
    VFIO(VFIO_DEVICE_BIND_IOMMUFD, kDevice, Backend::kNone, kStruct, kHandler,
         offsetof(vfio_device_bind_iommufd, out_devid) + 4, kBeforeBind | kWaitsForClosedFile,
         device_ioctl::bind_iommufd),
    // cdev-only: a device fd of the group path is ENOTTY before the argument is read.
    VFIO(VFIO_DEVICE_ATTACH_IOMMUFD_PT, kDevice, Backend::kNone, kStruct, kHandler,
         offsetof(vfio_device_attach_iommufd_pt, pt_id) + 4, kNoFlags, device_ioctl::attach_pt),
    VFIO(VFIO_DEVICE_DETACH_IOMMUFD_PT, kDevice, Backend::kNone, kStruct, kHandler,
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

// ---- serving a call ---------------------------------------------------------------------------

IommuDriver& container_driver(File& file) {
  return *static_cast<ContainerFile&>(file).container->driver;
}

Status read_argsz_struct(IoctlCall& call, u32 min_size) {
  call.ucmd.fill(0);
  const std::size_t len = std::min<std::size_t>(min_size, call.ucmd.size());
  if (Status st = call.mem->read(call.arg, call.ucmd.data(), len); !st) {
    if (is_internal_code(st.error())) return st;
    return reject(call, st.error(), "cannot read {:#x} bytes of the argument at {:#x}", len,
                  call.arg);
  }
  u32 argsz = 0;
  std::memcpy(&argsz, call.ucmd.data(), sizeof(argsz));
  if (argsz < min_size) return reject(call, EINVAL, "argsz {:#x} < {:#x}", argsz, min_size);
  call.user_size = argsz;
  return {};
}

Status read_sized_struct(IoctlCall& call, u32 min_size, u32 kernel_size) {
  // The common case in one access: the whole kernel struct read ahead, holding a `size` no
  // larger than it. Otherwise (a fault on the way, a larger struct, a transport that cannot read
  // ahead) Linux's two steps: get_user(size), then copy_struct_from_user.
  decltype(call.ucmd) ahead;
  const std::size_t got = call.mem->read_ahead(
      call.arg, ahead.data(), std::min<std::size_t>(kernel_size, ahead.size()));
  u32 size = 0;
  if (got >= sizeof(size)) {
    std::memcpy(&size, ahead.data(), sizeof(size));
  } else {
    TRY(call.mem->read(call.arg, &size, sizeof(size)));
  }
  if (size < min_size) return reject(call, EINVAL, "size {:#x} < {:#x}", size, min_size);
  call.user_size = size;
  call.ucmd.fill(0);
  if (size <= got) {
    std::memcpy(call.ucmd.data(), ahead.data(), size);
    return call.mem->will_write(call.arg, size);
  }
  // Replies copy back min(size, kernel size) bytes: announced before the read, so the CUSE retry
  // protocol fetches the struct and makes room for the reply in one round.
  TRY(call.mem->will_write(call.arg, std::min<u64>(size, kernel_size)));
  TRY(call.mem->read(call.arg, call.ucmd.data(), std::min<u64>(size, kernel_size)));
  // copy_struct_from_user: bytes the kernel does not know must be zero.
  u8 chunk[512];
  for (u64 off = kernel_size; off < size;) {
    const u64 n = std::min<u64>(sizeof(chunk), size - off);
    TRY(call.mem->read(call.arg + off, chunk, n));
    for (u64 i = 0; i < n; ++i)
      if (chunk[i] != 0)
        return reject(call, E2BIG, "size {:#x}: byte {:#x} past the {:#x}-byte struct is not zero",
                      size, off + i, kernel_size);
    off += n;
  }
  return {};
}

namespace {

// The argument prologue of `c`'s rule.
Status read_argument(IoctlCall& call, const Command& c) {
  switch (c.rule) {
    case ArgRule::kArgsz: return read_argsz_struct(call, c.min_size);
    case ArgRule::kSize: return read_sized_struct(call, c.min_size, c.kernel_size);
    case ArgRule::kNone:
    case ArgRule::kHandler: return {};
  }
  return {};
}

}  // namespace

Result<long> Emulator::ioctl(File& file, IoctlCall& call) {
  (void)iommu::TableBudget::take_refusal();  // a refusal seen from here on is this call's
  const Command* c = nullptr;
  Result<long> result = err(ENOTTY);
  try {
    result = dispatch(file, call, &c);
  } catch (const std::bad_alloc&) {
    // Linux's errno for a failed allocation. The handlers undo what they did on every error
    // path, this one included, so the call has changed nothing.
    result = err(ENOMEM);
    try {
      result = reject(call, ENOMEM, "cmd {:#x} arg {:#x}: out of memory", call.cmd, call.arg);
    } catch (const std::bad_alloc&) {
    }
  }
  // Only a command that may wait for a just-closed file names the file it conflicted with.
  if (c == nullptr || !c->has(kWaitsForClosedFile)) call.conflict = 0;
  try {
    account(c, call, result);
  } catch (const std::bad_alloc&) {
    // The call's result stands; only its trace record or log line is lost.
  }
  return result;
}

Result<long> Emulator::dispatch(File& file, IoctlCall& call, const Command** command) {
  const NodeType& kind = node_type(file.kind());
  Route route = TRY(kind.route(*this, file, call));
  const Command* c = find_command(file.kind(), route.backend, call.cmd);
  *command = c;
  call.command = c;
  TRY(kind.admit(*this, file, call, c, route));
  if (c == nullptr) return err(ENOTTY);
  TRY(read_argument(call, *c));
  return c->handler(*this, file, call);
}

void Emulator::account(const Command* c, IoctlCall& call, const Result<long>& result) {
  if (!result && is_internal_code(result.error())) return;  // the same ioctl comes again
  auto log = logger("core");
  if (!result && result.error() == ENOTTY && c == nullptr &&
      rejection_log_allowed(*log, call.caller.pid))
    log->info("{} pid {} ioctl {:#x} arg {:#x}: unknown command: ENOTTY", call.node_name,
              call.caller.pid, call.cmd, call.arg);
  const auto all = all_commands();
  CommandCounters::Count& count =
      c != nullptr && static_cast<size_t>(c - all.data()) < CommandCounters::kMaxCommands
          ? counters_.by_command[static_cast<size_t>(c - all.data())]
          : counters_.unknown;
  count.calls.fetch_add(1, std::memory_order_relaxed);
  if (!result) count.errors.fetch_add(1, std::memory_order_relaxed);
  const long value = result ? *result : -static_cast<long>(result.error());
  if (log->should_log(spdlog::level::debug))
    log->debug("{} pid {} {} {}: {}", call.node_name, call.caller.pid,
               c ? c->name : std::string_view("ioctl"), call.detail,
               result ? fmt::format("{}", value)
                      : fmt::format("{} ({})", errno_name(result.error()), result.error()));
  TraceRecord r;
  // Copied: the caller may still want the decoded operands.
  r.time = now_seconds();
  r.pid = call.caller.pid;
  r.tid = call.caller.tid;
  r.node.assign(call.node_name);
  r.command = c ? c->name : std::string_view();  // the table's names are static
  r.cmd = call.cmd;
  r.arg = call.arg;
  r.detail.assign(call.detail);
  r.result = value;
  trace_.record(r);
}

}  // namespace vfio_emu::core
