// VFIO type1: the order of checks and the errno of each follow shared/spec/linux-vfio-uapi.md §3
// (Linux 6.18, after the check_*_overflow series).
#include "core/type1.h"

#include <linux/capability.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/cleanup.h"
#include "core/command.h"
#include "core/emulator.h"
#include "core/iova_list.h"
#include "core/log.h"
#include "core/reject.h"
#include "core/uapi/vfio.h"
#include "core/vfio_iommu_rules.h"

namespace vfio_emu::core {

using namespace uapi;
using iommu::IovaRange;

namespace {

constexpr u64 kPageSize = 4096;
constexpr u64 kPageMask = ~(kPageSize - 1);
// x86-64 TASK_SIZE_MAX with 4-level paging: what access_ok() accepts.
constexpr u64 kTaskSizeMax = (u64{1} << 47) - kPageSize;
// DIRTY_BITMAP_BYTES(INT_MAX): the largest bitmap the kernel handles (256 MiB).
constexpr u64 kDirtyBitmapSizeMax = ((u64{INT_MAX} + 63) / 64) * 8;

bool access_ok(u64 addr, u64 size) { return size <= kTaskSizeMax && addr <= kTaskSizeMax - size; }

u64 bitmap_bytes(u64 nbits) { return ((nbits + 63) / 64) * 8; }

// Linux's verify_bitmap_size(): EINVAL unless the bitmap can hold npages bits.
bool bitmap_size_ok(u64 npages, u64 bitmap_size) {
  if (npages == 0 || bitmap_size == 0 || bitmap_size > kDirtyBitmapSizeMax) return false;
  return bitmap_size >= bitmap_bytes(npages);
}

int ffs64(u64 v) { return __builtin_ctzll(v); }

}  // namespace

Type1Driver::Type1Driver(Emulator& emu, Container& container, u32 type)
    : emu_(emu),
      container_(container),
      v2_(type == VFIO_TYPE1v2_IOMMU),
      pgsize_bitmap_(kPageMask),
      dma_avail_(emu.limits().dma_entry_limit) {}

Type1Driver::~Type1Driver() {
  while (!dmas_.empty()) remove_dma(dmas_.begin());
}

std::vector<std::shared_ptr<HwDomain>> Type1Driver::domains() const {
  std::vector<std::shared_ptr<HwDomain>> out;
  for (const auto& d : domains_) out.push_back(d.domain);
  return out;
}

Result<DmaTranslation> Type1Driver::dma_translate(const Group& g, u64 iova,
                                                 iommu::Access access) const {
  for (const DomainEntry& e : domains_) {
    if (std::find(e.groups.begin(), e.groups.end(), &g) == e.groups.end()) continue;
    DmaTranslation t;
    t.domain = e.domain;
    t.walk = e.domain->hw->translate(iova, access);
    if (!t.walk.ok()) return t;
    // The mapping the entry came from: its owner now, and its address there (a VADDR update
    // moves both; the table keeps what MAP programmed).
    auto it = dmas_.upper_bound(iova);
    if (it == dmas_.begin()) return Err{EFAULT};  // an entry no mapping explains: not reached
    const Type1Dma& dma = std::prev(it)->second;
    if (dma.last() < iova) return Err{EFAULT};
    t.owner = dma.owner;
    t.address = t.walk.output - dma.output + dma.vaddr;
    // Valid while the container's lock is held, as this call's result.
    t.more = [this, &g, access](u64 next) { return dma_translate(g, next, access); };
    return t;
  }
  return Err{ENXIO};  // an emulated group (nop unit): its mappings are only recorded
}

Type1Dma* Type1Driver::find_overlap(u64 first, u64 last) {
  auto it = dmas_.upper_bound(last);
  if (it == dmas_.begin()) return nullptr;
  --it;
  // `it` is the last mapping starting at or below `last`; an earlier one cannot overlap
  // without overlapping it, since mappings never overlap each other.
  return it->second.last() >= first ? &it->second : nullptr;
}

Status Type1Driver::check_no_bisect(const IoctlCall& call, u64 first, u64 last) {
  if (Type1Dma* d = find_overlap(first, first); d && d->iova != first)
    return reject(call, EINVAL, "iova {:#x} starts inside mapping {:#x}+{:#x}", first, d->iova,
                  d->size);
  if (Type1Dma* d = find_overlap(last, last); d && d->last() != last)
    return reject(call, EINVAL, "end {:#x} ends inside mapping {:#x}+{:#x}", last, d->iova,
                  d->size);
  return {};
}

void Type1Driver::recompute_pgsize_bitmap() {
  u64 bitmap = ~u64{0};
  for (const auto& d : domains_) bitmap &= d.domain->hw->page_sizes();
  pgsize_bitmap_ = type1_pgsize_bitmap(bitmap);
}

std::vector<IovaRange> Type1Driver::build_iova_list(
    const std::vector<const iommu::Domain*>& doms, const std::vector<Group*>& groups) const {
  if (doms.empty()) return {};
  IovaList list = doms.front()->aperture();
  for (const iommu::Domain* d : doms) {
    IovaList next;
    for (const IovaRange& a : d->aperture()) {
      IovaList part = intersect(list, a);
      next.insert(next.end(), part.begin(), part.end());
    }
    list = next;
  }
  for (const Group* g : groups)
    for (const IovaRange& r : g->unit()->reserved_regions()) list = subtract(list, r);
  return list;
}

Status Type1Driver::attach_group(Group& g, IoctlCall& call) {
  auto log = logger("core.type1");
  // Attaching could require pinning, so it is refused while a vaddr is invalid.
  if (vaddr_invalid_count_ != 0) {
    if (rejection_log_allowed(*log, call.caller.pid))
      log->info("container {}: attach group {}: {} mapping(s) have an invalid vaddr: EBUSY",
                container_.id(), g.id(), vaddr_invalid_count_);
    return err(EBUSY);
  }
  auto known = [&](const Group* x) { return x == &g; };
  bool dup = std::any_of(emulated_.begin(), emulated_.end(), known);
  for (const auto& d : domains_) dup |= std::any_of(d.groups.begin(), d.groups.end(), known);
  if (dup) return err(EINVAL);

  if (g.model() == iommu::Model::kNop) {
    // Like an mdev group: no IOMMU domain; mappings are only recorded.
    emulated_.push_back(&g);
    return {};
  }
  if (g.model() != iommu::Model::kVtd) {
    if (rejection_log_allowed(*log, call.caller.pid))
      log->info("container {}: group {} is behind {} unit {}, which cannot serve {}: ENODEV",
                container_.id(), g.id(), iommu::model_name(g.model()), g.unit()->name(), name());
    return err(ENODEV);
  }

  // Linux allocates and attaches a fresh domain first (the VT-d domain id is taken here, hence
  // ENOSPC when the unit's CAP.ND ids are all in use) and only then looks for one to share.
  auto created = emu_.create_domain(g.unit(), container_.weak_mu(),
                                    "container " + std::to_string(container_.id()));
  if (!created) {
    if (created.error() == ENOSPC)
      if (rejection_log_allowed(*log, call.caller.pid))
        log->info("container {}: group {}: IOMMU unit {} has run out of domain ids (CAP.ND): "
                  "ENOSPC", container_.id(), g.id(), g.unit()->name());
    return Err{created.error()};
  }
  std::shared_ptr<HwDomain> fresh = created.take();

  // Existing mappings must fit the new aperture and avoid the group's reserved regions.
  for (const auto& [iova, dma] : dmas_) {
    if (!contains(fresh->hw->aperture(), dma.iova, dma.last())) {
      if (rejection_log_allowed(*log, call.caller.pid))
        log->info("container {}: group {}: mapping {:#x}..{:#x} lies outside unit {}'s aperture: "
                  "EINVAL", container_.id(), g.id(), dma.iova, dma.last(), g.unit()->name());
      return err(EINVAL);
    }
    if (overlaps(g.unit()->reserved_regions(), dma.iova, dma.last())) {
      if (rejection_log_allowed(*log, call.caller.pid))
        log->info("container {}: group {}: mapping {:#x}..{:#x} overlaps a reserved region: EINVAL",
                  container_.id(), g.id(), dma.iova, dma.last());
      return err(EINVAL);
    }
  }
  std::vector<const iommu::Domain*> doms{fresh->hw.get()};
  std::vector<Group*> groups{&g};
  for (const auto& d : domains_) {
    doms.push_back(d.domain->hw.get());
    groups.insert(groups.end(), d.groups.begin(), d.groups.end());
  }
  IovaList list = build_iova_list(doms, groups);
  if (list.empty()) return err(EINVAL);
  // After the aperture and reserved-region checks, before any domain is shared.
  if (!g.unit()->isolated_msi() && !emu_.limits().allow_unsafe_interrupts)
    return reject(call, EPERM, "group {}: unit {} has no interrupt remapping support (use "
                  "allow_unsafe_interrupts to enable VFIO IOMMU support on it)", g.id(),
                  g.unit()->name());

  for (auto& d : domains_) {
    if (d.domain->unit == g.unit()) {  // same IOMMU, same format: share the domain
      d.groups.push_back(&g);
      iova_list_ = std::move(list);
      return {};
    }
  }

  // The entry first: if the replay fails it goes again, and nothing is left to undo after it.
  domains_.push_back(DomainEntry{fresh, {&g}});
  Cleanup forget([&] { domains_.pop_back(); });
  TRY(replay(call, g, *fresh));
  forget.cancel();
  iova_list_ = std::move(list);
  recompute_pgsize_bitmap();
  return {};
}

// vfio_iommu_replay: every mapping goes into the new domain. Those only recorded so far (the
// container had emulated groups alone) are pinned now, from their current vaddr, charged to
// their owner under the attaching caller's RLIMIT_MEMLOCK; a page that cannot be pinned fails
// the attach (EFAULT, ENOMEM) and undoes the pinning done so far.
Status Type1Driver::replay(IoctlCall& call, Group& g, HwDomain& fresh) {
  const u64 limit = call.env->memlock_limit();
  std::vector<Type1Dma*> pinned;  // newly, by this replay
  Cleanup unwind([&] {
    for (Type1Dma* dma : pinned) {
      emu_.locked_memory().uncharge(dma->owner, dma->locked);
      dma->locked = 0;
    }
  });
  for (auto& [iova, dma] : dmas_) {
    if (!dma.iommu_mapped) {
      // Only the caller's own memory can be looked at; another owner's pins as it maps.
      if (dma.owner == call.caller.pid) {
        const u64 accessible = call.env->dma_accessible(dma.vaddr, dma.size, dma.prot);
        if (accessible < dma.size) {
          return reject(call, EFAULT, "group {}: pinning mapping {:#x}..{:#x} for the new "
                        "domain: no {} access at vaddr {:#x}", g.id(), dma.iova, dma.last(),
                        (dma.prot & iommu::kProtWrite) ? "writable" : "readable",
                        dma.vaddr + accessible);
        }
      }
      pinned.push_back(&dma);  // before the charge, which cannot be undone if this throws
      Status charged = emu_.locked_memory().charge(dma.owner, dma.size, limit, dma.lock_cap);
      if (!charged) {
        return reject(call, ENOMEM, "group {}: pinning mapping {:#x}..{:#x} for the new domain: "
                      "RLIMIT_MEMLOCK {:#x} exceeded", g.id(), dma.iova, dma.last(), limit);
      }
      dma.locked = dma.size;
    }
    const u64 output = dma.iommu_mapped ? dma.output : dma.vaddr;
    auto r = fresh.hw->map(dma.iova, output, dma.size, dma.prot | iommu::kProtCache);
    if (!r) {
      // `fresh` goes away with its tables; `unwind` gives back what was pinned
      return reject(call, r.error(), "container {}: group {}: replaying {:#x}..{:#x} into the "
                    "new domain failed{}", container_.id(), g.id(), dma.iova, dma.last(),
                    table_limit_note(r.error()));
    }
  }
  unwind.cancel();
  for (Type1Dma* dma : pinned) dma->output = dma->vaddr;
  for (auto& [iova, dma] : dmas_) dma.iommu_mapped = true;
  return {};
}

void Type1Driver::detach_group(Group& g) {
  auto it = std::find(emulated_.begin(), emulated_.end(), &g);
  if (it != emulated_.end()) {
    emulated_.erase(it);
  } else {
    for (auto d = domains_.begin(); d != domains_.end(); ++d) {
      auto gi = std::find(d->groups.begin(), d->groups.end(), &g);
      if (gi == d->groups.end()) continue;
      d->groups.erase(gi);
      if (d->groups.empty()) domains_.erase(d);  // the domain and its tables go
      break;
    }
  }
  if (domains_.empty()) {
    if (emulated_.empty()) {
      while (!dmas_.empty()) remove_dma(dmas_.begin());  // vfio_iommu_unmap_unpin_all
    } else {
      for (auto& [iova, dma] : dmas_) {  // still recorded for the emulated groups, unpinned
        emu_.locked_memory().uncharge(dma.owner, dma.locked);
        dma.locked = 0;
        dma.iommu_mapped = false;
      }
    }
  }
  std::vector<const iommu::Domain*> doms;
  std::vector<Group*> groups;
  for (const auto& d : domains_) {
    doms.push_back(d.domain->hw.get());
    groups.insert(groups.end(), d.groups.begin(), d.groups.end());
  }
  iova_list_ = build_iova_list(doms, groups);
  recompute_pgsize_bitmap();
}

long Type1Driver::check_extension(u32 ext) const {
  // DMA_CC: 1 when every domain enforces coherency (VT-d with snoop control does); 1 with none.
  const bool dma_cc = std::all_of(domains_.begin(), domains_.end(), [](const DomainEntry& d) {
    return d.domain->unit->enforces_cache_coherency();
  });
  return type1_check_extension(ext, !has_emulated(), dma_cc);
}

Status Type1Driver::pin_and_map(IoctlCall& call, Type1Dma& dma) {
  const u64 pages = dma.size / kPageSize;
  const u64 accessible = call.env->dma_accessible(dma.vaddr, dma.size, dma.prot);
  const bool cap = dma.lock_cap;  // CAP_IPC_LOCK of the mapper, read once at MAP
  const u64 limit = call.env->memlock_limit();
  // Linux pins page by page: a page that cannot be pinned fails with EFAULT, a page over the
  // RLIMIT_MEMLOCK budget with ENOMEM; whichever page comes first decides.
  const u64 charged_pages = emu_.locked_memory().charged(dma.owner) / kPageSize;
  const u64 limit_pages = limit / kPageSize;
  const u64 budget = cap ? pages : (limit_pages > charged_pages ? limit_pages - charged_pages : 0);
  if (accessible < dma.size && accessible / kPageSize <= budget)
    return reject(call, EFAULT, "vaddr {:#x} size {:#x}: no {} access at {:#x}", dma.vaddr,
                  dma.size, (dma.prot & iommu::kProtWrite) ? "writable" : "readable",
                  dma.vaddr + accessible);
  Status charged = emu_.locked_memory().charge(dma.owner, dma.size, limit, cap);
  if (!charged)
    return reject(call, ENOMEM,
                  "vaddr {:#x} size {:#x}: RLIMIT_MEMLOCK {:#x} exceeded ({:#x} already locked)",
                  dma.vaddr, dma.size, limit, charged_pages * kPageSize);
  dma.locked = dma.size;
  for (size_t i = 0; i < domains_.size(); ++i) {
    auto r = domains_[i].domain->hw->map(dma.iova, dma.output, dma.size,
                                         dma.prot | iommu::kProtCache);
    if (!r) {
      for (size_t j = 0; j < i; ++j)
        (void)domains_[j].domain->hw->unmap(dma.iova, dma.last());
      emu_.locked_memory().uncharge(dma.owner, dma.locked);
      dma.locked = 0;
      return reject(call, r.error(), "iova {:#x} size {:#x}: domain {} map failed{}",
                    dma.iova, dma.size, domains_[i].domain->id, table_limit_note(r.error()));
    }
  }
  (void)pages;
  dma.iommu_mapped = true;
  return {};
}

void Type1Driver::unmap_from_domains(const Type1Dma& dma) {
  if (!dma.iommu_mapped) return;
  for (auto& d : domains_) (void)d.domain->hw->unmap(dma.iova, dma.last());
}

void Type1Driver::remove_dma(std::map<u64, Type1Dma>::iterator it) {
  Type1Dma& dma = it->second;
  unmap_from_domains(dma);
  if (dma.locked) emu_.locked_memory().uncharge(dma.owner, dma.locked);
  if (dma.vaddr_invalid) --vaddr_invalid_count_;
  dmas_.erase(it);
  ++dma_avail_;
}

// ---- VFIO_IOMMU_GET_INFO ---------------------------------------------------------------------

Result<long> Type1Driver::get_info(IoctlCall& call) {
  const auto info = call.ucmd_as<vfio_iommu_type1_info>();  // argsz >= minsz (ArgRule::kArgsz)

  // The capability chain, as vfio_info_cap_add builds it: each capability 8-byte aligned, in
  // the order MIGRATION, DMA_AVAIL, IOVA_RANGE; `next` offsets are relative to the chain start.
  std::vector<u8> caps;
  auto add_cap = [&](const void* cap, size_t size) {
    const size_t at = caps.size();
    if (at != 0) {
      vfio_info_cap_header* prev = nullptr;
      size_t off = 0;
      while (true) {  // find the last header and link it
        prev = reinterpret_cast<vfio_info_cap_header*>(caps.data() + off);
        if (prev->next == 0) break;
        off = prev->next;
      }
      prev->next = static_cast<u32>(at);
    }
    caps.resize(at + ((size + 7) & ~size_t{7}), 0);
    std::memcpy(caps.data() + at, cap, size);
  };
  vfio_iommu_type1_info_cap_migration mig{};
  mig.header.id = VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION;
  mig.header.version = 1;
  mig.flags = 0;
  mig.pgsize_bitmap = min_pgsize();
  mig.max_dirty_bitmap_size = kDirtyBitmapSizeMax;
  add_cap(&mig, sizeof(mig));
  vfio_iommu_type1_info_dma_avail avail{};
  avail.header.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
  avail.header.version = 1;
  avail.avail = dma_avail_;
  add_cap(&avail, sizeof(avail));
  if (!iova_list_.empty()) {
    std::vector<u8> buf(sizeof(vfio_iommu_type1_info_cap_iova_range) +
                        iova_list_.size() * sizeof(vfio_iova_range));
    auto* r = reinterpret_cast<vfio_iommu_type1_info_cap_iova_range*>(buf.data());
    r->header.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
    r->header.version = 1;
    r->nr_iovas = static_cast<u32>(iova_list_.size());
    auto* ranges = reinterpret_cast<vfio_iova_range*>(buf.data() + sizeof(*r));
    for (size_t i = 0; i < iova_list_.size(); ++i) {
      ranges[i].start = iova_list_[i].first;
      ranges[i].end = iova_list_[i].last;
    }
    add_cap(buf.data(), buf.size());
  }

  vfio_iommu_type1_info out{};
  out.argsz = info.argsz;
  out.flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
  out.iova_pgsizes = pgsize_bitmap_;
  const bool fits = info.argsz >= sizeof(vfio_iommu_type1_info) + caps.size();
  if (!fits) {
    out.argsz = static_cast<u32>(sizeof(vfio_iommu_type1_info) + caps.size());
  } else {
    for (size_t off = 0;;) {  // next offsets become relative to the info struct
      auto* h = reinterpret_cast<vfio_info_cap_header*>(caps.data() + off);
      const u32 next = h->next;
      if (next != 0) h->next = next + static_cast<u32>(sizeof(vfio_iommu_type1_info));
      if (next == 0) break;
      off = next;
    }
    out.cap_offset = sizeof(vfio_iommu_type1_info);
  }
  const size_t head = std::min<size_t>(info.argsz, sizeof(vfio_iommu_type1_info));
  TRY(call.mem->will_write(call.arg, head));
  if (fits) TRY(call.mem->will_write(call.arg + sizeof(vfio_iommu_type1_info), caps.size()));
  if (fits) TRY(call.mem->write(call.arg + sizeof(vfio_iommu_type1_info), caps.data(), caps.size()));
  TRY(call.mem->write(call.arg, &out, head));
  call.detail = fmt::format("argsz={:#x} pgsizes={:#x} iovas={}", info.argsz, pgsize_bitmap_,
                            iova_list_.size());
  return 0;
}

// ---- VFIO_IOMMU_MAP_DMA ----------------------------------------------------------------------

Result<long> Type1Driver::map_dma(IoctlCall& call) {
  vfio_iommu_type1_dma_map map;
  TRY(dma_map_argument(
      call, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR, &map));
  if (map.size == 0) return reject(call, EINVAL, "iova {:#x}: size is zero", map.iova);
  IovaRange in, user;
  if (!iommu::make_range(map.iova, map.size, &in) || !iommu::make_range(map.vaddr, map.size, &user))
    return reject(call, EOVERFLOW, "iova {:#x} vaddr {:#x} size {:#x} wraps", map.iova, map.vaddr,
                  map.size);
  const Prot prot = dma_map_prot(map.flags);
  const bool vaddr_update = map.flags & VFIO_DMA_MAP_FLAG_VADDR;
  if ((prot != 0 && vaddr_update) || (prot == 0 && !vaddr_update))
    return reject(call, EINVAL, "flags {:#x}: READ/WRITE needed, and not with VADDR", map.flags);

  const u64 pgsize = min_pgsize();
  if ((map.size | map.iova | map.vaddr) & (pgsize - 1))
    return reject(call, EINVAL, "iova {:#x} vaddr {:#x} size {:#x} not aligned to {:#x}",
                  map.iova, map.vaddr, map.size, pgsize);

  Type1Dma* existing = find_overlap(in.first, in.last);
  if (vaddr_update) {
    if (existing == nullptr)
      return reject(call, ENOENT, "iova {:#x} size {:#x}: no mapping to update", map.iova,
                    map.size);
    if (!existing->vaddr_invalid || existing->iova != map.iova || existing->size != map.size)
      return reject(call, EINVAL, "iova {:#x} size {:#x}: mapping {:#x}+{:#x} is {}", map.iova,
                    map.size, existing->iova, existing->size,
                    existing->vaddr_invalid ? "a different range" : "not invalidated");
    const bool lock_cap = call.env->capable(CAP_IPC_LOCK);
    if (existing->owner != call.caller.pid && existing->locked != 0) {
      // vfio_change_dma_owner: the pinned pages are now accounted to the caller.
      Status st = emu_.locked_memory().charge(call.caller.pid, existing->locked,
                                              call.env->memlock_limit(), lock_cap);
      if (!st)
        return reject(call, ENOMEM, "iova {:#x}: moving {:#x} locked bytes exceeds "
                      "RLIMIT_MEMLOCK", map.iova, existing->locked);
      emu_.locked_memory().uncharge(existing->owner, existing->locked);
    }
    existing->owner = call.caller.pid;
    existing->lock_cap = lock_cap;
    existing->vaddr = map.vaddr;
    existing->vaddr_invalid = false;
    --vaddr_invalid_count_;
    return 0;
  }
  if (existing != nullptr)
    return reject(call, EEXIST, "iova {:#x} size {:#x} overlaps mapping {:#x}+{:#x}", map.iova,
                  map.size, existing->iova, existing->size);
  if (dma_avail_ == 0)
    return reject(call, ENOSPC, "iova {:#x}: dma_entry_limit ({:#x}) mappings reached", map.iova,
                  emu_.limits().dma_entry_limit);
  if (!iova_list_.empty() && !contains(iova_list_, in.first, in.last))
    return reject(call, EINVAL, "iova {:#x}..{:#x} is not inside one valid IOVA range", in.first,
                  in.last);
  if (dirty_tracking_ && map.size / pgsize > u64{INT_MAX})
    return reject(call, EINVAL, "size {:#x}: too many pages for a dirty bitmap", map.size);

  Type1Dma dma;
  dma.iova = map.iova;
  dma.size = map.size;
  dma.vaddr = map.vaddr;
  dma.output = map.vaddr;
  dma.prot = prot;
  dma.owner = call.caller.pid;
  dma.lock_cap = call.env->capable(CAP_IPC_LOCK);
  // Recorded first: the record is the allocation that can fail, and it is simply dropped if
  // pinning or mapping fails.
  auto recorded = dmas_.emplace(dma.iova, dma).first;
  Cleanup unrecord([&] { dmas_.erase(recorded); });
  if (!domains_.empty()) TRY(pin_and_map(call, recorded->second));
  unrecord.cancel();
  --dma_avail_;
  return 0;
}

// ---- VFIO_IOMMU_UNMAP_DMA --------------------------------------------------------------------

Status Type1Driver::or_dirty_bits(IoctlCall& call, const Type1Dma& dma, u64 base_iova,
                                  u64 bitmap_addr, u64 pgsize) {
  // update_user_bitmap(): the mapping's bits are shifted into place, the first word is ORed with
  // what the user buffer already holds there, and whole words are written.
  const int pgshift = ffs64(pgsize);
  const u64 nbits = dma.size >> pgshift;
  const u64 bit0 = (dma.iova - base_iova) >> pgshift;
  const u64 copy_offset = (bit0 / 64) * 8;
  const unsigned shift = static_cast<unsigned>(bit0 % 64);
  // No device does DMA yet: a mapping the IOMMU maps is all dirty, an emulated one is clean.
  const bool all_dirty = dma.iommu_mapped && !domains_.empty();
  std::vector<u64> words((nbits + shift + 63) / 64, 0);
  if (all_dirty) {
    for (u64 b = shift; b < shift + nbits; ++b) words[b / 64] |= u64{1} << (b % 64);
  }
  if (shift != 0) {
    u64 leftover = 0;
    TRY(call.mem->read(bitmap_addr + copy_offset, &leftover, sizeof(leftover)));
    words[0] |= leftover & ((u64{1} << shift) - 1);
  }
  return call.mem->write(bitmap_addr + copy_offset, words.data(), words.size() * 8);
}

Result<long> Type1Driver::unmap_dma(IoctlCall& call) {
  constexpr u32 minsz = offsetof(vfio_iommu_type1_dma_unmap, size) + 8;  // 24
  vfio_iommu_type1_dma_unmap unmap;
  TRY(dma_unmap_argument(call,
                         VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR |
                             VFIO_DMA_UNMAP_FLAG_ALL,
                         &unmap));
  const bool want_bitmap = unmap.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
  const bool all = unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL;
  const bool invalidate_vaddr = unmap.flags & VFIO_DMA_UNMAP_FLAG_VADDR;
  if (want_bitmap && (all || invalidate_vaddr))
    return reject(call, EINVAL, "flags {:#x}: GET_DIRTY_BITMAP with ALL or VADDR", unmap.flags);
  vfio_bitmap bitmap{};
  if (want_bitmap) {
    if (unmap.argsz < minsz + sizeof(vfio_bitmap))
      return reject(call, EINVAL, "argsz {:#x} too small for the bitmap", unmap.argsz);
    TRY(call.mem->read(call.arg + minsz, &bitmap, sizeof(bitmap)));
    if (!access_ok(bitmap.data, bitmap.size))
      return reject(call, EINVAL, "bitmap data {:#x} size {:#x} is not user memory",
                    reinterpret_cast<u64>(bitmap.data), bitmap.size);
    if (bitmap.pgsize == 0 ||
        !bitmap_size_ok(unmap.size >> ffs64(bitmap.pgsize), bitmap.size))
      return reject(call, EINVAL, "bitmap pgsize {:#x} size {:#x} cannot hold size {:#x}",
                    bitmap.pgsize, bitmap.size, unmap.size);
  }

  if (invalidate_vaddr && has_emulated())
    return reject(call, EBUSY, "VADDR with emulated groups in the container");
  const u64 pgsize = min_pgsize();
  if (unmap.iova & (pgsize - 1))
    return reject(call, EINVAL, "iova {:#x} not aligned to {:#x}", unmap.iova, pgsize);
  u64 iova_end;
  if (all) {
    if (unmap.iova != 0 || unmap.size != 0)
      return reject(call, EINVAL, "ALL needs iova and size 0 (iova {:#x} size {:#x})", unmap.iova,
                    unmap.size);
    iova_end = iommu::kU64Max;
  } else {
    if (unmap.size == 0 || (unmap.size & (pgsize - 1)))
      return reject(call, EINVAL, "size {:#x} zero or not aligned to {:#x}", unmap.size, pgsize);
    if (__builtin_add_overflow(unmap.iova, unmap.size - 1, &iova_end))
      return reject(call, EOVERFLOW, "iova {:#x} + size {:#x} wraps", unmap.iova, unmap.size);
  }
  if (want_bitmap && (!dirty_tracking_ || bitmap.pgsize != pgsize))
    return reject(call, EINVAL, "dirty bitmap: tracking {} / pgsize {:#x} (need {:#x})",
                  dirty_tracking_ ? "on" : "off", bitmap.pgsize, pgsize);
  if (v2_ && !all) TRY(check_no_bisect(call, unmap.iova, iova_end));  // v2 never bisects

  // Everything that can be refused has been; announce the writes before changing anything.
  TRY(call.mem->will_write(call.arg, minsz));
  if (want_bitmap) TRY(call.mem->will_write(reinterpret_cast<u64>(bitmap.data), bitmap.size));

  // The first mapping that ends at or after iova (vfio_find_dma_first_node).
  auto it = dmas_.upper_bound(unmap.iova);
  if (it != dmas_.begin() && std::prev(it)->second.last() >= unmap.iova) --it;
  u64 unmapped = 0;
  Status status;
  std::vector<Type1Dma*> invalidated;
  while (it != dmas_.end() && it->second.iova <= iova_end) {
    Type1Dma& dma = it->second;
    // v1 stops at a mapping that starts before iova: success, possibly with size 0.
    if (!v2_ && unmap.iova > dma.iova) break;
    if (invalidate_vaddr) {
      if (dma.vaddr_invalid) {
        for (Type1Dma* d : invalidated) {
          d->vaddr_invalid = false;
          --vaddr_invalid_count_;
        }
        return reject(call, EINVAL, "VADDR: mapping {:#x}+{:#x} is already invalid", dma.iova,
                      dma.size);
      }
      dma.vaddr_invalid = true;
      ++vaddr_invalid_count_;
      invalidated.push_back(&dma);
      unmapped += dma.size;
      ++it;
      continue;
    }
    if (want_bitmap) {
      status = or_dirty_bits(call, dma, unmap.iova, reinterpret_cast<u64>(bitmap.data), pgsize);
      if (!status) break;  // like Linux: what was removed so far stays removed
    }
    unmapped += dma.size;
    remove_dma(it++);
  }
  if (!status) return Err{status.error()};
  unmap.size = unmapped;
  call.detail += fmt::format(" -> unmapped={:#x}", unmapped);
  TRY(call.mem->write(call.arg, &unmap, minsz));
  return 0;
}

// ---- VFIO_IOMMU_DIRTY_PAGES ------------------------------------------------------------------

Result<long> Type1Driver::dirty_pages(IoctlCall& call) {
  if (!v2_) return reject(call, EACCES, "dirty tracking needs a type1v2 container");
  constexpr u32 minsz = offsetof(vfio_iommu_type1_dirty_bitmap, flags) + 4;  // 8
  TRY(read_argsz_struct(call, minsz));
  const auto db = call.ucmd_as<vfio_iommu_type1_dirty_bitmap>();
  constexpr u32 mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
                       VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
  call.detail = fmt::format("flags={:#x}", db.flags);
  if (db.flags & ~mask) return reject(call, EINVAL, "flags {:#x}", db.flags);
  if (__builtin_popcount(db.flags) != 1)
    return reject(call, EINVAL, "flags {:#x}: exactly one of START/STOP/GET_BITMAP", db.flags);
  const u64 pgsize = min_pgsize();
  if (db.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
    if (dirty_tracking_) return 0;
    for (const auto& [iova, dma] : dmas_)
      if (dma.size / pgsize > u64{INT_MAX})
        return reject(call, EINVAL, "mapping {:#x}+{:#x} has too many pages", dma.iova, dma.size);
    dirty_tracking_ = true;
    return 0;
  }
  if (db.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
    dirty_tracking_ = false;
    return 0;
  }
  if (db.argsz - minsz < sizeof(vfio_iommu_type1_dirty_bitmap_get))
    return reject(call, EINVAL, "argsz {:#x} too small for the range", db.argsz);
  vfio_iommu_type1_dirty_bitmap_get range{};
  TRY(call.mem->read(call.arg + minsz, &range, sizeof(range)));
  call.detail += fmt::format(" iova={:#x} size={:#x} pgsize={:#x}", range.iova, range.size,
                             range.bitmap.pgsize);
  if (range.size == 0) return reject(call, EINVAL, "size is zero");
  u64 iova_end;
  if (__builtin_add_overflow(range.iova, range.size - 1, &iova_end))
    return reject(call, EOVERFLOW, "iova {:#x} + size {:#x} wraps", range.iova, range.size);
  const u64 data = reinterpret_cast<u64>(range.bitmap.data);
  if (!access_ok(data, range.bitmap.size))
    return reject(call, EINVAL, "bitmap data {:#x} size {:#x} is not user memory", data,
                  range.bitmap.size);
  if (range.bitmap.pgsize == 0 ||
      !bitmap_size_ok(range.size >> ffs64(range.bitmap.pgsize), range.bitmap.size))
    return reject(call, EINVAL, "bitmap size {:#x} cannot hold size {:#x}", range.bitmap.size,
                  range.size);
  if (range.bitmap.pgsize != pgsize)
    return reject(call, EINVAL, "bitmap pgsize {:#x} is not {:#x}", range.bitmap.pgsize, pgsize);
  if (range.iova & (pgsize - 1))
    return reject(call, EINVAL, "iova {:#x} not aligned to {:#x}", range.iova, pgsize);
  if (range.size & (pgsize - 1))
    return reject(call, EINVAL, "size {:#x} not aligned to {:#x}", range.size, pgsize);
  if (!dirty_tracking_) return reject(call, EINVAL, "dirty tracking is not started");
  TRY(check_no_bisect(call, range.iova, iova_end));
  TRY(call.mem->will_write(data, range.bitmap.size));
  for (auto it = dmas_.lower_bound(range.iova); it != dmas_.end() && it->second.iova <= iova_end;
       ++it)
    TRY(or_dirty_bits(call, it->second, range.iova, data, pgsize));
  return 0;
}

}  // namespace vfio_emu::core
