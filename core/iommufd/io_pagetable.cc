// The IO page table: drivers/iommu/iommufd/io_pagetable.c and the pinning side of pages.c, with
// Linux's order of checks.
#include "core/iommufd/io_pagetable.h"

#include <fmt/core.h>
#include <linux/capability.h>

#include <algorithm>
#include <atomic>

#include "core/cleanup.h"
#include "core/locked_memory.h"
#include "core/table_limit_note.h"

namespace vfio_emu::core::iopt {

namespace {

std::atomic<u64> next_area_id{1};

u64 count(const IovaList& l) {
  u64 n = 0;
  for (const IovaRange& r : l) n += r.last - r.first + 1;
  return n;
}

u64 roundup_pow_of_two(u64 v) { return v <= 1 ? 1 : u64{1} << (64 - __builtin_clzll(v - 1)); }

// __alloc_iova_check_range: the first address at or above *start that is aligned (with the user
// VA's page offset kept) and leaves `length` bytes up to `last`.
bool alloc_check_range(u64* start, u64 last, u64 length, u64 alignment, u64 page_offset) {
  u64 aligned;
  if (__builtin_add_overflow(*start, alignment - 1, &aligned)) return false;
  aligned &= ~(alignment - 1);
  aligned |= page_offset;
  if (aligned >= last || last - aligned < length - 1) return false;
  *start = aligned;
  return true;
}

std::string_view access_name(bool writable) { return writable ? "writable" : "readable"; }

// Err{e}, with why in *why for the log line of the handler that asked (see io_pagetable.h).
template <class... A>
Err refuse(std::string* why, int e, fmt::format_string<A...> f, A&&... args) {
  if (why != nullptr) *why = fmt::format(f, std::forward<A>(args)...);
  return Err{e};
}

}  // namespace

pid_t user_account_key(uid_t uid) { return -1 - static_cast<pid_t>(uid & 0x7fffffffu); }

Result<std::shared_ptr<Pages>> alloc_user_pages(LockedMemory& locked, const Pinner& who,
                                                bool account_per_process, u64 user_va,
                                                u64 length, bool writable, std::string* why) {
  u64 end;
  if (__builtin_add_overflow(user_va, length, &end))
    return refuse(why, EOVERFLOW, "user_va {:#x} + length {:#x} wraps", user_va, length);
  // The iommu API uses size_t lengths, and DIV_ROUND_UP below must not overflow.
  if (length > kU64Max - kPageSize || length == 0)
    return refuse(why, EINVAL, "length {:#x} is zero or too large", length);
  AccountMode mode = AccountMode::kNone;
  if (!who.env->capable(CAP_IPC_LOCK))
    mode = account_per_process ? AccountMode::kMm : AccountMode::kUser;
  const u64 uptr = user_va & ~(kPageSize - 1);
  const u64 span = length + (user_va - uptr);
  const u64 npages = span / kPageSize + (span % kPageSize != 0);
  return std::make_shared<Pages>(locked, uptr, npages, writable, mode, who.pid, who.uid,
                                 who.env->memlock_limit());
}

IovaList merge_ranges(std::vector<IovaRange> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const IovaRange& a, const IovaRange& b) { return a.first < b.first; });
  IovaList out;
  for (const IovaRange& r : ranges) {
    if (!out.empty() && (out.back().last == kU64Max || r.first <= out.back().last + 1)) {
      out.back().last = std::max(out.back().last, r.last);
      continue;
    }
    out.push_back(r);
  }
  return out;
}

// ---- Pages -------------------------------------------------------------------------------------

Pages::Pages(LockedMemory& locked, u64 uptr_, u64 npages_, bool writable_, AccountMode mode,
             pid_t pid, uid_t uid, u64 memlock_limit)
    : uptr(uptr_),
      npages(npages_),
      writable(writable_),
      account(mode),
      source_pid(pid),
      source_uid(uid),
      locked_(locked),
      memlock_limit_(memlock_limit) {}

Pages::~Pages() {
  if (charged_pages_ != 0) locked_.uncharge(account_key(), charged_pages_ * kPageSize);
}

pid_t Pages::account_key() const {
  return account == AccountMode::kUser ? user_account_key(source_uid) : source_pid;
}

