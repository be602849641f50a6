// IBM POWER TCE format, described once (shared/spec/iommu-table-formats.md §2).
//
// One 64-bit big-endian TCE per IOMMU page: READ (bit 0: the device may read memory), WRITE
// (bit 1: the device may write memory), and the real address of the page, aligned to the
// window's page size, in the remaining bits. Intermediate entries of multi-level tables hold the
// next level's address with READ|WRITE set, as PowerNV writes them.
#pragma once

#include <bit>
#include <cstdint>

namespace vfio_emu::iommu::tce {

using u64 = std::uint64_t;

struct Tce {
  u64 read : 1;     // 0  TCE_PCI_READ
  u64 write : 1;    // 1  TCE_PCI_WRITE
  u64 rsvd : 10;    // 11:2
  u64 rpn : 52;     // 63:12 real page number in 4 KiB units (low bits zero for larger pages)
};
static_assert(sizeof(Tce) == 8);

constexpr int kRpnShift = 12;
constexpr u64 kMaxOutputBits = 52;  // TCE_RPN_MASK: 40-bit RPN of 4 KiB pages

constexpr Tce decode(u64 v) { return std::bit_cast<Tce>(v); }
constexpr u64 encode(Tce t) { return std::bit_cast<u64>(t); }

// A TCE (or an intermediate entry) is in use when READ or WRITE is set.
// Bits 0 (read) and 1 (write) of the bitfields above. A constant rather than encode() of a
// bitfield value because clang 14 cannot bit_cast bitfields in constant expressions; the unit
// tests check that the two agree.
constexpr u64 kPresentMask = 0x3;

// TCEs live in memory big-endian.
inline u64 from_be(u64 v) { return __builtin_bswap64(v); }
inline u64 to_be(u64 v) { return __builtin_bswap64(v); }

// Linux's level sizing limit for multi-level tables: (level_shift - 3) * levels + page_shift must
// stay below 55 (pnv_pci_ioda2_table_alloc_pages).
constexpr int kMaxTableAddressBits = 55;

}  // namespace vfio_emu::iommu::tce
