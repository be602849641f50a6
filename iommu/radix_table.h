// A generic multi-level radix page table: the walk, lazy allocation, freeing of empty tables,
// superpage placement and splitting, translation and inspection. The hardware formats (VT-d
// second-level, POWER TCE) supply only their entry encoding and policy, as a Format class that
// satisfies RadixFormat below; hooks a format leaves out take the default said there, so a format
// defines only where its hardware differs.
//
// Addresses passed in are relative to the start of the table's span (the TCE window's bus
// offset is subtracted by the caller). The caller validates ranges against the aperture and
// alignment; this class enforces only what the table itself can see (conflicts, allocation).
//
// Levels count down: the top table is at levels(), leaves of the smallest page are at level 1.
#pragma once

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstring>

#include "iommu/domain.h"
#include "base/result.h"
#include "iommu/table_memory.h"
#include "iommu/types.h"

namespace vfio_emu::iommu {

enum class SplitPolicy : u8 {
  kSplit,   // unmap of part of a superpage splits it and keeps the rest mapped
  kRefuse,  // unmap of part of a superpage fails with EINVAL and changes nothing
};

// An optional hook: absent, or present with the signature the walker calls (so that a hook with
// a wrong signature is an error, not a silent fallback to the default).
#define VFIO_EMU_OPTIONAL_HOOK(F, name, ...) \
  (!requires { &F::name; } || requires(const F& f) { __VA_ARGS__; })

// What a page-table format gives the walker. Required:
//
//   int levels()          number of levels; the top table is at level levels()
//   int page_shift()      log2 of the smallest page (level-1 entry span)
//   int bits()            index bits per level (every level has 2^bits entries)
//   bool present(e)
//   u64 stored_present(raw)   1 if the entry as stored in memory is present, else 0, computed
//                             without a branch (the leaf writers OR raw entries and test once)
//   u64* table_of(e)          the next-level table an entry points to
//   u64 make_table(child)
//   u64 make_leaf(output, prot, level)
//   u64 leaf_output(e, level) page base address of a leaf
//   Prot leaf_prot(e)
//   u32 child_count(table, idx, e, level)          present entries in the child of table[idx]
//   void set_child_count(table, idx, &e, level, n) records n and stores *e into table[idx]
//                                                  (the count may live in the entry itself)
//
// Optional, with the default when left out:
//
//   u64 load(slot), void store(slot, e)   both or neither: the entry in CPU byte order.
//       Default: entries are stored in CPU byte order, which also lets the leaf writers store
//       vectors (a format that converts, as big-endian TCEs do, writes one entry at a time).
//   std::size_t table_bytes(level)  hardware bytes of a table. Default: 2^bits() u64 entries.
//   std::size_t meta_bytes(level)   bookkeeping bytes allocated after it. Default: 0.
//   bool replaces()   map over a present leaf replaces it (TCE) instead of EEXIST. Default: no.
//   bool can_leaf(level)   may a leaf (superpage) live at this level? Default: only level 1.
//   bool is_leaf(e, level) is this present entry a leaf? Default: at level 1 only (a format
//                          with superpages must say how its entries tell).
template <class F>
concept RadixFormat =
    std::copy_constructible<F> &&
    requires(const F& f, u64 e, u64* table, u64* entry, u32 idx, int level, Prot prot, u32 n) {
      { f.levels() } -> std::same_as<int>;
      { f.page_shift() } -> std::same_as<int>;
      { f.bits() } -> std::same_as<int>;
      { f.present(e) } -> std::same_as<bool>;
      { f.stored_present(e) } -> std::same_as<u64>;
      { f.table_of(e) } -> std::same_as<u64*>;
      { f.make_table(table) } -> std::same_as<u64>;
      { f.make_leaf(e, prot, level) } -> std::same_as<u64>;
      { f.leaf_output(e, level) } -> std::same_as<u64>;
      { f.leaf_prot(e) } -> std::same_as<Prot>;
      { f.child_count(table, idx, e, level) } -> std::same_as<u32>;
      f.set_child_count(table, idx, entry, level, n);
    } &&
    requires { &F::load; } == requires { &F::store; } &&
    VFIO_EMU_OPTIONAL_HOOK(F, load, { f.load(static_cast<const u64*>(nullptr)) } ->
                                        std::same_as<u64>) &&
    VFIO_EMU_OPTIONAL_HOOK(F, store, f.store(static_cast<u64*>(nullptr), u64{0})) &&
    VFIO_EMU_OPTIONAL_HOOK(F, table_bytes, { f.table_bytes(1) } -> std::same_as<std::size_t>) &&
    VFIO_EMU_OPTIONAL_HOOK(F, meta_bytes, { f.meta_bytes(1) } -> std::same_as<std::size_t>) &&
    VFIO_EMU_OPTIONAL_HOOK(F, replaces, { f.replaces() } -> std::same_as<bool>) &&
    VFIO_EMU_OPTIONAL_HOOK(F, can_leaf, { f.can_leaf(1) } -> std::same_as<bool>) &&
    VFIO_EMU_OPTIONAL_HOOK(F, is_leaf, { f.is_leaf(u64{0}, 1) } -> std::same_as<bool>);

#undef VFIO_EMU_OPTIONAL_HOOK

template <RadixFormat Format>
class RadixTable {
  // Formats that store entries in CPU byte order (no load/store hooks) get vector leaf writers.
  static constexpr bool kNativeOrder = !requires { &Format::load; };