IovaList Pages::pinned_union() const {
  std::vector<IovaRange> v;
  for (const auto& [holder, r] : holders_) v.push_back(r);
  return merge_ranges(std::move(v));
}

u64 Pages::pinned_pages() const {
  std::lock_guard lock(mu_);
  return count(pinned_union());
}

Status Pages::pin(u64 holder, IovaRange pages, const Pinner& who, std::string* why) {
  std::lock_guard lock(mu_);
  const IovaList before = pinned_union();
  holders_[holder] = pages;
  Cleanup forget([&] { holders_.erase(holder); });
  IovaList newly = pinned_union();
  for (const IovaRange& r : before) newly = subtract(newly, r);
  // pin_user_pages() of the source mm: only the caller's own mappings can be seen from here, so
  // a pin on behalf of another process (an fd passed to it) is not checked.
  const bool own = who.env != nullptr && who.pid == source_pid;
  for (const IovaRange& r : newly) {
    if (!own) break;
    const u64 addr = uptr + r.first * kPageSize;
    const u64 len = (r.last - r.first + 1) * kPageSize;
    u64 end;
    // pin_user_pages(): a device's BAR mapping (VM_PFNMAP) cannot be pinned either.
    const u64 ok = __builtin_add_overflow(addr, len, &end) ? 0 : who.env->dma_pinnable(
                                                                   addr, len,
                                                                   writable ? iommu::kProtWrite
                                                                            : iommu::kProtRead);
    if (ok < len) {
      return refuse(why, EFAULT,
                    "pinning vaddr {:#x} size {:#x}: no pinnable {} mapping at {:#x} (a hole, "
                    "the wrong access, or a device BAR)", addr, len, access_name(writable),
                    addr + ok);
    }
  }
  const u64 delta = count(newly);
  if (account != AccountMode::kNone && delta != 0) {
    const u64 limit = own ? who.env->memlock_limit() : memlock_limit_;
    Status st = locked_.charge(account_key(), delta * kPageSize, limit, false);
    if (!st) {
      return refuse(why, ENOMEM,
                    "pinning {:#x} pages of vaddr {:#x}: RLIMIT_MEMLOCK {:#x} exceeded ({:#x} "
                    "bytes locked {})", delta, uptr, limit, locked_.charged(account_key()),
                    account == AccountMode::kUser ? "by the user" : "by the process");
    }
  }
  forget.cancel();
  charged_pages_ += delta;
  return {};
}

void Pages::unpin(u64 holder) {
  std::lock_guard lock(mu_);
  if (holders_.erase(holder) == 0) return;
  const u64 now = count(pinned_union());
  const u64 freed = charged_pages_ - now;
  charged_pages_ = now;
  if (account != AccountMode::kNone && freed != 0)
    locked_.uncharge(account_key(), freed * kPageSize);
}

void Pages::split(u64 holder, u64 lhs, IovaRange lhs_pages, u64 rhs, IovaRange rhs_pages) {
  std::lock_guard lock(mu_);
  if (holders_.erase(holder) == 0) return;
  holders_[lhs] = lhs_pages;
  holders_[rhs] = rhs_pages;
}

// ---- IoPagetable -------------------------------------------------------------------------------

IoPagetable::~IoPagetable() {
  for (auto& [iova, a] : areas_) unfill(a);
  areas_.clear();
}

IovaList IoPagetable::usable_ranges() const {
  std::vector<IovaRange> v;
  for (const Reserved& r : reserved_) v.push_back(r.range);
  IovaList out{IovaRange{0, kU64Max}};
  for (const IovaRange& r : merge_ranges(std::move(v))) out = subtract(out, r);
  return out;
}

const Area* IoPagetable::area_overlapping(u64 first, u64 last) const {
  auto it = areas_.upper_bound(first);
  if (it != areas_.begin() && std::prev(it)->second.last >= first) return &std::prev(it)->second;
  if (it != areas_.end() && it->second.iova <= last) return &it->second;
  return nullptr;
}

bool IoPagetable::reserved_overlaps(u64 first, u64 last) const {
  return std::any_of(reserved_.begin(), reserved_.end(), [&](const Reserved& r) {
    return r.range.overlaps(IovaRange{first, last});
  });
}

