// VFIO sPAPR TCE IOMMU backend (VFIO_SPAPR_TCE_IOMMU = v1, VFIO_SPAPR_TCE_v2_IOMMU = v2), as
// Linux's drivers/vfio/vfio_iommu_spapr_tce.c (6.4+, "borrowing" table group ops), on the
// simulated TCE tables, plus the VFIO_EEH_PE_OP ioctl on the PEs of its groups (core/eeh.h).
//
// A container has one TceDomain, on the TCE unit (PHB) of its first group; every group of the
// container is behind that unit and shares the domain's windows, as Linux programs the same
// iommu_table into every table group. TCEs hold the caller's virtual address (the emulator does
// not pin). The order of checks and the errno of each follow shared/spec/linux-vfio-uapi.md §4.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <vector>

#include "core/eeh.h"
#include "core/objects.h"
#include "iommu/tce/tce.h"

namespace vfio_emu::core {

// One VFIO_IOMMU_SPAPR_REGISTER_MEMORY region (Linux's mm_iommu_table_group_mem_t). Linux keeps
// these per process (mm); the emulator keeps them per container, i.e. as if the container's
// process used no other sPAPR container.
struct SpaprRegion {
  u64 vaddr = 0;
  u64 size = 0;
  // On the container's prereg list. False once UNREGISTER dropped it while TCEs still pointed
  // into it: Linux then returns 0 but the region stays pinned, charged and usable for MAP until
  // the process (here: the container's driver) goes away.
  bool listed = true;
  // mm_iommu_table_group_mem_t.pageshift: the largest IOMMU page the region can back: its
  // natural alignment, limited by the pages behind it (core/context.h pinned_page_shift): 4 KiB
  // (the emulated kernel's PAGE_SIZE) unless they are hugetlb pages.
  u32 shift = 12;
  u64 last() const { return vaddr + (size - 1); }
  int page_shift() const { return static_cast<int>(shift); }
};

class SpaprDriver final : public IommuDriver {
 public:
  // `type` is VFIO_SPAPR_TCE_IOMMU or VFIO_SPAPR_TCE_v2_IOMMU.
  SpaprDriver(Emulator& emu, Container& container, u32 type);
  // tce_iommu_release: everything charged to the container's process is given back.
  ~SpaprDriver() override;

  u32 type() const override;
  std::string_view name() const override { return v2_ ? "spapr-tce-v2" : "spapr-tce"; }
  // tce_iommu_attach_group. Errors: ENODEV (not behind a TCE unit), EINVAL (v2 on a unit without
  // dynamic DMA windows), EBUSY (v1 already has a group; the group is already attached), EPERM
  // (the group is behind another TCE unit than the container's), ENOMEM.
  Status attach_group(Group& g, IoctlCall& call) override;
  // tce_iommu_detach_group: the group's windows lose every TCE (they are shared with the
  // container's other groups, so theirs go too); its EEH PE is recovered.
  void detach_group(Group& g) override;
  long check_extension(u32 ext) const override;
  std::vector<std::shared_ptr<HwDomain>> domains() const override;
  bool group_frozen(const Group& g) const override { return eeh_.frozen(g); }
  // The TCE walk of the container's windows; the output is an address in the container's bound
  // process (a TCE holds the user address MAP_DMA was given). EIO while the group's PE has its
  // DMA frozen or is held in reset (EEH stops the PE's DMA).
  Result<DmaTranslation> dma_translate(const Group& g, u64 iova,
                                       iommu::Access access) const override;
  // For the tools (core/spapr_describe.cc): the windows, registered memory and charges; the
  // TCEs are the mappings (sPAPR keeps no record of MAP calls); `check` finds TCEs of a v2
  // container pointing outside its registered memory.
  nlohmann::ordered_json describe() const override;
  void visit_mappings(u64 first, std::optional<pid_t> pid,
                      const std::function<bool(const MappingView&)>& visit) const override;
  void check(const std::string& where, inspect::CheckReport& report) const override;
  // "Sanity check to prevent one userspace from manipulating another userspace mm": EPERM for
  // any ioctl from another process than the one the container is bound to.
  Status ioctl_prologue(const IoctlCall& call) const override;

