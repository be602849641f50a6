// The simulated IOMMU hardware seen from above: a Unit (one IOMMU instance) makes Domains (one
// translation context with its own page tables). Knows nothing about VFIO.
//
// Thread safety: a Domain is not internally locked. Its owner serialises every call (the core
// holds the owning container's or IOAS's lock), which keeps the hot path free of atomics.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "iommu/types.h"

namespace vfio_emu::iommu {

class TableBudget;

using LeafVisitor = std::function<void(const LeafView&)>;

class Domain {
 public:
  virtual ~Domain() = default;
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;

  virtual Model model() const = 0;

  // Maps [iova, iova+size-1] to [output, output+size-1] with `prot`.
  // Returns the number of bytes whose previous entries were replaced (only TCE replaces; the
  // other backends refuse to map over a present entry).
  // Errors: EINVAL if size is 0, prot has neither read nor write, or iova/output/size are not
  //   aligned to the smallest page size; EOVERFLOW if iova+size-1 or output+size-1 wraps;
  //   ERANGE if the range is outside the aperture or output is beyond the output address width;
  //   EEXIST if a page in the range is already mapped (backends that do not replace);
  //   ENOMEM if a table cannot be allocated; EOPNOTSUPP if the backend does no DMA.
  // All-or-nothing: on error nothing is left mapped by this call.
  virtual Result<u64> map(u64 iova, u64 output, u64 size, Prot prot) = 0;

  // Removes every mapping in [first, last]. Returns the bytes of IOVA that were mapped and are
  // now unmapped (0 for an empty range).
  // Errors: EINVAL if first or last+1 is not aligned to the smallest page size, or (when the
  //   backend is configured to refuse) the range covers only part of a superpage; ENOMEM if a
  //   superpage must be split and the table cannot be allocated. On error nothing changed.
  virtual Result<u64> unmap(u64 first, u64 last) = 0;

  // Walks the tables as the hardware would for a DMA of `access` at `iova`.
  virtual Translation translate(u64 iova, Access access) const = 0;

  // Calls `visit` for each present leaf intersecting [first, last], in increasing IOVA order.
  virtual void walk(u64 first, u64 last, const LeafVisitor& visit) const = 0;

  // Bitmap of supported page sizes (bit n set: 2^n bytes).
  virtual u64 page_sizes() const = 0;

  // The IOVA ranges the domain can translate at all (sorted, disjoint).
  virtual std::vector<IovaRange> aperture() const = 0;

  virtual DomainStats stats() const = 0;

  // Number of levels of the page table (0 for a backend without tables).
  virtual int levels() const = 0;

 protected:
  Domain() = default;
};

class Unit {
 public:
  virtual ~Unit() = default;
  Unit(const Unit&) = delete;
  Unit& operator=(const Unit&) = delete;

  virtual Model model() const = 0;
  const std::string& name() const { return name_; }

  // Allocates a new domain on this unit.
  // Errors: ENOSPC if the unit has run out of domain ids; ENOMEM.
  virtual Result<std::unique_ptr<Domain>> create_domain() = 0;

  // IOVA ranges devices behind this unit cannot use (e.g. the x86 MSI window), sorted.
  virtual std::vector<IovaRange> reserved_regions() const = 0;

  // Page sizes a domain of this unit supports (0 for a unit that does no DMA).
  virtual u64 page_sizes() const = 0;

  // Whether its domains can force DMA to snoop CPU caches (VT-d snoop control; POWER is always
  // coherent). VFIO reports it as VFIO_DMA_CC_IOMMU.
  virtual bool enforces_cache_coherency() const = 0;

  // Whether a device's MSI writes are isolated from other devices' interrupts (VT-d interrupt
  // remapping; Linux's iommu_group_has_isolated_msi). Without it type1 and iommufd refuse the
  // device unless allow_unsafe_interrupts is set.
  virtual bool isolated_msi() const { return true; }

  // The budget (iommu/table_memory.h) the page tables of domains created from now on draw from,
  // shared with other units' domains; null (the default) for none. Set before the unit is used,
  // by the one Emulator the unit belongs to.
  void share_table_budget(std::shared_ptr<TableBudget> budget) {
    table_budget_ = std::move(budget);
  }
  const std::shared_ptr<TableBudget>& table_budget() const { return table_budget_; }

 protected:
  explicit Unit(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
  std::shared_ptr<TableBudget> table_budget_;
};

// Smallest page size in a page-size bitmap (0 if the bitmap is empty).
constexpr u64 min_page_size(u64 bitmap) { return bitmap & (~bitmap + 1); }

}  // namespace vfio_emu::iommu