 public:
  RadixTable(const Format& fmt, TableMemory* mem) : fmt_(fmt), mem_(mem) {}
  RadixTable(const RadixTable&) = delete;
  RadixTable& operator=(const RadixTable&) = delete;
  ~RadixTable() {
    if (root_ != nullptr) free_subtree(root_, fmt_.levels());
  }

  // Allocates the top-level table. Errors: ENOMEM.
  Status init() {
    root_ = alloc_table(fmt_.levels());
    if (root_ == nullptr) return err(ENOMEM);
    return {};
  }

  const Format& format() const { return fmt_; }
  u64* root() const { return root_; }
  u64 entries() const { return entries_; }
  u64 mapped_bytes() const { return mapped_bytes_; }

  u64 entry_span(int level) const { return u64{1} << entry_shift(level); }

  // Maps [first, first+size-1] (relative) to output. size, first and output must be aligned to
  // the smallest page (checked by the caller). Picks the largest page that alignment, length and
  // can_leaf() allow. Returns bytes of replaced leaves (replacing formats only).
  // Errors: EEXIST (non-replacing format, something is mapped in the range), ENOMEM.
  // All-or-nothing.
  Result<u64> map(u64 first, u64 output, u64 size, Prot prot) {
    const u64 last = first + (size - 1);
    MapOp op{output - first, prot, /*write_leaves=*/true, 0, first};
    if (replaces()) {
      // Replacing formats change entries in place, so a failure half way could not be undone
      // without remembering old entries: allocate every table first, then write.
      MapOp reserve{op.out_delta, prot, /*write_leaves=*/false, 0, first};
      Status st = map_level(root_, fmt_.levels(), 0, first, last, reserve, nullptr);
      if (!st) {
        prune(first, last);
        return Err{st.error()};
      }
    }
    Status st = map_level(root_, fmt_.levels(), 0, first, last, op, nullptr);
    if (!st) {
      assert(!replaces());
      // Everything below op.progress was empty before this call and is ours: take it back.
      if (op.progress > first) unmap_range(first, op.progress - 1);
      prune(first, last);
      return Err{st.error()};
    }
    return op.replaced_bytes;
  }

  // Removes every leaf in [first, last] (relative). Superpages straddling an edge are split or
  // refused according to `policy`. Returns bytes unmapped.
  // Errors: EINVAL (kRefuse and an edge cuts a superpage), ENOMEM (split needs a table).
  Result<u64> unmap(u64 first, u64 last, SplitPolicy policy) {
    const u64 span_last = table_span_last();
    if (first > span_last) return u64{0};
    last = std::min(last, span_last);
    const bool has_after = last != span_last;
    if (policy == SplitPolicy::kRefuse) {
      if (cuts_leaf(first) || (has_after && cuts_leaf(last + 1))) return err(EINVAL);
    } else {
      TRY(split_at(first));
      if (has_after) TRY(split_at(last + 1));
    }
    return unmap_range(first, last);
  }

  // Frees tables in [first, last] that hold no present entry (used to undo allocation).
  void prune(u64 first, u64 last) {
    UnmapOp op{/*clear_leaves=*/false, 0};
    unmap_level(root_, fmt_.levels(), 0, first, std::min(last, table_span_last()), op);
  }