IovaList IoPagetable::used_in(u64 first, u64 last) const {
  std::vector<IovaRange> v;
  const IovaRange window{first, last};
  for (const Reserved& r : reserved_)
    if (r.range.overlaps(window)) v.push_back(r.range);
  for (auto it = areas_.lower_bound(first); it != areas_.end() && it->second.iova <= last; ++it)
    v.push_back(IovaRange{it->second.iova, it->second.last});
  if (auto it = areas_.lower_bound(first); it != areas_.begin()) {
    const Area& a = std::prev(it)->second;
    if (a.last >= first) v.push_back(IovaRange{a.iova, a.last});
  }
  return intersect(merge_ranges(std::move(v)), window);
}

Result<u64> IoPagetable::alloc_iova(u64 addr, u64 length, std::string* why) const {
  const u64 page_offset = addr % kPageSize;
  // Protect roundup_pow_of_two() from overflow.
  if (length == 0 || length >= kU64Max / 2)
    return refuse(why, EOVERFLOW, "length {:#x}: too large for automatic IOVA", length);
  // Keep the alignment the user VA has, which helps huge pages.
  u64 alignment = roundup_pow_of_two(length);
  if (addr != 0) alignment = std::min(alignment, u64{1} << __builtin_ctzll(addr));
  if (alignment >= kHugePageSize) alignment = kHugePageSize;
  if (alignment < iova_alignment_)
    return refuse(why, EINVAL, "user_va {:#x} length {:#x}: alignment {:#x} below the IOAS's "
                  "{:#x}", addr, length, alignment, iova_alignment_);

  // The allowed spans within [PAGE_SIZE, ULONG_MAX - PAGE_SIZE]: IOVA 0 is never returned.
  const IovaRange space{kPageSize, kU64Max - kPageSize};
  const IovaList spans =
      allowed_.empty() ? IovaList{space} : intersect(merge_ranges(allowed_), space);
  for (IovaRange span : spans) {
    if (!alloc_check_range(&span.first, span.last, length, alignment, page_offset)) continue;
    // The holes of (reserved + areas) in the span, lowest first: the first that fits wins.
    auto fits = [&](u64 first, u64 last, u64* at) {
      if (!alloc_check_range(&first, last, length, alignment, page_offset)) return false;
      *at = first;
      return true;
    };
    u64 at = 0;
    u64 cur = span.first;
    bool tail = true;
    for (const IovaRange& used : used_in(span.first, span.last)) {
      if (used.first > cur && fits(cur, used.first - 1, &at)) return at;
      if (used.last == span.last) {
        tail = false;
        break;
      }
      cur = used.last + 1;
    }
    if (tail && fits(cur, span.last, &at)) return at;
  }
  return refuse(why, ENOSPC, "no free IOVA for length {:#x} (alignment {:#x})", length,
                alignment);
}

