// Intel VT-d: a remapping unit (capabilities, domain ids) and its second-level paging domains.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "iommu/domain.h"
#include "iommu/radix_table.h"
#include "iommu/table_memory.h"
#include "iommu/vtd/vtd_hw.h"

namespace vfio_emu::iommu::vtd {

struct VtdConfig {
  std::string name = "dmar0";
  int aw_bits = 48;             // 39, 48 or 57: 3, 4 or 5 levels
  bool page_2m = true;          // SLLPS bit 0
  bool page_1g = true;          // SLLPS bit 1
  u32 max_domains = 256;        // 2^(4 + 2*ND): 16, 64, 256, ..., 65536; id 0 is reserved
  std::vector<IovaRange> reserved;  // e.g. the MSI window 0xfee00000..0xfeefffff
  SplitPolicy split = SplitPolicy::kSplit;
  bool snoop_control = true;    // ECAP.SC: SNP honoured, DMA can be forced coherent
  bool interrupt_remapping = true;  // ECAP.IR: MSIs are remapped, hence isolated
};

// The second-level entry format as the radix walker's policy.
class SlFormat {
 public:
  SlFormat(int levels, bool page_2m, bool page_1g)
      : levels_(levels), page_2m_(page_2m), page_1g_(page_1g) {}

  // 4 KiB tables of 512 entries in CPU byte order, no bookkeeping after them; a map never
  // replaces a present entry (EEXIST): RadixFormat's defaults.
  int levels() const { return levels_; }
  int page_shift() const { return 12; }
  int bits() const { return 9; }

  bool present(u64 e) const { return (e & kPresentMask) != 0; }
  // R and W are bits 0 and 1: (R|W) + 3 carries into bit 2 exactly when one of them is set.
  u64 stored_present(u64 raw) const { return ((raw & kPresentMask) + kPresentMask) >> 2; }
  bool is_leaf(u64 e, int level) const { return level == 1 || decode(e).page_size; }
  bool can_leaf(int level) const {
    return level == 1 || (level == 2 && page_2m_) || (level == 3 && page_1g_);
  }
  u64* table_of(u64 e) const {
    return reinterpret_cast<u64*>(static_cast<u64>(decode(e).addr) << kAddrShift);
  }
  u64 make_table(u64* child) const {
    SlPte p{};
    p.read = 1;  // non-leaf entries grant everything; permissions are decided at the leaf
    p.write = 1;
    p.addr = reinterpret_cast<u64>(child) >> kAddrShift;
    return encode(p);
  }
  u64 make_leaf(u64 output, Prot prot, int level) const {
    SlPte p{};
    p.read = (prot & kProtRead) != 0;
    p.write = (prot & kProtWrite) != 0;
    p.snoop = (prot & kProtCache) != 0;
    p.page_size = level > 1;
    p.addr = output >> kAddrShift;
    return encode(p);
  }
  u64 leaf_output(u64 e, int) const { return static_cast<u64>(decode(e).addr) << kAddrShift; }
  Prot leaf_prot(u64 e) const {
    const SlPte p = decode(e);
    return static_cast<Prot>((p.read ? kProtRead : 0) | (p.write ? kProtWrite : 0) |
                             (p.snoop ? kProtCache : 0));
  }
  u32 child_count(u64*, u32, u64 e, int) const { return decode(e).sw_count; }
  void set_child_count(u64* table, u32 idx, u64* e, int, u32 n) const {
    SlPte p = decode(*e);
    p.sw_count = n;
    *e = encode(p);
    table[idx] = *e;
  }

 private:
  int levels_;
  bool page_2m_;
  bool page_1g_;
};
static_assert(RadixFormat<SlFormat>);

class VtdUnit;

class VtdDomain final : public Domain {
 public:
  ~VtdDomain() override;

  Model model() const override { return Model::kVtd; }
  Result<u64> map(u64 iova, u64 output, u64 size, Prot prot) override;
  Result<u64> unmap(u64 first, u64 last) override;
  Translation translate(u64 iova, Access access) const override;
  void walk(u64 first, u64 last, const LeafVisitor& visit) const override;
  u64 page_sizes() const override;
  std::vector<IovaRange> aperture() const override;
  DomainStats stats() const override;
  int levels() const override { return table_.format().levels(); }

  // The hardware domain id (DID) this domain holds on its unit.
  u32 domain_id() const { return did_; }
  const VtdUnit& unit() const { return *unit_; }
  // Address of the top-level table (what a context entry's SLPTPTR would hold).
  u64 root_table() const { return reinterpret_cast<u64>(table_.root()); }

 private:
  friend class VtdUnit;
  VtdDomain(std::shared_ptr<VtdUnit> unit, u32 did);

  std::shared_ptr<VtdUnit> unit_;
  u32 did_;
  u64 aperture_last_;
  TableMemory memory_;
  RadixTable<SlFormat> table_;
};

class VtdUnit final : public Unit, public std::enable_shared_from_this<VtdUnit> {
 public:
  // Errors: EINVAL if aw_bits is not 39/48/57, max_domains is not 2^(4+2n) for n in 0..6, or a
  // reserved range is inverted.
  static Result<std::shared_ptr<VtdUnit>> create(VtdConfig config);

  Model model() const override { return Model::kVtd; }
  Result<std::unique_ptr<Domain>> create_domain() override;
  std::vector<IovaRange> reserved_regions() const override { return config_.reserved; }
  u64 page_sizes() const override;
  bool enforces_cache_coherency() const override { return config_.snoop_control; }
  bool isolated_msi() const override { return config_.interrupt_remapping; }

  const VtdConfig& config() const { return config_; }
  int levels() const { return (config_.aw_bits - 30) / 9 + 2; }
  // The simulated CAP_REG / ECAP_REG, consistent with the configuration.
  u64 cap_reg() const;
  u64 ecap_reg() const;
  u32 domains_in_use() const;

 private:
  friend class VtdDomain;
  explicit VtdUnit(VtdConfig config);
  void release_domain_id(u32 did);

  VtdConfig config_;
  mutable std::mutex mutex_;
  std::vector<bool> did_used_;  // index 0 is reserved, as Linux reserves DID 0
  u32 in_use_ = 0;
};

}  // namespace vfio_emu::iommu::vtd