  // The hardware walk. `rel` must be inside the table's span (the caller checks the aperture).
  Translation translate(u64 rel, Access access) const {
    Translation t;
    u64* table = root_;
    for (int level = fmt_.levels(); level >= 1; --level) {
      const u32 idx = index_of(rel, level);
      const u64 e = load(&table[idx]);
      t.steps[t.nsteps++] = WalkStep{level, reinterpret_cast<u64>(table), idx, e};
      if (!fmt_.present(e)) {
        t.fault = FaultReason::kNotPresent;
        t.fault_level = level;
        return t;
      }
      if (is_leaf(e, level)) {
        const Prot prot = fmt_.leaf_prot(e);
        const Prot need = access == Access::kRead ? kProtRead : kProtWrite;
        t.prot = prot;
        t.page_size = entry_span(level);
        if ((prot & need) == 0) {
          t.fault = FaultReason::kNoPermission;
          t.fault_level = level;
          return t;
        }
        t.fault = FaultReason::kNone;
        t.output = fmt_.leaf_output(e, level) + (rel & (t.page_size - 1));
        return t;
      }
      table = fmt_.table_of(e);
    }
    assert(false && "walk ran past level 1");
    return t;
  }

  // Visits present leaves intersecting [first, last] (relative) in order. `base` is added to the
  // reported IOVAs.
  template <class Visit>
  void walk(u64 first, u64 last, u64 base, Visit&& visit) const {
    LeafView view;
    view.top_level = fmt_.levels();
    walk_level(root_, fmt_.levels(), 0, first, std::min(last, table_span_last()), base, view,
               visit);
  }

 private:
  struct MapOp {
    u64 out_delta;      // output = rel + out_delta (mod 2^64)
    Prot prot;
    bool write_leaves;  // false: only allocate the tables the leaves will need
    u64 replaced_bytes;
    u64 progress;       // everything below this relative address has been handled
  };
  struct UnmapOp {
    bool clear_leaves;
    u64 bytes;
  };

  // The optional hooks of RadixFormat, with their defaults.
  u64 load(const u64* slot) const {
    if constexpr (kNativeOrder) return *slot;
    else return fmt_.load(slot);
  }
  void store(u64* slot, u64 e) const {
    if constexpr (kNativeOrder) *slot = e;
    else fmt_.store(slot, e);
  }
  std::size_t table_bytes(int level) const {
    if constexpr (requires { &Format::table_bytes; }) return fmt_.table_bytes(level);
    else return sizeof(u64) << fmt_.bits();
  }
  std::size_t meta_bytes(int level) const {
    if constexpr (requires { &Format::meta_bytes; }) return fmt_.meta_bytes(level);
    else return 0;
  }
  bool replaces() const {
    if constexpr (requires { &Format::replaces; }) return fmt_.replaces();
    else return false;
  }
  bool can_leaf(int level) const {
    if constexpr (requires { &Format::can_leaf; }) return fmt_.can_leaf(level);
    else return level == 1;
  }
  bool is_leaf(u64 e, int level) const {
    if constexpr (requires { &Format::is_leaf; }) return fmt_.is_leaf(e, level);
    else return level == 1;
  }

  int entry_shift(int level) const { return fmt_.page_shift() + (level - 1) * fmt_.bits(); }
  u32 index_of(u64 rel, int level) const {
    return static_cast<u32>((rel >> entry_shift(level)) & ((u64{1} << fmt_.bits()) - 1));
  }
  u64 table_span_last() const {
    const int shift = entry_shift(fmt_.levels()) + fmt_.bits();
    return shift >= 64 ? kU64Max : (u64{1} << shift) - 1;
  }

