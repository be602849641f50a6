#include "iommu/vtd/vtd.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <new>

namespace vfio_emu::iommu::vtd {
namespace {

constexpr u64 kPage = 4096;

int nd_for(u32 max_domains) {
  for (int nd = 0; nd <= 6; ++nd)
    if ((u32{1} << (4 + 2 * nd)) == max_domains) return nd;
  return -1;
}

}  // namespace

// ---- VtdUnit -------------------------------------------------------------------------------

VtdUnit::VtdUnit(VtdConfig config)
    : Unit(config.name), config_(std::move(config)), did_used_(config_.max_domains, false) {
  did_used_[0] = true;  // Linux reserves DID 0 (caching mode tags invalid translations with it)
}

Result<std::shared_ptr<VtdUnit>> VtdUnit::create(VtdConfig config) {
  if (config.aw_bits != 39 && config.aw_bits != 48 && config.aw_bits != 57) return err(EINVAL);
  if (nd_for(config.max_domains) < 0) return err(EINVAL);
  for (const IovaRange& r : config.reserved)
    if (r.first > r.last) return err(EINVAL);
  return std::shared_ptr<VtdUnit>(new VtdUnit(std::move(config)));
}

u64 VtdUnit::page_sizes() const {
  u64 sizes = kPage;
  if (config_.page_2m) sizes |= u64{1} << 21;
  if (config_.page_1g) sizes |= u64{1} << 30;
  return sizes;
}

u64 VtdUnit::cap_reg() const {
  CapReg cap{};
  cap.nd = static_cast<u64>(nd_for(config_.max_domains));
  cap.sagaw = u64{1} << ((config_.aw_bits - 30) / 9);  // 39 -> bit 1, 48 -> bit 2, 57 -> bit 3
  cap.mgaw = static_cast<u64>(config_.aw_bits - 1);
  cap.fro = 0x220 / 16;  // fault-recording registers at 0x220, as QEMU places them
  cap.sllps = (config_.page_2m ? 1u : 0u) | (config_.page_1g ? 2u : 0u);
  cap.psi = 1;
  cap.nfr = 0;    // one fault-recording register
  cap.mamv = 18;  // QEMU's VTD_MAMV
  cap.dwd = 1;
  cap.drd = 1;
  cap.fl1gp = 1;
  cap.fl5lp = config_.aw_bits == 57;
  return std::bit_cast<u64>(cap);
}

u64 VtdUnit::ecap_reg() const {
  EcapReg ecap{};
  ecap.c = 1;   // page walks are coherent: no clflush of PTE writes needed
  ecap.qi = 1;
  ecap.ir = config_.interrupt_remapping;
  ecap.eim = 1;
  ecap.pt = 1;
  ecap.sc = config_.snoop_control;
  ecap.iro = 0xf0 / 16;  // IOTLB registers at 0xf0 (DMAR_IOTLB_REG_OFFSET)
  ecap.mhmv = 0xf;
  ecap.slts = 1;
  return std::bit_cast<u64>(ecap);
}

u32 VtdUnit::domains_in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

Result<std::unique_ptr<Domain>> VtdUnit::create_domain() {
  u32 did = 0;
  {
    std::lock_guard lock(mutex_);
    for (u32 i = 1; i < did_used_.size(); ++i) {
      if (!did_used_[i]) {
        did = i;
        break;
      }
    }
    if (did == 0) return err(ENOSPC);  // every domain id of this unit (CAP.ND) is taken
    did_used_[did] = true;
    ++in_use_;
  }
  std::unique_ptr<VtdDomain> domain(new (std::nothrow) VtdDomain(shared_from_this(), did));
  if (!domain) {
    release_domain_id(did);
    return err(ENOMEM);
  }
  Status st = domain->table_.init();
  if (!st) return Err{st.error()};  // ~VtdDomain gives the id back
  return std::unique_ptr<Domain>(std::move(domain));
}

void VtdUnit::release_domain_id(u32 did) {
  std::lock_guard lock(mutex_);
  did_used_[did] = false;
  --in_use_;
}

// ---- VtdDomain -----------------------------------------------------------------------------

VtdDomain::VtdDomain(std::shared_ptr<VtdUnit> unit, u32 did)
    : unit_(std::move(unit)),
      did_(did),
      aperture_last_((u64{1} << unit_->config().aw_bits) - 1),
      memory_(unit_->table_budget()),
      table_(SlFormat(unit_->levels(), unit_->config().page_2m, unit_->config().page_1g),
             &memory_) {}

VtdDomain::~VtdDomain() { unit_->release_domain_id(did_); }

Result<u64> VtdDomain::map(u64 iova, u64 output, u64 size, Prot prot) {
  if (size == 0 || (prot & kProtRW) == 0) return err(EINVAL);
  if ((iova | output | size) & (kPage - 1)) return err(EINVAL);
  IovaRange in, out;
  if (!make_range(iova, size, &in) || !make_range(output, size, &out)) return err(EOVERFLOW);
  if (in.last > aperture_last_) return err(ERANGE);
  if (out.last >> kMaxOutputBits) return err(ERANGE);
  if (!unit_->config().snoop_control) prot &= static_cast<Prot>(~kProtCache);
  return table_.map(iova, output, size, prot);
}

Result<u64> VtdDomain::unmap(u64 first, u64 last) {
  if (first > last || (first & (kPage - 1)) || ((last + 1) & (kPage - 1))) return err(EINVAL);
  return table_.unmap(first, last, unit_->config().split);
}

Translation VtdDomain::translate(u64 iova, Access access) const {
  if (iova > aperture_last_) {
    Translation t;
    t.fault = FaultReason::kOutOfAperture;
    return t;
  }
  return table_.translate(iova, access);
}

void VtdDomain::walk(u64 first, u64 last, const LeafVisitor& visit) const {
  if (first > aperture_last_ || first > last) return;
  table_.walk(first, std::min(last, aperture_last_), 0, visit);
}

u64 VtdDomain::page_sizes() const { return unit_->page_sizes(); }

std::vector<IovaRange> VtdDomain::aperture() const { return {IovaRange{0, aperture_last_}}; }

DomainStats VtdDomain::stats() const {
  DomainStats s;
  s.tables = memory_.tables();
  s.table_bytes = memory_.bytes();
  s.entries = table_.entries();
  s.mapped_bytes = table_.mapped_bytes();
  return s;
}

}  // namespace vfio_emu::iommu::vtd
