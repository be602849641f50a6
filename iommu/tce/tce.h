// IBM POWER TCE: a PHB (unit) whose partitionable endpoints get a table group (domain) of DMA
// windows, each a flat or multi-level TCE table.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "iommu/domain.h"
#include "iommu/radix_table.h"
#include "iommu/table_memory.h"
#include "iommu/tce/tce_hw.h"

namespace vfio_emu::iommu::tce {

struct TceConfig {
  std::string name = "phb0";
  u64 dma32_window_start = 0;             // bus address of window slot 0
  u64 dma32_window_size = u64{1} << 30;   // default 32-bit window (power of two)
  u64 ddw_start = u64{1} << 59;           // bus address of window slot 1 (TVE#1, PCI bit 59)
  u64 page_sizes = (u64{1} << 12) | (u64{1} << 16) | (u64{1} << 21) | (u64{1} << 30);
  u32 max_windows = 2;                    // IOMMU_TABLE_GROUP_MAX_TABLES
  u32 max_levels = 5;                     // POWERNV_IOMMU_MAX_LEVELS
  std::vector<IovaRange> reserved;
};

// The TCE format as the radix walker's policy. Every level of one window has the same number of
// entries; an intermediate level keeps, after its entries, a u32 per entry counting the present
// entries of the level below, so empty levels can be freed.
class TceFormat {
 public:
  TceFormat(int levels, int bits, int page_shift)
      : levels_(levels), bits_(bits), page_shift_(page_shift) {}

  int levels() const { return levels_; }
  int page_shift() const { return page_shift_; }
  int bits() const { return bits_; }
  // A level is 2^bits TCEs (RadixFormat's default table_bytes); leaves only at level 1, so no
  // superpages (the defaults of is_leaf and can_leaf).
  std::size_t meta_bytes(int level) const {
    if (level == 1) return 0;
    const std::size_t b = std::size_t{4} << bits_;
    return (b + 4095) & ~std::size_t{4095};
  }
  bool replaces() const { return true; }

  u64 load(const u64* slot) const { return from_be(*slot); }
  void store(u64* slot, u64 e) const { *slot = to_be(e); }

  bool present(u64 e) const { return (e & kPresentMask) != 0; }
  // In memory the TCE is big-endian: READ and WRITE sit in bits 56 and 57 of the raw value.
  u64 stored_present(u64 raw) const { return (((raw >> 56) & kPresentMask) + kPresentMask) >> 2; }
  u64* table_of(u64 e) const {
    return reinterpret_cast<u64*>(static_cast<u64>(decode(e).rpn) << kRpnShift);
  }
  u64 make_table(u64* child) const {
    Tce t{};
    t.read = 1;
    t.write = 1;
    t.rpn = reinterpret_cast<u64>(child) >> kRpnShift;
    return encode(t);
  }
  u64 make_leaf(u64 output, Prot prot, int) const {
    Tce t{};
    // PowerNV forces READ whenever WRITE is set (pnv_tce_build).
    t.read = (prot & (kProtRead | kProtWrite)) != 0;
    t.write = (prot & kProtWrite) != 0;
    t.rpn = output >> kRpnShift;
    return encode(t);
  }
  u64 leaf_output(u64 e, int) const {
    return (static_cast<u64>(decode(e).rpn) << kRpnShift) & ~((u64{1} << page_shift_) - 1);
  }
  Prot leaf_prot(u64 e) const {
    const Tce t = decode(e);
    return static_cast<Prot>((t.read ? kProtRead : 0) | (t.write ? kProtWrite : 0));
  }
  u32 child_count(u64* table, u32 idx, u64, int) const { return counts(table)[idx]; }
  void set_child_count(u64* table, u32 idx, u64* e, int, u32 n) const {
    counts(table)[idx] = n;
    store(&table[idx], *e);
  }

 private:
  u32* counts(u64* table) const { return reinterpret_cast<u32*>(table + (std::size_t{1} << bits_)); }