  // Leaf writers of the hot path, written to vectorise (the stored form is what is tested, so
  // no per-entry conversion is needed to look at the old value).
  //
  // Replacing formats: stores leaf, leaf+span, ... into n slots; returns how many were present.
  u32 store_leaves_counting(u64* slots, u32 n, u64 leaf, u64 span) {
    u64 c = 0;
    for (u32 k = 0; k < n; ++k, leaf += span) {
      c += fmt_.stored_present(slots[k]);
      store(&slots[k], leaf);
    }
    return static_cast<u32>(c);
  }
  // Non-replacing formats: the same stores if every slot is empty, else none (false). One pass
  // in chunks: a chunk's old entries are OR-ed (the present bits of an OR are the OR of the
  // present bits) and tested before the chunk is written; at a present one, the chunks already
  // written, empty before, are cleared again.
  bool store_leaves_if_empty(u64* slots, u32 n, u64 leaf, u64 span) {
    u32 k = 0;
    if constexpr (kNativeOrder) {
      // Four 2-entry vectors per chunk (GCC/Clang vector extensions: SSE2 on any x86-64).
      using V2 = u64 __attribute__((vector_size(16)));
      constexpr u32 kChunk = 8;
      V2 next = {leaf, leaf + span};
      const V2 step = {2 * span, 2 * span};
      for (; k + kChunk <= n; k += kChunk) {
        V2 a, b, c, d;
        std::memcpy(&a, slots + k, 16);
        std::memcpy(&b, slots + k + 2, 16);
        std::memcpy(&c, slots + k + 4, 16);
        std::memcpy(&d, slots + k + 6, 16);
        const V2 any = a | b | c | d;
        if (fmt_.stored_present(any[0] | any[1]) != 0) break;
        for (u32 j = 0; j < kChunk; j += 2, next += step) std::memcpy(slots + k + j, &next, 16);
      }
      leaf = next[0];
    }
    u64 acc = 0;
    for (u32 j = k; j < n; ++j) acc |= slots[j];
    if (fmt_.stored_present(acc) != 0) {
      std::memset(slots, 0, u64{k} * sizeof(u64));
      return false;
    }
    for (u32 j = k; j < n; ++j, leaf += span) store(&slots[j], leaf);
    return true;
  }

  u64* alloc_table(int level) {
    return static_cast<u64*>(mem_->allocate(table_bytes(level), meta_bytes(level)));
  }
  void free_table(u64* t, int level) {
    mem_->release(t, table_bytes(level), meta_bytes(level));
  }
  // Frees a table that may still hold entries: TableMemory takes back only zeroed memory.
  void clear_and_free_table(u64* t, int level) {
    std::memset(t, 0, table_bytes(level) + meta_bytes(level));
    free_table(t, level);
  }

  void free_subtree(u64* table, int level) {
    if (level > 1) {
      const u32 n = u32{1} << fmt_.bits();
      for (u32 i = 0; i < n; ++i) {
        const u64 e = load(&table[i]);
        if (fmt_.present(e) && !is_leaf(e, level)) free_subtree(fmt_.table_of(e), level - 1);
      }
    }
    clear_and_free_table(table, level);
  }

  // Maps [first, last] inside `table` (a table at `level` whose span starts at `base`).
  // `*added` (if not null) receives the number of entries that became present in `table`.
  Status map_level(u64* table, int level, u64 base, u64 first, u64 last, MapOp& op,
                   u32* added) {
    const int shift = entry_shift(level);
    const u64 span = u64{1} << shift;
    const u32 i_first = static_cast<u32>((first - base) >> shift);
    const u32 i_last = static_cast<u32>((last - base) >> shift);
    u32 new_entries = 0;
    Status status;

    if (level == 1) {
      if (added != nullptr) *added = 0;
      if (!op.write_leaves) return status;  // reserving: the leaf table exists, done
      // The hot path, one pass over the slots. Leaves of consecutive pages differ only in their
      // address field: make_leaf(out + k*span) == make_leaf(out) + k*span.
      u64* slots = table + i_first;
      const u32 n = i_last - i_first + 1;
      const u64 rel0 = base + (u64{i_first} << shift);
      const u64 leaf0 = fmt_.make_leaf(rel0 + op.out_delta, op.prot, 1);
      u32 present = 0;
      if (replaces()) {
        present = store_leaves_counting(slots, n, leaf0, span);
      } else if (!store_leaves_if_empty(slots, n, leaf0, span)) {
        op.progress = rel0;  // nothing left written in this table; everything before is ours
        return err(EEXIST);
      }
      op.replaced_bytes += u64{present} * span;
      op.progress = last + 1;
      account_leaves(n - present, span);
      if (added != nullptr) *added = n - present;
      return status;
    }

    for (u32 i = i_first; i <= i_last; ++i) {
      const u64 e_first = base + (u64{i} << shift);
      const u64 e_last = e_first + (span - 1);
      const u64 lo = std::max(first, e_first);
      const u64 hi = std::min(last, e_last);
      u64* slot = &table[i];
      u64 e = load(slot);
      const bool whole = lo == e_first && hi == e_last;
      if (whole && can_leaf(level) && ((lo + op.out_delta) & (span - 1)) == 0) {
        if (fmt_.present(e)) {
          status = err(EEXIST);  // a superpage never replaces (only TCE replaces; no superpages)
          break;
        }
        if (op.write_leaves) {
          store(slot, fmt_.make_leaf(lo + op.out_delta, op.prot, level));
          ++new_entries;
          account_leaves(1, span);
        }
        op.progress = hi + 1;
        continue;
      }
      if (!fmt_.present(e)) {
        u64* child = alloc_table(level - 1);
        if (child == nullptr) {
          status = err(ENOMEM);
          break;
        }
        e = fmt_.make_table(child);
        store(slot, e);
        ++new_entries;
      } else if (is_leaf(e, level)) {
        status = err(EEXIST);
        break;
      }
      u32 child_added = 0;
      Status st = map_level(fmt_.table_of(e), level - 1, e_first, lo, hi, op, &child_added);
      if (child_added != 0) {
        const u32 n = fmt_.child_count(table, i, e, level);
        fmt_.set_child_count(table, i, &e, level, n + child_added);
      }
      if (!st) {
        status = st;
        break;
      }
    }
    if (added != nullptr) *added = new_entries;
    return status;
  }

