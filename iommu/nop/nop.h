// The no-op IOMMU: for devices that do no DMA. It translates nothing and refuses every map, so a
// device behind it can never reach memory. VFIO treats its groups like emulated (mdev) groups.
#pragma once

#include <memory>
#include <string>

#include "iommu/domain.h"

namespace vfio_emu::iommu::nop {

class NopDomain final : public Domain {
 public:
  NopDomain() = default;
  Model model() const override { return Model::kNop; }
  // Errors: EOPNOTSUPP always: a device behind a nop IOMMU does no DMA.
  Result<u64> map(u64 iova, u64 output, u64 size, Prot prot) override;
  // Nothing is ever mapped: 0 bytes, or EINVAL for an inverted range.
  Result<u64> unmap(u64 first, u64 last) override;
  // Always kOutOfAperture: the aperture is empty.
  Translation translate(u64 iova, Access access) const override;
  void walk(u64, u64, const LeafVisitor&) const override {}
  u64 page_sizes() const override { return 0; }
  std::vector<IovaRange> aperture() const override { return {}; }
  DomainStats stats() const override { return {}; }
  int levels() const override { return 0; }
};

class NopUnit final : public Unit {
 public:
  explicit NopUnit(std::string name) : Unit(std::move(name)) {}
  Model model() const override { return Model::kNop; }
  Result<std::unique_ptr<Domain>> create_domain() override;
  std::vector<IovaRange> reserved_regions() const override { return {}; }
  u64 page_sizes() const override { return 0; }
  bool enforces_cache_coherency() const override { return false; }
};

}  // namespace vfio_emu::iommu::nop