Status IoPagetable::check_iova(u64 iova, u64 length, std::string* why) const {
  if (iova & (iova_alignment_ - 1))
    return refuse(why, EINVAL, "iova {:#x} not aligned to {:#x}", iova, iova_alignment_);
  u64 last;
  if (__builtin_add_overflow(iova, length - 1, &last))
    return refuse(why, EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  if (reserved_overlaps(iova, last))
    return refuse(why, EINVAL, "iova {:#x}..{:#x} meets a reserved range", iova, last);
  if (const Area* a = area_overlapping(iova, last))
    return refuse(why, EEXIST, "iova {:#x}..{:#x} overlaps the mapping {:#x}..{:#x}", iova, last,
                  a->iova, a->last);
  return {};
}

Status IoPagetable::map_into(iommu::Domain& d, const Area& a, std::string* why) const {
  const Prot prot = a.prot | iommu::kProtCache;
  if (!disable_large_pages_) {
    auto r = d.map(a.iova, a.user_va(), a.length(), prot);
    if (!r)
      return refuse(why, r.error(), "iova {:#x} length {:#x} vaddr {:#x}: the IOMMU domain "
                    "refused the map{}", a.iova, a.length(), a.user_va(),
                    table_limit_note(r.error()));
    return {};
  }
  // batch_iommu_map_small(): PAGE_SIZE at a time, so that any page can be unmapped alone.
  for (u64 off = 0; off < a.length(); off += kPageSize) {
    auto r = d.map(a.iova + off, a.user_va() + off, kPageSize, prot);
    if (!r) {
      if (off != 0) (void)d.unmap(a.iova, a.iova + off - 1);
      return refuse(why, r.error(), "iova {:#x} vaddr {:#x}: the IOMMU domain refused the "
                    "map{}", a.iova + off, a.user_va() + off, table_limit_note(r.error()));
    }
  }
  return {};
}

Status IoPagetable::fill(const Pinner& who, const Area& a, std::string* why) {
  if (domains_.empty()) return {};  // a lazy reference: nothing is pinned without a domain
  TRY(a.pages->pin(a.id, a.page_indexes(), who, why));
  size_t mapped = 0;
  Cleanup undo([&] {
    for (size_t j = 0; j < mapped; ++j) (void)domains_[j]->unmap(a.iova, a.last);
    a.pages->unpin(a.id);
  });
  for (iommu::Domain* d : domains_) {
    TRY(map_into(*d, a, why));
    ++mapped;
  }
  undo.cancel();
  return {};
}

void IoPagetable::unfill(const Area& a) {
  if (domains_.empty()) return;
  for (iommu::Domain* d : domains_) (void)d->unmap(a.iova, a.last);
  a.pages->unpin(a.id);
}

Status IoPagetable::check_room(u64 more, std::string* why) const {
  if (areas_.size() + more > max_areas_)
    return refuse(why, ENOMEM, "{:#x} more mapping(s) on the IOAS's {:#x} would pass the limit "
                  "{:#x} (ioas_mappings)", more, areas_.size(), max_areas_);
  return {};
}

Status IoPagetable::map(const Pinner& who, const std::vector<Slice>& slices, u64 length,
                        u64* iova, Prot prot, bool alloc, std::string* why) {
  // iopt_alloc_area_pages allocates the areas before it looks at the IOVA.
  TRY(check_room(slices.size(), why));
  if ((length & (iova_alignment_ - 1)) || length == 0)
    return refuse(why, EINVAL, "length {:#x} zero or not aligned to {:#x}", length,
                  iova_alignment_);
  u64 at = *iova;
  if (alloc) {
    at = TRY(alloc_iova(slices.front().pages->uptr + slices.front().start_byte, length, why));
  } else {
    TRY(check_iova(at, length, why));
  }
  // iopt_insert_area for each slice, back to back. The areas join areas_ at the end by moving
  // their nodes (std::map::merge allocates nothing), so nothing can fail after they are filled.
  std::map<u64, Area> fresh;
  u64 cur = at;
  for (const Slice& s : slices) {
    if ((prot & iommu::kProtWrite) && !s.pages->writable)
      return refuse(why, EPERM, "iova {:#x}: write access to pages mapped read-only", cur);
    if ((s.start_byte % kPageSize) & (iova_alignment_ - 1))
      return refuse(why, EINVAL, "vaddr {:#x}: page offset not aligned to {:#x}",
                    s.pages->uptr + s.start_byte, iova_alignment_);
    Area a;
    a.id = next_area_id.fetch_add(1);
    a.iova = cur;
    if (__builtin_add_overflow(cur, s.length - 1, &a.last))
      return refuse(why, EOVERFLOW, "iova {:#x} + length {:#x} wraps", cur, s.length);
    a.pages = s.pages;
    a.start_byte = s.start_byte;
    a.prot = prot;
    fresh.emplace(a.iova, std::move(a));
    cur += s.length;
  }
  std::vector<const Area*> filled;
  filled.reserve(fresh.size());
  Cleanup unfill_all([&] {
    for (const Area* a : filled) unfill(*a);
  });
  for (const auto& [area_iova, a] : fresh) {
    TRY(fill(who, a, why));
    filled.push_back(&a);
  }
  unfill_all.cancel();
  areas_.merge(fresh);
  *iova = at;
  return {};
}

Status IoPagetable::map_user_pages(LockedMemory& locked, const Pinner& who,
                                   bool account_per_process, u64 user_va, u64 length, u64* iova,
                                   Prot prot, bool alloc_iova, std::string* why) {
  auto pages = TRY(alloc_user_pages(locked, who, account_per_process, user_va, length,
                                    prot & iommu::kProtWrite, why));
  const std::vector<Slice> slices{Slice{pages, user_va - pages->uptr, length}};
  return map(who, slices, length, iova, prot, alloc_iova, why);
}

Status IoPagetable::unmap(u64 first, u64 last, u64* unmapped, std::string* why) {
  *unmapped = 0;
  while (const Area* a = area_overlapping(first, last)) {
    if (a->iova < first || a->last > last)
      return refuse(why, ENOENT, "range {:#x}..{:#x} would split the mapping {:#x}..{:#x} "
                    "({:#x} bytes unmapped before it)", first, last, a->iova, a->last,
                    *unmapped);
    const u64 iova = a->iova;
    *unmapped += a->length();
    unfill(*a);
    areas_.erase(iova);
  }
  return {};
}

Result<std::vector<Slice>> IoPagetable::get_pages(u64 iova, u64 length, std::string* why) const {
  if (length == 0) return refuse(why, EINVAL, "length is zero");
  u64 last;
  if (__builtin_add_overflow(iova, length - 1, &last))
    return refuse(why, EOVERFLOW, "src_iova {:#x} + length {:#x} wraps", iova, length);
  std::vector<Slice> out;
  for (u64 cur = iova;;) {
    const Area* a = area_overlapping(cur, cur);
    if (a == nullptr)
      return refuse(why, ENOENT, "source {:#x}..{:#x}: nothing mapped at {:#x}", iova, last, cur);
    const u64 end = std::min(last, a->last);
    out.push_back(Slice{a->pages, a->start_byte_at(cur), end - cur + 1});
    if (end == last) break;
    cur = end + 1;
  }
  return out;
}

Status IoPagetable::set_allowed(IovaList allowed, std::string* why) {
  for (const IovaRange& r : allowed)
    if (reserved_overlaps(r.first, r.last))
      return refuse(why, EADDRINUSE, "allowed range {:#x}..{:#x} meets a reserved range",
                    r.first, r.last);
  allowed_ = std::move(allowed);
  return {};
}

Status IoPagetable::reserve(IovaRange r, const void* owner, std::string_view what,
                            std::string* why) {
  if (const Area* a = area_overlapping(r.first, r.last))
    return refuse(why, EADDRINUSE, "{} {:#x}..{:#x} meets the mapping {:#x}..{:#x}", what,
                  r.first, r.last, a->iova, a->last);
  if (overlaps(allowed_, r.first, r.last))
    return refuse(why, EADDRINUSE, "{} {:#x}..{:#x} meets an allowed IOVA range", what, r.first,
                  r.last);
  reserved_.push_back(Reserved{r, owner});
  return {};
}

void IoPagetable::remove_reserved(const void* owner) {
  reserved_.erase(std::remove_if(reserved_.begin(), reserved_.end(),
                                 [&](const Reserved& r) { return r.owner == owner; }),
                  reserved_.end());
}

Status IoPagetable::check_alignment(u64 alignment, std::string* why) const {
  const u64 mask = alignment - 1;
  for (const auto& [iova, a] : areas_)
    if ((a.iova & mask) || (a.length() & mask) || (a.page_offset() & mask))
      return refuse(why, EADDRINUSE, "mapping {:#x}..{:#x} (vaddr {:#x}) is not aligned to "
                    "{:#x}", a.iova, a.last, a.user_va(), alignment);
  return {};
}

u64 IoPagetable::computed_alignment() const {
  u64 alignment = disable_large_pages_ ? kPageSize : 1;
  for (const iommu::Domain* d : domains_)
    alignment = std::max(alignment, iommu::min_page_size(d->page_sizes()));
  return alignment;
}

Status IoPagetable::add_domain(const Pinner& who, iommu::Domain& d, const void* owner,
                               std::string* why) {
  const u64 alignment = std::max(iommu::min_page_size(d.page_sizes()), iova_alignment_);
  if (alignment > kPageSize)
    return refuse(why, EINVAL, "the domain's smallest page {:#x} is above PAGE_SIZE", alignment);
  if (alignment != iova_alignment_) TRY(check_alignment(alignment, why));
  // No area may lie outside the domain's aperture.
  IovaList outside{IovaRange{0, kU64Max}};
  for (const IovaRange& r : d.aperture()) outside = subtract(outside, r);
  const bool first = domains_.empty();
  std::vector<const Area*> done;
  done.reserve(areas_.size());
  domains_.reserve(domains_.size() + 1);  // nothing can fail once the areas are in
  Cleanup undo([&] {
    for (const Area* a : done) {
      (void)d.unmap(a->iova, a->last);
      if (first) a->pages->unpin(a->id);
    }
    remove_reserved(owner);
  });
  for (const IovaRange& r : outside) TRY(reserve(r, owner, "IOVA outside the aperture", why));
  for (const auto& [iova, a] : areas_) {
    if (first) TRY(a.pages->pin(a.id, a.page_indexes(), who, why));
    Cleanup unpin([&, &a = a] {
      if (first) a.pages->unpin(a.id);
    });
    TRY(map_into(d, a, why));
    unpin.cancel();
    done.push_back(&a);
  }
  undo.cancel();
  iova_alignment_ = alignment;
  domains_.push_back(&d);
  return {};
}

void IoPagetable::remove_domain(iommu::Domain& d, const void* owner) {
  auto it = std::find(domains_.begin(), domains_.end(), &d);
  if (it == domains_.end()) return;
  domains_.erase(it);
  for (const auto& [iova, a] : areas_) {
    (void)d.unmap(a.iova, a.last);
    if (domains_.empty()) a.pages->unpin(a.id);
  }
  remove_reserved(owner);
  iova_alignment_ = computed_alignment();
}

Status IoPagetable::disable_large_pages(std::string* why) {
  if (disable_large_pages_) return {};
  if (!domains_.empty() && !areas_.empty())
    return refuse(why, EINVAL, "large pages cannot be disabled: domains already have mappings");
  disable_large_pages_ = true;
  const u64 alignment = computed_alignment();
  if (alignment > iova_alignment_) {
    Status st = check_alignment(alignment, why);
    if (!st) {
      disable_large_pages_ = false;
      return st;
    }
  }
  iova_alignment_ = alignment;
  return {};
}

void IoPagetable::enable_large_pages() {
  disable_large_pages_ = false;
  iova_alignment_ = computed_alignment();
}

u64 IoPagetable::areas_added_by_cut(u64 at) const {
  const Area* found = area_overlapping(at, at);
  return found != nullptr && at != found->iova && at != found->last ? 1 : 0;
}

Status IoPagetable::cut(u64 at, std::string* why) {
  const Area* found = area_overlapping(at, at);
  if (found == nullptr || at == found->iova || at == found->last) return {};
  const Area a = *found;
  const u64 new_start = at + 1;
  if ((new_start & (iova_alignment_ - 1)) || (a.start_byte_at(new_start) & (iova_alignment_ - 1)))
    return refuse(why, EINVAL, "cannot split the mapping {:#x}..{:#x} after {:#x}: not aligned "
                  "to {:#x}", a.iova, a.last, at, iova_alignment_);
  // A domain could have used a huge page across the cut.
  if (!domains_.empty() && !disable_large_pages_)
    return refuse(why, EINVAL, "cannot split the mapping {:#x}..{:#x}: large pages are enabled",
                  a.iova, a.last);
  TRY(check_room(1, why));  // iopt_area_split: two new areas for the old one
  Area lhs = a;
  lhs.id = next_area_id.fetch_add(1);
  lhs.last = at;
  Area rhs = a;
  rhs.id = next_area_id.fetch_add(1);
  rhs.iova = new_start;
  rhs.start_byte = a.start_byte_at(new_start);
  if (!domains_.empty())
    a.pages->split(a.id, lhs.id, lhs.page_indexes(), rhs.id, rhs.page_indexes());
  areas_.erase(a.iova);
  areas_.emplace(lhs.iova, std::move(lhs));
  areas_.emplace(rhs.iova, std::move(rhs));
  return {};
}

}  // namespace vfio_emu::core::iopt