  u64 unmap_range(u64 first, u64 last) {
    UnmapOp op{/*clear_leaves=*/true, 0};
    unmap_level(root_, fmt_.levels(), 0, first, last, op);
    return op.bytes;
  }

  // Clears leaves in [first, last] (every leaf met is wholly inside: edges were split first) and
  // frees child tables that become empty. Returns the number of entries of `table` that went
  // from present to not present.
  u32 unmap_level(u64* table, int level, u64 base, u64 first, u64 last, UnmapOp& op) {
    const int shift = entry_shift(level);
    const u64 span = u64{1} << shift;
    const u32 i_first = static_cast<u32>((first - base) >> shift);
    const u32 i_last = static_cast<u32>((last - base) >> shift);
    u32 removed = 0;

    if (level == 1) {
      if (!op.clear_leaves) return 0;
      u64* slots = table + i_first;
      const u32 n = i_last - i_first + 1;
      removed = store_leaves_counting(slots, n, 0, 0);  // clears, counting what was there
      op.bytes += u64{removed} * span;
      account_leaves_removed(removed, span);
      return removed;
    }

    for (u32 i = i_first; i <= i_last; ++i) {
      u64* slot = &table[i];
      u64 e = load(slot);
      if (!fmt_.present(e)) continue;
      const u64 e_first = base + (u64{i} << shift);
      if (is_leaf(e, level)) {
        if (!op.clear_leaves) continue;
        assert(e_first >= first && e_first + (span - 1) <= last);
        store(slot, 0);
        ++removed;
        op.bytes += span;
        account_leaves_removed(1, span);
        continue;
      }
      const u64 lo = std::max(first, e_first);
      const u64 hi = std::min(last, e_first + (span - 1));
      u64* child = fmt_.table_of(e);
      const u32 child_removed = unmap_level(child, level - 1, e_first, lo, hi, op);
      const u32 n = fmt_.child_count(table, i, e, level);
      assert(n >= child_removed);
      if (n == child_removed) {
        free_table(child, level - 1);
        fmt_.set_child_count(table, i, &e, level, 0);
        store(slot, 0);
        ++removed;
      } else if (child_removed != 0) {
        fmt_.set_child_count(table, i, &e, level, n - child_removed);
      }
    }
    return removed;
  }

  // True if a present leaf covers `rel` without starting there.
  bool cuts_leaf(u64 rel) const {
    u64* table = root_;
    for (int level = fmt_.levels(); level >= 1; --level) {
      const u64 e = load(&table[index_of(rel, level)]);
      if (!fmt_.present(e)) return false;
      if (is_leaf(e, level)) return (rel & (entry_span(level) - 1)) != 0;
      table = fmt_.table_of(e);
    }
    return false;
  }

