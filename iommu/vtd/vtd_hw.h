// Intel VT-d hardware formats, described once (shared/spec/iommu-table-formats.md §1).
//
// Second-level page-table entry (§1.3): there is no present bit, an entry is present when R or W
// is set. PS marks a 2 MiB (level 2) or 1 GiB (level 3) leaf. Bits 52..61 are ignored by the
// hardware; like generic_pt's software bits we use them, in non-leaf entries only, to count the
// present entries of the table the entry points to, so empty tables can be freed in O(1).
#pragma once

#include <bit>
#include <cstdint>

namespace vfio_emu::iommu::vtd {

using u64 = std::uint64_t;

struct SlPte {
  u64 read : 1;       // 0   R
  u64 write : 1;      // 1   W
  u64 execute : 1;    // 2   X (only with SLEE; never set here)
  u64 ignored3 : 4;   // 6:3 EMT/IPAT in extended mode; reserved here
  u64 page_size : 1;  // 7   PS: this entry is a superpage leaf
  u64 accessed : 1;   // 8   A (dirty-tracking capable hardware)
  u64 dirty : 1;      // 9   D
  u64 ignored10 : 1;  // 10
  u64 snoop : 1;      // 11  SNP: snooped (cache-coherent) access
  u64 addr : 40;      // 51:12 output address or next-level table, 4 KiB granular
  u64 sw_count : 10;  // 61:52 ignored by hardware: present entries of the child table
  u64 transient : 1;  // 62  TM
  u64 ignored63 : 1;  // 63
};
static_assert(sizeof(SlPte) == 8);

constexpr int kAddrShift = 12;
constexpr u64 kMaxOutputBits = 52;  // address bits 51:12

constexpr SlPte decode(u64 v) { return std::bit_cast<SlPte>(v); }
constexpr u64 encode(SlPte p) { return std::bit_cast<u64>(p); }

// No present bit: an entry is present when R or W is set.
// Bits 0 (read) and 1 (write) of the bitfields above. A constant rather than encode() of a
// bitfield value because clang 14 cannot bit_cast bitfields in constant expressions; the unit
// tests check that the two agree.
constexpr u64 kPresentMask = 0x3;

// Capability register (CAP_REG, §1.2), the fields this model sets.
struct CapReg {
  u64 nd : 3;          // 2:0   number of domains = 2^(4 + 2*ND)
  u64 afl : 1;         // 3
  u64 rwbf : 1;        // 4
  u64 plmr : 1;        // 5
  u64 phmr : 1;        // 6
  u64 cm : 1;          // 7     caching mode
  u64 sagaw : 5;       // 12:8  supported AGAW: bit1 39-bit, bit2 48-bit, bit3 57-bit
  u64 rsvd13 : 3;      // 15:13
  u64 mgaw : 6;        // 21:16 maximum guest address width - 1
  u64 zlr : 1;         // 22
  u64 rsvd23 : 1;      // 23
  u64 fro : 10;        // 33:24 fault-recording register offset / 16
  u64 sllps : 4;       // 37:34 bit0 2 MiB, bit1 1 GiB second-level pages
  u64 rsvd38 : 1;      // 38
  u64 psi : 1;         // 39    page-selective invalidation
  u64 nfr : 8;         // 47:40 number of fault-recording registers - 1
  u64 mamv : 6;        // 53:48 maximum address-mask value
  u64 dwd : 1;         // 54
  u64 drd : 1;         // 55
  u64 fl1gp : 1;       // 56
  u64 rsvd57 : 2;      // 58:57
  u64 pi : 1;          // 59
  u64 fl5lp : 1;       // 60
  u64 rsvd61 : 3;      // 63:61
};
static_assert(sizeof(CapReg) == 8);

// Extended capability register (ECAP_REG, §1.2), the fields this model sets.
struct EcapReg {
  u64 c : 1;           // 0     page-walk coherency
  u64 qi : 1;          // 1     queued invalidation
  u64 dt : 1;          // 2     device-TLB
  u64 ir : 1;          // 3     interrupt remapping
  u64 eim : 1;         // 4     extended interrupt mode
  u64 rsvd5 : 1;       // 5
  u64 pt : 1;          // 6     pass-through
  u64 sc : 1;          // 7     snoop control
  u64 iro : 10;        // 17:8  IOTLB register offset / 16
  u64 rsvd18 : 2;      // 19:18
  u64 mhmv : 4;        // 23:20 maximum handle mask value
  u64 rsvd24 : 19;     // 42:24
  u64 smts : 1;        // 43    scalable mode
  u64 rsvd44 : 2;      // 45:44
  u64 slts : 1;        // 46    second-level translation
  u64 flts : 1;        // 47    first-level translation
  u64 smpwc : 1;       // 48
  u64 rsvd49 : 15;     // 63:49
};
static_assert(sizeof(EcapReg) == 8);

// Fault reasons of the VT-d fault-recording registers (QEMU's numbering, §1.7), used when the
// model reports a translation fault in hardware terms.
enum class FaultCode : std::uint8_t {
  kAddrBeyondMgaw = 0x4,
  kWrite = 0x5,
  kRead = 0x6,
  kPagingEntryInvalid = 0x7,
};

}  // namespace vfio_emu::iommu::vtd
