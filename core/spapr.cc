// VFIO sPAPR TCE: the order of checks and the errno of each follow shared/spec/linux-vfio-uapi.md
// §4 and Linux 6.18's drivers/vfio/vfio_iommu_spapr_tce.c, arch/powerpc/mm/book3s64/iommu_api.c
// (registered memory), arch/powerpc/kernel/eeh.c and platforms/powernv (table sizes, EEH).
//
// The emulated kernel has 4 KiB pages (the callers are x86 processes): PAGE_SIZE alignment and
// locked-memory pages are 4 KiB, where a ppc64 kernel usually has 64 KiB.
#include "core/spapr.h"

#include <linux/capability.h>

#include <algorithm>
#include <bit>
#include <cstddef>

#include "core/cleanup.h"
#include "core/command.h"
#include "core/emulator.h"
#include "core/log.h"
#include "core/reject.h"
#include "core/uapi/vfio.h"
#include "core/vfio_iommu_rules.h"

namespace vfio_emu::core {

using namespace uapi;
using iommu::IovaRange;
using iommu::kU64Max;
using iommu::tce::TceConfig;
using iommu::tce::TceDomain;
using iommu::tce::TceUnit;
using iommu::tce::WindowInfo;

namespace {

constexpr int kPageShift = 12;
constexpr u64 kPageSize = u64{1} << kPageShift;
constexpr u32 kDefaultWindowPageShift = 12;  // IOMMU_PAGE_SHIFT_4K
// mm_iommu_do_alloc pins in chunks of (1 << (PAGE_SHIFT + MAX_PAGE_ORDER)) / sizeof(pointer)
// pages; a chunk that pins only some of its pages ends the registration with that count.
constexpr u64 kPinChunkPages = (u64{1} << (kPageShift + 10)) / sizeof(void*);

bool is_pow2(u64 v) { return v != 0 && (v & (v - 1)) == 0; }

u64 window_last(const WindowInfo& w) { return w.bus_start + (w.size - 1); }

// The unit's DDW capability as the table group reports it: PowerNV sets
// max_dynamic_windows_supported to IOMMU_TABLE_GROUP_MAX_TABLES; a PHB with a single window
// slot supports no dynamic window at all.
u32 max_dynamic_windows(const TceConfig& cfg) { return cfg.max_windows > 1 ? cfg.max_windows : 0; }

// pnv_pci_ioda2_get_table_size: the bytes a window's TCE table may grow to (every level fully
// allocated), doubled for the userspace-address copy Linux keeps beside it. It is charged to
// RLIMIT_MEMLOCK when the window is created. 0 means the parameters are invalid.
u64 table_charge_bytes(u32 page_shift, u64 window_size, u32 levels, u32 max_levels) {
  if (levels == 0 || levels > max_levels || !is_pow2(window_size)) return 0;
  const u32 window_shift = static_cast<u32>(std::countr_zero(window_size));
  // Linux computes with a wrapped entries_shift here and create_table refuses the window later;
  // refusing now gives the same EINVAL without the charge.
  if (window_shift < page_shift) return 0;
  const u32 entries_shift = window_shift - page_shift;
  u64 tce_table_size = std::max<u64>(0x1000, u64{1} << (entries_shift + 3));
  const u32 level_entries_shift = (entries_shift + levels - 1) / levels;
  const u64 direct = u64{1} << std::max<u32>(level_entries_shift + 3, kPageShift);
  u64 bytes = 0;
  for (u32 l = levels; l; --l) {
    bytes += (tce_table_size + direct - 1) & ~(direct - 1);
    tce_table_size = std::max(tce_table_size / direct * 8, direct);
  }
  return bytes + bytes;
}

// A log line for a call that does not fail but does something a caller may not expect (a
// positive non-zero result, a region left registered), in reject()'s format.
template <class... A>
void note(const IoctlCall& call, fmt::format_string<A...> f, A&&... args) {
  auto log = logger("core.spapr");
  if (rejection_log_allowed(*log, call.caller.pid))
    log->info("{} pid {} {}: {}", call.node_name, call.caller.pid,
              call.command != nullptr ? call.command->name : "ioctl",
              fmt::format(f, std::forward<A>(args)...));
}

// The argument, read after the driver's own first checks (ArgRule::kHandler): the first `minsz`
// bytes, refused with EINVAL if argsz is below minsz.
template <class T>
Status read_arg(IoctlCall& call, T* s, u32 minsz) {
  TRY(read_argsz_struct(call, minsz));
  *s = call.ucmd_as<T>();
  return {};
}

// read_arg, then the check every sPAPR argument without defined flags makes: any flag set is
// EINVAL.
template <class T>
Status read_flagless_arg(IoctlCall& call, T* s, u32 minsz) {
  TRY(read_arg(call, s, minsz));
  if (s->flags) return reject(call, EINVAL, "flags {:#x}: none are defined", s->flags);
  return {};
}

}  // namespace

// ---- driver life cycle -----------------------------------------------------------------------

SpaprDriver::SpaprDriver(Emulator& emu, Container& container, u32 type)
    : emu_(emu), container_(container), v2_(type == VFIO_SPAPR_TCE_v2_IOMMU) {}

SpaprDriver::~SpaprDriver() {
  // The groups have been detached (their windows cleared); the tables, the registered regions
  // and the v1 window charge are given back to the process that was charged.
  uncharge(locked_bytes());
}

u32 SpaprDriver::type() const { return v2_ ? VFIO_SPAPR_TCE_v2_IOMMU : VFIO_SPAPR_TCE_IOMMU; }

std::vector<std::shared_ptr<HwDomain>> SpaprDriver::domains() const {
  if (!domain_) return {};
  return {domain_};
}

long SpaprDriver::check_extension(u32 ext) const { return spapr_check_extension_unset(ext); }

const TceConfig& SpaprDriver::unit_config() const {
  return static_cast<const TceUnit&>(*domain_->unit).config();
}

TceDomain& SpaprDriver::tce() const { return static_cast<TceDomain&>(*domain_->hw); }

std::vector<WindowInfo> SpaprDriver::windows() const {
  if (!domain_) return {};
  return tce().windows();
}

u64 SpaprDriver::locked_bytes() const {
  u64 bytes = enable_charge_;
  for (const auto& [bus, b] : table_charge_) bytes += b;
  for (const SpaprRegion& r : regions_) bytes += r.size;
  return bytes;
}

Status SpaprDriver::attach_group(Group& g, IoctlCall& call) {
  auto log = logger("core.spapr");
  if (g.model() != iommu::Model::kTce) {
    if (rejection_log_allowed(*log, call.caller.pid))
      log->info("container {}: attach group {}: {} unit {} has no TCE table group: ENODEV",
                container_.id(), g.id(), iommu::model_name(g.model()), g.unit()->name());
    return err(ENODEV);
  }
  const TceConfig& cfg = static_cast<const TceUnit&>(*g.unit()).config();
  if (v2_ && max_dynamic_windows(cfg) == 0) {
    if (rejection_log_allowed(*log, call.caller.pid))
      log->info("container {}: attach group {}: v2 needs dynamic DMA windows, unit {} has {} "
                "window slot(s): EINVAL", container_.id(), g.id(), cfg.name, cfg.max_windows);
    return err(EINVAL);
  }
  if (!v2_ && !groups_.empty()) {
    if (rejection_log_allowed(*log, call.caller.pid))
      log->info("container {}: attach group {}: a v1 container takes one group (has group {}): "
                "EBUSY", container_.id(), g.id(), groups_.front()->id());
    return err(EBUSY);
  }
  for (const Group* other : groups_) {
    if (other == &g) {
      if (rejection_log_allowed(*log, call.caller.pid))
        log->info("container {}: group {} is already attached: EBUSY", container_.id(), g.id());
      return err(EBUSY);
    }
    // Linux shares one set of tables among the groups of a container and refuses a group whose
    // table group cannot take them ("incompatible", EPERM). Here the tables belong to one TCE
    // unit, so a group behind another unit is that incompatible group.
    if (other->unit() != g.unit()) {
      if (rejection_log_allowed(*log, call.caller.pid))
        log->info("container {}: group {} is behind TCE unit {}, the container's windows are on "
                  "unit {}: incompatible: EPERM", container_.id(), g.id(), g.unit()->name(),
                  other->unit()->name());
      return err(EPERM);
    }
  }
  if (!domain_) {
    auto created = emu_.create_domain(g.unit(), container_.weak_mu(),
                                      "container " + std::to_string(container_.id()));
    if (!created) {
      if (rejection_log_allowed(*log, call.caller.pid))
        log->info("container {}: attach group {}: no domain on unit {}: errno {}", container_.id(),
                  g.id(), g.unit()->name(), created.error());
      return Err{created.error()};
    }
    domain_ = created.take();
  }
  bool has_slot0 = false;
  for (const WindowInfo& w : tce().windows()) has_slot0 |= w.slot == 0;
  if (groups_.empty() && !has_slot0) def_window_pending_ = true;
  groups_.push_back(&g);
  eeh_.add(g);
  return {};
}

void SpaprDriver::clear_all_windows() {
  for (const WindowInfo& w : windows()) (void)tce().unmap(w.bus_start, window_last(w));
}

void SpaprDriver::detach_group(Group& g) {
  auto it = std::find(groups_.begin(), groups_.end(), &g);
  if (it == groups_.end()) {
    logger("core.spapr")->warn("container {}: detaching group {}, which is not attached",
                               container_.id(), g.id());
    return;
  }
  groups_.erase(it);
  // tce_iommu_release_ownership clears every TCE of every table the group used; the tables are
  // the container's, so its other groups lose those mappings too. The tables stay.
  clear_all_windows();
  eeh_.remove(g);  // the PE is released, and recovered if it is frozen
}

// ---- helpers shared by the ioctls ------------------------------------------------------------

// Every driver ioctl (CHECK_EXTENSION is the container's) starts with it, before the command
// switch: the dispatcher calls it.
Status SpaprDriver::ioctl_prologue(const IoctlCall& call) const {
  if (mm_ != 0 && mm_ != call.caller.pid)
    return reject(call, EPERM, "container {} belongs to process {}", container_.id(), mm_);
  return {};
}

// tce_iommu_mm_set. Like Linux, it binds before the rest of the ioctl is checked, so a call that
// fails later still leaves the container bound to its caller (re-running it is harmless).
void SpaprDriver::bind_owner(const IoctlCall& call) {
  if (mm_ == 0) mm_ = call.caller.pid;
}

// account_locked_vm(mm, bytes >> PAGE_SHIFT, true): the limit is RLIMIT_MEMLOCK in whole pages.
Status SpaprDriver::charge(const IoctlCall& call, u64 bytes) {
  if (bytes == 0) return {};
  const u64 limit = call.env->memlock_limit() & ~(kPageSize - 1);
  Status st = emu_.locked_memory().charge(mm_, bytes, limit, call.env->capable(CAP_IPC_LOCK));
  if (!st)
    return reject(call, ENOMEM, "locking {:#x} more bytes exceeds RLIMIT_MEMLOCK {:#x} ({:#x} "
                  "already locked by process {})", bytes, call.env->memlock_limit(),
                  emu_.locked_memory().charged(mm_), mm_);
  return {};
}

void SpaprDriver::uncharge(u64 bytes) {
  if (mm_ != 0) emu_.locked_memory().uncharge(mm_, bytes);
}

bool SpaprDriver::find_window(u64 bus, WindowInfo* out) const {
  for (const WindowInfo& w : windows()) {
    if (bus >= w.bus_start && bus <= window_last(w)) {
      *out = w;
      return true;
    }
  }
  return false;
}

const SpaprRegion* SpaprDriver::region_holding(u64 vaddr, u64 len) const {
  IovaRange want;
  if (!iommu::make_range(vaddr, len, &want)) return nullptr;
  for (const SpaprRegion& r : regions_)
    if (IovaRange{r.vaddr, r.last()}.contains(want)) return &r;
  return nullptr;
}

bool SpaprDriver::region_mapped(const SpaprRegion& r) const {
  bool mapped = false;
  for (const WindowInfo& w : windows()) {
    tce().walk(w.bus_start, window_last(w), [&](const iommu::LeafView& leaf) {
      if (leaf.output <= r.last() && leaf.output + (leaf.size - 1) >= r.vaddr) mapped = true;
    });
  }
  return mapped;
}

Result<u64> SpaprDriver::add_window(IoctlCall& call, u32 page_shift, u64 window_size,
                                    u32 levels) {
  const TceConfig& cfg = unit_config();
  if (windows().size() >= cfg.max_windows)
    return reject(call, ENOSPC, "all {} DMA window slots of unit {} are in use", cfg.max_windows,
                  cfg.name);
  if (page_shift >= 64 || !(cfg.page_sizes & (u64{1} << page_shift)))
    return reject(call, EINVAL, "page_shift {} is not a page size of unit {} (pgsizes {:#x})",
                  page_shift, cfg.name, cfg.page_sizes);
  const u64 bytes = table_charge_bytes(page_shift, window_size, levels, cfg.max_levels);
  if (bytes == 0)
    return reject(call, EINVAL, "window_size {:#x} levels {} page_shift {}: no such TCE table "
                  "(size must be a power of two of at least a page, levels 1..{})", window_size,
                  levels, page_shift, cfg.max_levels);
  TRY(charge(call, bytes));
  auto bus = tce().create_window(page_shift, window_size, levels);
  if (!bus) {
    uncharge(bytes);
    return reject(call, bus.error(), "unit {} cannot create a {:#x}-byte window of {}-bit pages "
                  "in {} level(s){}", cfg.name, window_size, page_shift, levels,
                  table_limit_note(bus.error()));
  }
  table_charge_[*bus] = bytes;
  return *bus;
}

// tce_iommu_create_default_window: the window Linux would have had at bus address 0 before the
// container took the table group, created when first needed. Like Linux, it stays even if the
// ioctl that created it fails a later check.
Status SpaprDriver::create_default_window(IoctlCall& call) {
  if (!def_window_pending_) return {};
  if (groups_.empty()) return reject(call, ENODEV, "no group for the default window");
  TRY(add_window(call, kDefaultWindowPageShift, unit_config().dma32_window_size, 1));
  def_window_pending_ = false;
  return {};
}

// ---- VFIO_IOMMU_SPAPR_TCE_GET_INFO -----------------------------------------------------------

Result<long> SpaprDriver::get_info(IoctlCall& call) {
  if (groups_.empty()) return reject(call, ENXIO, "no group in the container");
  constexpr u32 minsz = offsetof(vfio_iommu_spapr_tce_info, dma32_window_size) + 4;  // 16
  constexpr u32 ddwsz = sizeof(vfio_iommu_spapr_tce_info);                           // 32
  vfio_iommu_spapr_tce_info info;
  TRY(read_arg(call, &info, minsz));
  call.detail = fmt::format("argsz={:#x}", info.argsz);
  const TceConfig& cfg = unit_config();
  // The uAPI fields are 32 bits wide: Linux assigns, and so truncates, like this.
  info.dma32_window_start = static_cast<u32>(cfg.dma32_window_start);
  info.dma32_window_size = static_cast<u32>(cfg.dma32_window_size);
  info.flags = 0;
  info.ddw = {};
  if (v2_ && max_dynamic_windows(cfg) != 0) {
    info.flags |= VFIO_IOMMU_SPAPR_INFO_DDW;
    info.ddw.pgsizes = cfg.page_sizes;
    info.ddw.max_dynamic_windows_supported = max_dynamic_windows(cfg);
    info.ddw.levels = cfg.max_levels;
  }
  const u32 out = info.argsz >= ddwsz ? ddwsz : minsz;
  TRY(call.mem->will_write(call.arg, out));
  TRY(call.mem->write(call.arg, &info, out));
  call.detail += fmt::format(" -> flags={:#x} dma32={:#x}+{:#x}", info.flags,
                             info.dma32_window_start, info.dma32_window_size);
  return 0;
}

// ---- VFIO_IOMMU_ENABLE / VFIO_IOMMU_DISABLE (v1) ---------------------------------------------

Result<long> SpaprDriver::enable(IoctlCall& call) {
  if (v2_) return reject(call, ENOTTY, "VFIO_IOMMU_ENABLE is v1 only (v2 registers memory)");
  if (enabled_) return reject(call, EBUSY, "container {} is already enabled", container_.id());
  if (groups_.empty()) return reject(call, ENODEV, "no group in the container");
  const u64 tce32_size = unit_config().dma32_window_size;
  if (tce32_size == 0) return reject(call, EPERM, "the unit has no 32-bit DMA window");
  bind_owner(call);
  // The worst case, the whole 32-bit window, is charged up front (tce_iommu_enable).
  const u64 bytes = (tce32_size >> kPageShift) << kPageShift;
  TRY(charge(call, bytes));
  enable_charge_ = bytes;
  enabled_ = true;
  call.detail = fmt::format("locked={:#x}", bytes);
  return 0;
}

Result<long> SpaprDriver::disable(IoctlCall& call) {
  if (v2_) return reject(call, ENOTTY, "VFIO_IOMMU_DISABLE is v1 only");
  if (!enabled_) return 0;
  // The TCEs stay; MAP and UNMAP are refused until the next ENABLE.
  enabled_ = false;
  uncharge(enable_charge_);
  enable_charge_ = 0;
  return 0;
}

// ---- VFIO_IOMMU_SPAPR_REGISTER_MEMORY / UNREGISTER_MEMORY (v2) -------------------------------

Result<long> SpaprDriver::register_memory(IoctlCall& call) {
  if (!v2_) return reject(call, ENOTTY, "memory registration is v2 only");
  constexpr u32 minsz = sizeof(vfio_iommu_spapr_register_memory);  // 24
  bind_owner(call);
  vfio_iommu_spapr_register_memory reg;
  TRY(read_flagless_arg(call, &reg, minsz));
  call.detail = fmt::format("vaddr={:#x} size={:#x}", reg.vaddr, reg.size);
  // tce_iommu_register_pages
  if ((reg.vaddr & (kPageSize - 1)) || (reg.size & (kPageSize - 1)) ||
      reg.vaddr + reg.size < reg.vaddr)
    return reject(call, EINVAL, "vaddr {:#x} size {:#x}: not page aligned, or wraps", reg.vaddr,
                  reg.size);
  // mm_iommu_get: the very same region (address and size) is known already.
  for (SpaprRegion& r : regions_) {
    if (r.vaddr != reg.vaddr || r.size != reg.size || reg.size == 0) continue;
    if (r.listed)
      return reject(call, EBUSY, "vaddr {:#x} size {:#x} is already registered", reg.vaddr,
                    reg.size);
    r.listed = true;  // a region UNREGISTER left busy: referenced again, not charged again
    enabled_ = true;
    return 0;
  }
  // mm_iommu_new: charge, pin (FOLL_WRITE), then look for an overlap.
  TRY(charge(call, reg.size));
  Cleanup uncharge_unless_registered([&] { uncharge(reg.size); });
  if (reg.size == 0)  // vzalloc(0) of the page array fails
    return reject(call, ENOMEM, "vaddr {:#x}: size 0 (no page array to allocate)", reg.vaddr);
  const u64 accessible = call.env->dma_accessible(reg.vaddr, reg.size, iommu::kProtWrite);
  if (accessible < reg.size) {
    // pin_user_pages() returns the pages it pinned when it pinned some of its chunk; that count
    // ends the registration as the ioctl's (positive) result.
    const u64 bad_page = accessible >> kPageShift;
    const u64 pinned_in_chunk = bad_page % kPinChunkPages;
    if (pinned_in_chunk == 0)
      return reject(call, EFAULT, "vaddr {:#x} size {:#x}: no writable page at {:#x}", reg.vaddr,
                    reg.size, reg.vaddr + accessible);
    note(call, "vaddr {:#x} size {:#x}: no writable page at {:#x}; pin_user_pages() pinned {:#x} "
         "page(s) of its chunk, and Linux returns that count", reg.vaddr, reg.size,
         reg.vaddr + accessible, pinned_in_chunk);
    return static_cast<long>(pinned_in_chunk);
  }
  const IovaRange want{reg.vaddr, reg.vaddr + (reg.size - 1)};
  for (const SpaprRegion& r : regions_)
    if (want.overlaps(IovaRange{r.vaddr, r.last()}))
      return reject(call, EINVAL, "vaddr {:#x} size {:#x} overlaps registered {:#x}+{:#x}",
                    reg.vaddr, reg.size, r.vaddr, r.size);
  // mm_iommu_do_alloc: __ffs(ua | size), then the pages behind it.
  const u32 natural = static_cast<u32>(std::countr_zero(reg.vaddr | reg.size));
  const u32 shift = call.env->pinned_page_shift(reg.vaddr, reg.size, natural, kPageShift);
  regions_.push_back(SpaprRegion{reg.vaddr, reg.size, true, shift});
  call.detail += fmt::format(" -> pageshift {}", shift);
  uncharge_unless_registered.cancel();
  enabled_ = true;
  return 0;
}

Result<long> SpaprDriver::unregister_memory(IoctlCall& call) {
  if (!v2_) return reject(call, ENOTTY, "memory registration is v2 only");
  if (mm_ == 0) return reject(call, EPERM, "no memory was ever registered (no process bound)");
  constexpr u32 minsz = sizeof(vfio_iommu_spapr_register_memory);  // 24
  vfio_iommu_spapr_register_memory reg;
  TRY(read_flagless_arg(call, &reg, minsz));
  call.detail = fmt::format("vaddr={:#x} size={:#x}", reg.vaddr, reg.size);
  if ((reg.vaddr & (kPageSize - 1)) || (reg.size & (kPageSize - 1)))
    return reject(call, EINVAL, "vaddr {:#x} size {:#x}: not page aligned", reg.vaddr, reg.size);
  auto it = std::find_if(regions_.begin(), regions_.end(), [&](const SpaprRegion& r) {
    return r.vaddr == reg.vaddr && r.size == reg.size;
  });
  if (it == regions_.end() || !it->listed)
    return reject(call, ENOENT, "vaddr {:#x} size {:#x} is not a registered region (it must "
                  "match a REGISTER_MEMORY exactly)", reg.vaddr, reg.size);
  // mm_iommu_put refuses (EBUSY) to free a region TCEs still point into, but the container
  // drops its reference anyway and the ioctl returns 0: the region stays pinned and charged.
  if (region_mapped(*it)) {
    it->listed = false;
    note(call, "vaddr {:#x} size {:#x}: TCEs still map into it; it leaves the container's list "
         "but stays pinned and charged", reg.vaddr, reg.size);
    return 0;
  }
  uncharge(it->size);
  regions_.erase(it);
  return 0;
}

// ---- VFIO_IOMMU_MAP_DMA / VFIO_IOMMU_UNMAP_DMA -----------------------------------------------

Result<long> SpaprDriver::map_dma(IoctlCall& call) {
  if (!enabled_)
    return reject(call, EPERM, "container {} is not enabled ({})", container_.id(),
                  v2_ ? "register memory first" : "VFIO_IOMMU_ENABLE first");
  TRY(read_argsz_struct(call, sizeof(vfio_iommu_type1_dma_map)));
  vfio_iommu_type1_dma_map map;
  TRY(dma_map_argument(call, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, &map));
  TRY(create_default_window(call));
  WindowInfo w;
  if (!find_window(map.iova, &w))
    return reject(call, ENXIO, "iova {:#x} is in no DMA window", map.iova);
  const u64 page = u64{1} << w.page_shift;
  if ((map.size | map.vaddr) & (page - 1))
    return reject(call, EINVAL, "vaddr {:#x} size {:#x} not aligned to the window's {:#x} pages",
                  map.vaddr, map.size, page);
  const Prot prot = dma_map_prot(map.flags);
  if (prot == 0) return reject(call, EINVAL, "flags {:#x}: READ and/or WRITE needed", map.flags);
  // iommu_tce_put_param_check() is a macro evaluating to (check_ioba() || check_gpa()): it is 1
  // on failure, and the ioctl returns that 1. Only a misaligned iova gets this far.
  if (map.iova & (page - 1)) {
    note(call, "iova {:#x} not aligned to {:#x}: returns 1 (iommu_tce_put_param_check)", map.iova,
         page);
    return 1;
  }
  if (map.size == 0) return 0;
  // Linux only validates the first TCE and writes past the table for the rest; the emulator
  // refuses the range instead.
  IovaRange in;
  if (!iommu::make_range(map.iova, map.size, &in) || in.last > window_last(w))
    return reject(call, EINVAL, "iova {:#x} size {:#x} runs past the window {:#x}..{:#x}",
                  map.iova, map.size, w.bus_start, window_last(w));
  // Every TCE is checked before any is written: a failing MAP changes nothing (Linux clears the
  // entries it wrote before the failing one).
  if (v2_) {
    // tce_iommu_prereg_ua_to_hpa: each IOMMU page must lie in one registered region that can
    // back pages of that size.
    for (u64 off = 0; off < map.size;) {
      const u64 at = map.vaddr + off;
      const SpaprRegion* r = region_holding(at, page);
      if (r == nullptr || r->page_shift() < w.page_shift)
        return reject(call, EINVAL, "vaddr {:#x}: the {:#x}-byte page at {:#x} is {}", map.vaddr,
                      page, at,
                      r ? fmt::format("in registered {:#x}+{:#x}, aligned only to {:#x}", r->vaddr,
                                      r->size, u64{1} << r->page_shift())
                        : std::string("not in registered memory"));
      // The following pages of the same region need no lookup.
      const u64 pages_left_in_region = ((r->last() - at) >> w.page_shift) + 1;
      off += std::min(map.size - off, pages_left_in_region << w.page_shift);
    }
  } else {
    // tce_iommu_use_page pins with FOLL_WRITE whatever the direction (the direction is taken
    // from the low bits of the page-aligned vaddr, which are 0).
    const u64 len = map.vaddr + map.size < map.vaddr ? 0 - map.vaddr : map.size;
    const u64 accessible = call.env->dma_accessible(map.vaddr, len, iommu::kProtWrite);
    if (accessible < map.size)
      return reject(call, EFAULT, "vaddr {:#x} size {:#x}: no writable page at {:#x}", map.vaddr,
                    map.size, map.vaddr + accessible);
  }
  auto r = tce().map(map.iova, map.vaddr, map.size, prot);
  if (!r)
    return reject(call, r.error(), "iova {:#x} size {:#x}: TCE table update failed{}", map.iova,
                  map.size, table_limit_note(r.error()));
  if (*r) call.detail += fmt::format(" -> replaced={:#x}", *r);
  return 0;
}

Result<long> SpaprDriver::unmap_dma(IoctlCall& call) {
  if (!enabled_)
    return reject(call, EPERM, "container {} is not enabled", container_.id());
  constexpr u32 minsz = offsetof(vfio_iommu_type1_dma_unmap, size) + 8;  // 24
  TRY(read_argsz_struct(call, minsz));
  vfio_iommu_type1_dma_unmap unmap;
  TRY(dma_unmap_argument(call, 0, &unmap));  // sPAPR has no unmap flags
  TRY(create_default_window(call));
  WindowInfo w;
  if (!find_window(unmap.iova, &w))
    return reject(call, ENXIO, "iova {:#x} is in no DMA window", unmap.iova);
  const u64 page = u64{1} << w.page_shift;
  if (unmap.size & (page - 1))
    return reject(call, EINVAL, "size {:#x} not aligned to the window's {:#x} pages", unmap.size,
                  page);
  // iommu_tce_clear_param_check: the same 1-not-errno quirk as MAP.
  if (unmap.iova & (page - 1)) {
    note(call, "iova {:#x} not aligned to {:#x}: returns 1 (iommu_tce_clear_param_check)",
         unmap.iova, page);
    return 1;
  }
  if (unmap.size == 0) return 0;
  // Every entry in the range is cleared, mapped or not; entries past the window's end do not
  // exist (Linux would write past its table), so the range stops there. Nothing is written back.
  u64 last = 0;
  if (__builtin_add_overflow(unmap.iova, unmap.size - 1, &last)) last = kU64Max;
  last = std::min(last, window_last(w));
  auto r = tce().unmap(unmap.iova, last);
  if (!r)
    return reject(call, r.error(), "iova {:#x}..{:#x}: TCE table update failed", unmap.iova,
                  last);
  call.detail += fmt::format(" -> cleared={:#x}", *r);
  return 0;
}

// ---- VFIO_IOMMU_SPAPR_TCE_CREATE / REMOVE (v2) -----------------------------------------------

// The start both window ioctls share: v2 only, bind the container, a group is needed.
Status SpaprDriver::begin_window_ioctl(IoctlCall& call) {
  if (!v2_) return reject(call, ENOTTY, "dynamic DMA windows are v2 only");
  bind_owner(call);
  if (groups_.empty()) return reject(call, ENXIO, "no group in the container");
  return {};
}

Result<long> SpaprDriver::create_window(IoctlCall& call) {
  TRY(begin_window_ioctl(call));
  constexpr u32 minsz = sizeof(vfio_iommu_spapr_tce_create);  // offsetofend(start_addr) = 40
  vfio_iommu_spapr_tce_create create;
  TRY(read_flagless_arg(call, &create, minsz));
  call.detail = fmt::format("page_shift={} window_size={:#x} levels={}", create.page_shift,
                            create.window_size, create.levels);
  TRY(call.mem->will_write(call.arg, minsz));
  TRY(create_default_window(call));
  create.start_addr = TRY(add_window(call, create.page_shift, create.window_size, create.levels));
  call.detail += fmt::format(" -> start_addr={:#x}", create.start_addr);
  // A failing copy-out leaves the window in place, as in Linux.
  TRY(call.mem->write(call.arg, &create, minsz));
  return 0;
}

Result<long> SpaprDriver::remove_window(IoctlCall& call) {
  TRY(begin_window_ioctl(call));
  constexpr u32 minsz = sizeof(vfio_iommu_spapr_tce_remove);  // 16
  vfio_iommu_spapr_tce_remove remove;
  TRY(read_flagless_arg(call, &remove, minsz));
  call.detail = fmt::format("start_addr={:#x}", remove.start_addr);
  if (def_window_pending_ && remove.start_addr == 0) {
    def_window_pending_ = false;  // the default window will not be created
    call.detail += " -> default window cancelled";
    return 0;
  }
  // tce_iommu_find_table: any address inside a window names it.
  WindowInfo w;
  if (!find_window(remove.start_addr, &w))
    return reject(call, EINVAL, "start_addr {:#x} is in no DMA window", remove.start_addr);
  Status st = tce().remove_window(w.bus_start);  // clears every TCE, frees the table
  if (!st) return reject(call, st.error(), "window at {:#x} cannot be removed", w.bus_start);
  uncharge(table_charge_[w.bus_start]);
  table_charge_.erase(w.bus_start);
  call.detail += fmt::format(" -> removed {:#x}+{:#x}", w.bus_start, w.size);
  return 0;
}

// ---- VFIO_EEH_PE_OP --------------------------------------------------------------------------

Result<long> SpaprDriver::eeh_pe_op(IoctlCall& call) {
  // tce_iommu_ioctl applies the op to every group, newest first (list_add puts a new group at
  // the head), and stops at the first non-zero result: an error, or GET_STATE's state.
  if (groups_.empty()) return reject(call, ENODEV, "no PE: the container has no group");
  constexpr u32 minsz = offsetof(vfio_eeh_pe_op, op) + 4;  // 12
  vfio_eeh_pe_op op;
  TRY(read_flagless_arg(call, &op, minsz));
  call.detail = fmt::format("op={}", op.op);
  if (op.op > VFIO_EEH_PE_INJECT_ERR) return reject(call, EINVAL, "op {} is unknown", op.op);
  if (op.op == VFIO_EEH_PE_INJECT_ERR) {
    constexpr u32 errsz = sizeof(vfio_eeh_pe_op);  // offsetofend(err.mask) = 40
    if (op.argsz < errsz)
      return reject(call, EINVAL, "INJECT_ERR: argsz {:#x} < {:#x}", op.argsz, errsz);
    TRY(read_arg(call, &op, errsz));
    call.detail += fmt::format(" type={} func={} addr={:#x} mask={:#x}", op.err.type,
                               op.err.func, op.err.addr, op.err.mask);
    TRY(check_injected_error(call, op.err));
  }
  for (auto it = groups_.rbegin(); it != groups_.rend(); ++it) {
    const long ret = eeh_.apply(**it, op.op);
    if (ret != 0) {
      call.detail += fmt::format(" -> group {} state {}", (*it)->id(), ret);
      return ret;
    }
  }
  return 0;
}

// ---- free functions --------------------------------------------------------------------------

std::unique_ptr<IommuDriver> make_spapr_driver(Emulator& emu, Container& container, u32 type) {
  return std::make_unique<SpaprDriver>(emu, container, type);
}

long spapr_check_extension_unset(u32 ext) {
  switch (ext) {
    case VFIO_SPAPR_TCE_IOMMU:
    case VFIO_SPAPR_TCE_v2_IOMMU:
      return 1;
    case VFIO_EEH:
      return 1;  // eeh_enabled(): the emulated POWER machine has EEH
    default:
      return 0;
  }
}

Result<DmaTranslation> SpaprDriver::dma_translate(const Group& g, u64 iova,
                                                 iommu::Access access) const {
  if (!domain_ || std::find(groups_.begin(), groups_.end(), &g) == groups_.end()) return Err{ENXIO};
  const EehPeState pe = eeh_.state(g);
  if (pe.dma_frozen || pe.in_reset) return Err{EIO};
  DmaTranslation t;
  t.domain = domain_;
  t.walk = domain_->hw->translate(iova, access);
  if (!t.walk.ok()) return t;
  t.owner = mm_;
  t.address = t.walk.output;
  // Valid while the container's lock is held, as this call's result.
  t.more = [this, &g, access](u64 next) { return dma_translate(g, next, access); };
  return t;
}

}  // namespace vfio_emu::core