  // Splits superpages until `rel` is the first byte of a leaf (or unmapped).
  // Errors: ENOMEM (nothing observable changed: a split keeps every translation).
  Status split_at(u64 rel) {
    u64* table = root_;
    for (int level = fmt_.levels(); level > 1; --level) {
      const u32 idx = index_of(rel, level);
      u64* slot = &table[idx];
      u64 e = load(slot);
      if (!fmt_.present(e)) return {};
      if (is_leaf(e, level)) {
        if ((rel & (entry_span(level) - 1)) == 0) return {};
        u64* child = alloc_table(level - 1);
        if (child == nullptr) return err(ENOMEM);
        const u64 out = fmt_.leaf_output(e, level);
        const Prot prot = fmt_.leaf_prot(e);
        u32 filled = 0;
        if (!fill_table(child, level - 1, out, prot, &filled)) {
          free_subtree_partial(child, level - 1);
          return err(ENOMEM);
        }
        // The superpage leaf becomes a table of smaller leaves with the same translations.
        account_leaves_removed(1, entry_span(level));
        e = fmt_.make_table(child);
        fmt_.set_child_count(table, idx, &e, level, filled);
      }
      table = fmt_.table_of(e);
    }
    return {};
  }

  // Fills a fresh table at `level` with leaves (or, where the level cannot hold leaves, tables
  // of leaves) covering output..output+span-1. Returns false on ENOMEM.
  bool fill_table(u64* table, int level, u64 output, Prot prot, u32* filled) {
    const u32 n = u32{1} << fmt_.bits();
    const u64 span = entry_span(level);
    for (u32 i = 0; i < n; ++i) {
      const u64 out = output + u64{i} * span;
      if (can_leaf(level)) {
        store(&table[i], fmt_.make_leaf(out, prot, level));
        account_leaves(1, span);
      } else {
        u64* child = alloc_table(level - 1);
        if (child == nullptr) return false;
        u64 e = fmt_.make_table(child);
        store(&table[i], e);
        u32 child_filled = 0;
        const bool ok = fill_table(child, level - 1, out, prot, &child_filled);
        fmt_.set_child_count(table, i, &e, level, child_filled);
        if (!ok) return false;
      }
      ++*filled;
    }
    return true;
  }

  // Frees a table built by a failed fill_table, un-counting the leaves it held.
  void free_subtree_partial(u64* table, int level) {
    const u32 n = u32{1} << fmt_.bits();
    for (u32 i = 0; i < n; ++i) {
      const u64 e = load(&table[i]);
      if (!fmt_.present(e)) continue;
      if (is_leaf(e, level))
        account_leaves_removed(1, entry_span(level));
      else
        free_subtree_partial(fmt_.table_of(e), level - 1);
    }
    clear_and_free_table(table, level);
  }

  template <class Visit>
  void walk_level(u64* table, int level, u64 base, u64 first, u64 last, u64 abs_base,
                  LeafView& view, Visit& visit) const {
    const int shift = entry_shift(level);
    const u64 span = u64{1} << shift;
    const u32 i_first = static_cast<u32>((first - base) >> shift);
    const u32 i_last = static_cast<u32>((last - base) >> shift);
    const int depth = fmt_.levels() - level;
    for (u32 i = i_first; i <= i_last; ++i) {
      const u64 e = load(&table[i]);
      if (!fmt_.present(e)) continue;
      view.path[depth] = e;
      const u64 e_first = base + (u64{i} << shift);
      if (is_leaf(e, level)) {
        view.iova = abs_base + e_first;
        view.size = span;
        view.output = fmt_.leaf_output(e, level);
        view.prot = fmt_.leaf_prot(e);
        view.level = level;
        for (int d = depth + 1; d < kMaxWalkLevels; ++d) view.path[d] = 0;
        visit(static_cast<const LeafView&>(view));
        continue;
      }
      walk_level(fmt_.table_of(e), level - 1, e_first, std::max(first, e_first),
                 std::min(last, e_first + (span - 1)), abs_base, view, visit);
    }
  }

  void account_leaves(u64 n, u64 span) {
    entries_ += n;
    mapped_bytes_ += n * span;
  }
  void account_leaves_removed(u64 n, u64 span) {
    entries_ -= n;
    mapped_bytes_ -= n * span;
  }

  Format fmt_;
  TableMemory* mem_;
  u64* root_ = nullptr;
  u64 entries_ = 0;
  u64 mapped_bytes_ = 0;
};

}  // namespace vfio_emu::iommu
