#include "iommu/tce/tce.h"

#include <algorithm>
#include <bit>
#include <cerrno>

namespace vfio_emu::iommu::tce {
namespace {

// Page shifts a POWER PHB can offer: 4K, 64K, 2M (PHB4), 16M, 256M, 1G (PHB4), 16G.
constexpr u64 kKnownPageSizes = (u64{1} << 12) | (u64{1} << 16) | (u64{1} << 21) |
                                (u64{1} << 24) | (u64{1} << 28) | (u64{1} << 30) |
                                (u64{1} << 34);

bool is_pow2(u64 v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

int tce_level_bits(u32 page_shift, u64 window_size, u32 levels, u32 max_levels) {
  if (levels == 0 || levels > max_levels || !is_pow2(window_size)) return -1;
  const int window_shift = std::countr_zero(window_size);
  if (window_shift < static_cast<int>(page_shift)) return -1;
  const int entries_shift = window_shift - static_cast<int>(page_shift);
  const int per_level = (entries_shift + static_cast<int>(levels) - 1) / static_cast<int>(levels);
  const int level_shift = std::max(per_level + 3, 12);  // bytes of one level, at least 4 KiB
  if ((level_shift - 3) * static_cast<int>(levels) + static_cast<int>(page_shift) >=
      kMaxTableAddressBits)
    return -1;
  return level_shift - 3;
}

// ---- TceUnit -------------------------------------------------------------------------------

Result<std::shared_ptr<TceUnit>> TceUnit::create(TceConfig config) {
  if (!is_pow2(config.dma32_window_size)) return err(EINVAL);
  if ((config.page_sizes & kKnownPageSizes) == 0 || (config.page_sizes & ~kKnownPageSizes))
    return err(EINVAL);
  if (config.max_windows == 0 || config.max_levels == 0 || config.max_levels > 5)
    return err(EINVAL);
  for (const IovaRange& r : config.reserved)
    if (r.first > r.last) return err(EINVAL);
  return std::shared_ptr<TceUnit>(new TceUnit(std::move(config)));
}

Result<std::unique_ptr<Domain>> TceUnit::create_domain() {
  return std::unique_ptr<Domain>(new TceDomain(shared_from_this()));
}

// ---- TceDomain -----------------------------------------------------------------------------

TceDomain::Window::Window(u32 slot_, u64 bus, u64 size_, int page_shift, int levels, int bits,
                          std::shared_ptr<TableBudget> budget)
    : slot(slot_),
      bus_start(bus),
      bus_last(bus + (size_ - 1)),
      size(size_),
      memory(std::move(budget)),
      table(TceFormat(levels, bits, page_shift), &memory) {}

TceDomain::TceDomain(std::shared_ptr<TceUnit> unit)
    : unit_(std::move(unit)), slots_(unit_->config().max_windows) {}

TceDomain::~TceDomain() = default;

TceDomain::Window* TceDomain::window_at(u64 bus) const {
  for (const auto& w : slots_)
    if (w && bus >= w->bus_start && bus <= w->bus_last) return w.get();
  return nullptr;
}

Result<u64> TceDomain::create_window(u32 page_shift, u64 window_size, u32 levels) {
  const TceConfig& cfg = unit_->config();
  u32 slot = 0;
  while (slot < slots_.size() && slots_[slot]) ++slot;
  if (slot == slots_.size()) return err(ENOSPC);
  if (page_shift >= 64 || !(cfg.page_sizes & (u64{1} << page_shift))) return err(EINVAL);
  const int bits = tce_level_bits(page_shift, window_size, levels, cfg.max_levels);
  if (bits < 0) return err(EINVAL);

  // The hardware places the window: slot 0 at the 32-bit base, the others from ddw_start up, at
  // the first address aligned to the window size that no other window uses.
  u64 bus = slot == 0 ? cfg.dma32_window_start : cfg.ddw_start;
  IovaRange range;
  for (;;) {
    if (bus & (window_size - 1)) {
      const u64 aligned = (bus | (window_size - 1)) + 1;
      if (aligned == 0) return err(EINVAL);
      bus = aligned;
    }
    if (!make_range(bus, window_size, &range)) return err(EINVAL);  // past 2^64-1
    bool clash = false;
    for (const auto& w : slots_) {
      if (w && range.overlaps(IovaRange{w->bus_start, w->bus_last})) {
        clash = true;
        if (w->bus_last == kU64Max) return err(EINVAL);
        bus = w->bus_last + 1;
      }
    }
    if (!clash) break;
    if (slot == 0) return err(EINVAL);  // slot 0 has a fixed place
  }

  auto w = std::make_unique<Window>(slot, bus, window_size, static_cast<int>(page_shift),
                                    static_cast<int>(levels), bits, unit_->table_budget());
  TRY(w->table.init());
  slots_[slot] = std::move(w);
  return bus;
}

Status TceDomain::remove_window(u64 bus_start) {
  for (auto& w : slots_) {
    if (w && w->bus_start == bus_start) {
      w.reset();  // ~RadixTable clears and frees every level
      return {};
    }
  }
  return err(EINVAL);
}

Result<u64> TceDomain::map(u64 iova, u64 output, u64 size, Prot prot) {
  if (size == 0 || (prot & kProtRW) == 0) return err(EINVAL);
  IovaRange in, out;
  if (!make_range(iova, size, &in) || !make_range(output, size, &out)) return err(EOVERFLOW);
  Window* w = window_at(iova);
  if (w == nullptr || in.last > w->bus_last) return err(ERANGE);
  const u64 page = u64{1} << w->table.format().page_shift();
  if ((iova | output | size) & (page - 1)) return err(EINVAL);
  if (out.last >> kMaxOutputBits) return err(ERANGE);
  return w->table.map(iova - w->bus_start, output, size, prot);
}

Result<u64> TceDomain::exchange(u64 bus, u64 tce) {
  Window* w = window_at(bus);
  if (w == nullptr) return err(ERANGE);
  const TceFormat& f = w->table.format();
  const u64 page = u64{1} << f.page_shift();
  const u64 address = static_cast<u64>(decode(tce).rpn) << kRpnShift;
  if ((bus & (page - 1)) || (address & (page - 1))) return err(EINVAL);
  const u64 rel = bus - w->bus_start;
  // The walk stops at the first absent level; only a walk that reached level 1 read the TCE.
  const Translation old = w->table.translate(rel, Access::kRead);
  const WalkStep& last_step = old.steps[old.nsteps - 1];
  const u64 previous = last_step.level == 1 ? last_step.entry : 0;
  if (f.present(tce)) {
    TRY(w->table.map(rel, f.leaf_output(tce, 1), page, f.leaf_prot(tce)));
  } else {
    TRY(w->table.unmap(rel, rel + (page - 1), SplitPolicy::kRefuse));
  }
  return previous;
}

Result<u64> TceDomain::unmap(u64 first, u64 last) {
  if (first > last) return err(EINVAL);
  // Check every edge first so that an error changes nothing.
  for (const auto& w : slots_) {
    if (!w || last < w->bus_start || first > w->bus_last) continue;
    const u64 page_mask = (u64{1} << w->table.format().page_shift()) - 1;
    const u64 lo = std::max(first, w->bus_start);
    const u64 hi = std::min(last, w->bus_last);
    if ((lo & page_mask) || ((hi + 1) & page_mask)) return err(EINVAL);
  }
  u64 bytes = 0;
  for (const auto& w : slots_) {
    if (!w || last < w->bus_start || first > w->bus_last) continue;
    const u64 lo = std::max(first, w->bus_start) - w->bus_start;
    const u64 hi = std::min(last, w->bus_last) - w->bus_start;
    bytes += TRY(w->table.unmap(lo, hi, SplitPolicy::kRefuse));
  }
  return bytes;
}

Translation TceDomain::translate(u64 iova, Access access) const {
  Window* w = window_at(iova);
  if (w == nullptr) {
    Translation t;
    t.fault = FaultReason::kOutOfAperture;
    return t;
  }
  return w->table.translate(iova - w->bus_start, access);
}

void TceDomain::walk(u64 first, u64 last, const LeafVisitor& visit) const {
  std::vector<const Window*> ordered;
  for (const auto& w : slots_)
    if (w && !(last < w->bus_start || first > w->bus_last)) ordered.push_back(w.get());
  std::sort(ordered.begin(), ordered.end(),
            [](const Window* a, const Window* b) { return a->bus_start < b->bus_start; });
  for (const Window* w : ordered) {
    const u64 lo = std::max(first, w->bus_start) - w->bus_start;
    const u64 hi = std::min(last, w->bus_last) - w->bus_start;
    w->table.walk(lo, hi, w->bus_start, visit);
  }
}

u64 TceDomain::page_sizes() const { return unit_->config().page_sizes; }

std::vector<IovaRange> TceDomain::aperture() const {
  std::vector<IovaRange> out;
  for (const auto& w : slots_)
    if (w) out.push_back(IovaRange{w->bus_start, w->bus_last});
  std::sort(out.begin(), out.end(),
            [](const IovaRange& a, const IovaRange& b) { return a.first < b.first; });
  return out;
}

DomainStats TceDomain::stats() const {
  DomainStats s;
  for (const auto& w : slots_) {
    if (!w) continue;
    s.tables += w->memory.tables();
    s.table_bytes += w->memory.bytes();
    s.meta_bytes += w->memory.meta_bytes();
    s.entries += w->table.entries();
    s.mapped_bytes += w->table.mapped_bytes();
  }
  return s;
}

int TceDomain::levels() const {
  int levels = 0;
  for (const auto& w : slots_)
    if (w) levels = std::max(levels, w->table.format().levels());
  return levels;
}

std::vector<WindowInfo> TceDomain::windows() const {
  std::vector<WindowInfo> out;
  for (const auto& w : slots_) {
    if (!w) continue;
    const TceFormat& f = w->table.format();
    out.push_back(WindowInfo{w->slot, w->bus_start, w->size, f.page_shift(), f.levels(), f.bits(),
                             w->memory.bytes()});
  }
  return out;
}

}  // namespace vfio_emu::iommu::tce
