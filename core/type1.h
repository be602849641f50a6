// VFIO type1 IOMMU backend (VFIO_TYPE1_IOMMU = v1, VFIO_TYPE1v2_IOMMU = v2), as Linux's
// drivers/vfio/vfio_iommu_type1.c: mappings are recorded one per MAP_DMA (never merged) and
// programmed into one domain per IOMMU unit in use. Groups behind a nop unit are "emulated"
// (as mdev groups are in Linux): their mappings are only recorded.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "core/objects.h"

namespace vfio_emu::core {

// One MAP_DMA: Linux's struct vfio_dma.
struct Type1Dma {
  u64 iova = 0;
  u64 size = 0;
  u64 vaddr = 0;        // current user address (VADDR updates change it)
  u64 output = 0;       // what the page tables were programmed with (the vaddr at MAP time)
  Prot prot = 0;
  pid_t owner = 0;      // process whose memory it is; locked memory is charged to it
  u64 locked = 0;       // bytes charged to owner (0 while nothing is pinned)
  bool lock_cap = false;  // the mapper had CAP_IPC_LOCK (dma->lock_cap): no RLIMIT_MEMLOCK
  bool vaddr_invalid = false;
  bool iommu_mapped = false;  // programmed into the domains
  u64 last() const { return iova + (size - 1); }
};

class Type1Driver final : public IommuDriver {
 public:
  // `type` is VFIO_TYPE1_IOMMU or VFIO_TYPE1v2_IOMMU.
  Type1Driver(Emulator& emu, Container& container, u32 type);
  ~Type1Driver() override;

  u32 type() const override { return v2_ ? 3u : 1u; }
  std::string_view name() const override { return v2_ ? "type1v2" : "type1"; }
  Status attach_group(Group& g, IoctlCall& call) override;
  void detach_group(Group& g) override;
  long check_extension(u32 ext) const override;
  Result<DmaTranslation> dma_translate(const Group& g, u64 iova,
                                       iommu::Access access) const override;
  std::vector<std::shared_ptr<HwDomain>> domains() const override;
  // For the tools (core/type1_describe.cc): the recorded mappings (MAP_DMA calls), and their
  // IOVA space; `check` compares every domain with the mappings programmed into it.
  nlohmann::ordered_json describe() const override;
  void visit_mappings(u64 first, std::optional<pid_t> pid,
                      const std::function<bool(const MappingView&)>& visit) const override;
  void check(const std::string& where, inspect::CheckReport& report) const override;

  // The ioctls (container mu held).
  Result<long> get_info(IoctlCall& call);
  Result<long> map_dma(IoctlCall& call);
  Result<long> unmap_dma(IoctlCall& call);
  Result<long> dirty_pages(IoctlCall& call);

  const std::map<u64, Type1Dma>& dmas() const { return dmas_; }
  u64 pgsize_bitmap() const { return pgsize_bitmap_; }
  const std::vector<iommu::IovaRange>& iova_list() const { return iova_list_; }

 private:
  struct DomainEntry {
    std::shared_ptr<HwDomain> domain;
    std::vector<Group*> groups;
  };

  u64 min_pgsize() const { return pgsize_bitmap_ & (~pgsize_bitmap_ + 1); }
  bool has_emulated() const { return !emulated_.empty(); }
  // Any mapping overlapping [first, last] (the lowest one), or nullptr.
  Type1Dma* find_overlap(u64 first, u64 last);
  // EINVAL if [first, last] would cut a mapping at either end (type1v2 never bisects).
  Status check_no_bisect(const IoctlCall& call, u64 first, u64 last);
  // Programs `dma` into every domain, pinning (charging) its pages first.
  Status pin_and_map(IoctlCall& call, Type1Dma& dma);
  // Maps every mapping into a domain being added (pinning those only recorded). Errors: EFAULT,
  // ENOMEM, the domain's map errors; nothing stays pinned or charged on error.
  Status replay(IoctlCall& call, Group& g, HwDomain& fresh);
  void unmap_from_domains(const Type1Dma& dma);
  void remove_dma(std::map<u64, Type1Dma>::iterator it);
  void recompute_pgsize_bitmap();
  // The IOVA list for a set of domains: apertures intersected, reserved regions cut out.
  std::vector<iommu::IovaRange> build_iova_list(const std::vector<const iommu::Domain*>& doms,
                                                const std::vector<Group*>& groups) const;
  Status or_dirty_bits(IoctlCall& call, const Type1Dma& dma, u64 base_iova, u64 bitmap_addr,
                       u64 pgsize);

  Emulator& emu_;
  Container& container_;
  bool v2_;
  std::vector<DomainEntry> domains_;
  std::vector<Group*> emulated_;
  std::map<u64, Type1Dma> dmas_;  // by iova, never overlapping
  u64 pgsize_bitmap_;
  u32 dma_avail_;
  std::vector<iommu::IovaRange> iova_list_;
  bool dirty_tracking_ = false;
  u32 vaddr_invalid_count_ = 0;
};

}  // namespace vfio_emu::core
