// Vocabulary of the simulated IOMMU hardware: ranges, permissions, translations, walk views.
//
// Every range is [first, last] inclusive, so the whole 64-bit space and a mapping that ends at
// 2^64-1 are expressible without overflow.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "base/ints.h"

namespace vfio_emu::iommu {

using vfio_emu::kU64Max;
using vfio_emu::u16;
using vfio_emu::u32;
using vfio_emu::u64;
using vfio_emu::u8;

// [first, last], inclusive. An empty range cannot be represented on purpose: callers check sizes.
struct IovaRange {
  u64 first = 0;
  u64 last = 0;

  // Number of bytes minus one; the size itself would not fit for the whole space.
  constexpr u64 size_minus_one() const { return last - first; }
  constexpr bool contains(u64 a) const { return a >= first && a <= last; }
  constexpr bool contains(const IovaRange& o) const { return o.first >= first && o.last <= last; }
  constexpr bool overlaps(const IovaRange& o) const { return o.first <= last && o.last >= first; }
  friend constexpr bool operator==(const IovaRange& a, const IovaRange& b) {
    return a.first == b.first && a.last == b.last;
  }
};

// Builds [first, first+size-1]; false on size 0 or overflow past 2^64-1.
constexpr bool make_range(u64 first, u64 size, IovaRange* out) {
  if (size == 0) return false;
  u64 last = first + (size - 1);
  if (last < first) return false;
  *out = IovaRange{first, last};
  return true;
}

// DMA permissions, device-centric like IOMMU_READ/IOMMU_WRITE: kRead lets the device read
// memory, kWrite lets it write memory. kCache asks for snooped (coherent) DMA where supported.
using Prot = u8;
constexpr Prot kProtRead = 1u << 0;
constexpr Prot kProtWrite = 1u << 1;
constexpr Prot kProtCache = 1u << 2;
constexpr Prot kProtRW = kProtRead | kProtWrite;

enum class Access : u8 { kRead, kWrite };

enum class Model : u8 { kVtd, kTce, kNop };
constexpr std::string_view model_name(Model m) {
  switch (m) {
    case Model::kVtd: return "vtd";
    case Model::kTce: return "tce";
    case Model::kNop: return "nop";
  }
  return "?";
}

// Why a translation did not produce an address.
enum class FaultReason : u8 {
  kNone,           // translated
  kNotPresent,     // an entry on the walk (at fault_level) is not present
  kNoPermission,   // the leaf is present but lacks the requested access
  kOutOfAperture,  // the address is outside what the domain can translate
};
constexpr std::string_view fault_reason_name(FaultReason r) {
  switch (r) {
    case FaultReason::kNone: return "none";
    case FaultReason::kNotPresent: return "not-present";
    case FaultReason::kNoPermission: return "no-permission";
    case FaultReason::kOutOfAperture: return "out-of-aperture";
  }
  return "?";
}

constexpr int kMaxWalkLevels = 6;

// One step of a hardware walk: the table read at `level` (levels count down to 1 = leaf table),
// the index used, and the raw entry found there (in CPU byte order).
struct WalkStep {
  int level = 0;
  u64 table = 0;  // address of the table that was read
  u32 index = 0;
  u64 entry = 0;
};

// The result of translate(): either an output address or a fault, plus the walk that led to it.
// No allocation: the walk is a fixed array, so this is usable on a DMA hot path.
struct Translation {
  FaultReason fault = FaultReason::kNotPresent;
  int fault_level = 0;  // the level whose entry stopped the walk (0 if none)
  u64 output = 0;       // output address of the iova (page base + offset)
  u64 page_size = 0;    // size of the leaf that translated it
  Prot prot = 0;
  int nsteps = 0;
  std::array<WalkStep, kMaxWalkLevels> steps{};

  bool ok() const { return fault == FaultReason::kNone; }
};

// A present leaf as seen by walk(): the IOVA span it covers, its output and permissions, and the
// raw entries on the path from the top table down to it (path[0] is the top-level entry).
struct LeafView {
  u64 iova = 0;
  u64 size = 0;
  u64 output = 0;
  Prot prot = 0;
  int level = 0;  // 1 = smallest page
  int top_level = 0;
  std::array<u64, kMaxWalkLevels> path{};  // path[i] is the entry at level top_level - i
};

struct DomainStats {
  u64 tables = 0;         // page-table pages (or TCE level tables) allocated
  u64 table_bytes = 0;    // bytes of hardware table memory
  u64 meta_bytes = 0;     // bytes of software bookkeeping beside the tables
  u64 entries = 0;        // present leaf entries
  u64 mapped_bytes = 0;   // bytes of IOVA covered by present leaves
};

}  // namespace vfio_emu::iommu