  // The ioctls (container mu held). Each returns the errno of shared/spec §4, in its order.
  Result<long> get_info(IoctlCall& call);
  Result<long> enable(IoctlCall& call);
  Result<long> disable(IoctlCall& call);
  Result<long> register_memory(IoctlCall& call);
  Result<long> unregister_memory(IoctlCall& call);
  Result<long> map_dma(IoctlCall& call);
  Result<long> unmap_dma(IoctlCall& call);
  Result<long> create_window(IoctlCall& call);
  Result<long> remove_window(IoctlCall& call);
  Result<long> eeh_pe_op(IoctlCall& call);

  // ---- for the inspection tools (container mu held) ----
  bool v2() const { return v2_; }
  // v1: VFIO_IOMMU_ENABLE done; v2: some memory was registered (it stays enabled).
  bool enabled() const { return enabled_; }
  // The process the container is bound to (its "mm"), 0 before the first binding ioctl.
  pid_t owner() const { return mm_; }
  bool default_window_pending() const { return def_window_pending_; }
  std::vector<iommu::tce::WindowInfo> windows() const;
  const std::vector<SpaprRegion>& regions() const { return regions_; }
  const std::shared_ptr<HwDomain>& domain() const { return domain_; }
  const std::vector<Group*>& groups() const { return groups_; }
  EehPeState pe_state(const Group& g) const { return eeh_.state(g); }
  // Bytes of RLIMIT_MEMLOCK this container has charged to owner(): the v1 32-bit window, the
  // registered regions and the TCE tables of its windows.
  u64 locked_bytes() const;

 private:
  const iommu::tce::TceConfig& unit_config() const;
  iommu::tce::TceDomain& tce() const;
  void bind_owner(const IoctlCall& call);
  Status charge(const IoctlCall& call, u64 bytes);
  void uncharge(u64 bytes);
  // tce_iommu_create_window / tce_iommu_create_default_window. Return the window's bus address.
  Result<u64> add_window(IoctlCall& call, u32 page_shift, u64 window_size, u32 levels);
  Status create_default_window(IoctlCall& call);
  Status begin_window_ioctl(IoctlCall& call);
  // The window containing `bus` (tce_iommu_find_table), if any.
  bool find_window(u64 bus, iommu::tce::WindowInfo* out) const;
  // The registered region holding all of [vaddr, vaddr + len - 1] (mm_iommu_lookup), or null.
  const SpaprRegion* region_holding(u64 vaddr, u64 len) const;
  bool region_mapped(const SpaprRegion& r) const;
  void clear_all_windows();

  Emulator& emu_;
  Container& container_;
  bool v2_;
  bool enabled_ = false;
  bool def_window_pending_ = false;
  pid_t mm_ = 0;
  u64 enable_charge_ = 0;                    // v1: bytes charged by VFIO_IOMMU_ENABLE
  std::vector<Group*> groups_;               // in attach order
  EehPes eeh_;                               // the PEs of groups_
  std::shared_ptr<HwDomain> domain_;
  std::map<u64, u64> table_charge_;          // window bus start -> bytes charged for its table
  std::vector<SpaprRegion> regions_;
};

// `type` is VFIO_SPAPR_TCE_IOMMU or VFIO_SPAPR_TCE_v2_IOMMU.
std::unique_ptr<IommuDriver> make_spapr_driver(Emulator& emu, Container& container, u32 type);

// CHECK_EXTENSION answers of the sPAPR driver before any container has it (iommu_data NULL).
long spapr_check_extension_unset(u32 ext);

}  // namespace vfio_emu::core