  int levels_;
  int bits_;
  int page_shift_;
};
static_assert(RadixFormat<TceFormat>);

// One DMA window: a TCE table mapping [bus_start, bus_start + size - 1].
struct WindowInfo {
  u32 slot = 0;
  u64 bus_start = 0;
  u64 size = 0;
  int page_shift = 0;
  int levels = 0;
  int level_bits = 0;    // entries per level = 2^level_bits
  u64 table_bytes = 0;   // hardware bytes currently allocated for this window's levels
};

class TceUnit;

class TceDomain final : public Domain {
 public:
  ~TceDomain() override;

  Model model() const override { return Model::kTce; }
  // Writes one TCE per IOMMU page of the window containing iova; present entries are replaced.
  // Errors beyond Domain::map: ERANGE if [iova, iova+size-1] is not inside one window;
  //   EINVAL if iova, output or size is not aligned to that window's page size.
  Result<u64> map(u64 iova, u64 output, u64 size, Prot prot) override;
  // Clears every TCE in [first, last], mapped or not, in every window it crosses; the bytes
  // returned are those of entries that were present. Errors: EINVAL if an edge is not aligned to
  // the page size of the window it falls in.
  Result<u64> unmap(u64 first, u64 last) override;
  Translation translate(u64 iova, Access access) const override;
  void walk(u64 first, u64 last, const LeafVisitor& visit) const override;
  u64 page_sizes() const override;
  std::vector<IovaRange> aperture() const override;
  DomainStats stats() const override;
  int levels() const override;

  // Creates a window in the first free slot; the hardware chooses the bus address from the slot
  // (slot 0: dma32_window_start, later slots: from ddw_start up). Returns the bus address.
  // Errors: ENOSPC if every slot is used; EINVAL if the unit does not support 2^page_shift
  //   pages, levels is 0 or above max_levels, window_size is not a power of two, smaller than a
  //   page, does not fit the bus space, or the table would exceed the 55-bit limit; ENOMEM.
  Result<u64> create_window(u32 page_shift, u64 window_size, u32 levels);
  // Removes the window starting at bus_start, clearing all its TCEs and freeing its tables.
  // Errors: EINVAL if no window starts there.
  Status remove_window(u64 bus_start);
  // Replaces the TCE for the page at `bus` with `tce` (raw, CPU byte order) and returns the old
  // one. Errors: ERANGE outside every window; EINVAL if `bus` or the address in `tce` is not
  // aligned to the window's page size; ENOMEM.
  Result<u64> exchange(u64 bus, u64 tce);

  std::vector<WindowInfo> windows() const;
  const TceUnit& unit() const { return *unit_; }

 private:
  friend class TceUnit;
  struct Window {
    Window(u32 slot, u64 bus, u64 size, int page_shift, int levels, int bits,
           std::shared_ptr<TableBudget> budget);
    u32 slot;
    u64 bus_start;
    u64 bus_last;
    u64 size;
    TableMemory memory;
    RadixTable<TceFormat> table;
  };

  explicit TceDomain(std::shared_ptr<TceUnit> unit);
  Window* window_at(u64 bus) const;

  std::shared_ptr<TceUnit> unit_;
  std::vector<std::unique_ptr<Window>> slots_;
};

class TceUnit final : public Unit, public std::enable_shared_from_this<TceUnit> {
 public:
  // Errors: EINVAL if the dma32 window is not a power of two, the page sizes hold none of
  //   4K/64K/2M/16M/256M/1G/16G, max_windows is 0, or max_levels is outside 1..5.
  static Result<std::shared_ptr<TceUnit>> create(TceConfig config);

  Model model() const override { return Model::kTce; }
  Result<std::unique_ptr<Domain>> create_domain() override;
  std::vector<IovaRange> reserved_regions() const override { return config_.reserved; }
  u64 page_sizes() const override { return config_.page_sizes; }
  bool enforces_cache_coherency() const override { return true; }
  const TceConfig& config() const { return config_; }

 private:
  explicit TceUnit(TceConfig config) : Unit(config.name), config_(std::move(config)) {}
  TceConfig config_;
};

// Linux's sizing of a window's levels (pnv_pci_ioda2_table_alloc_pages): entries are split
// evenly over the levels, each level at least 4 KiB. Returns the index bits per level, or -1 if
// the parameters are invalid.
int tce_level_bits(u32 page_shift, u64 window_size, u32 levels, u32 max_levels);

}  // namespace vfio_emu::iommu::tce
