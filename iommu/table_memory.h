// Zeroed, page-aligned memory for page tables, with the accounting the stats report.
//
// One TableMemory per domain. Tables are allocated when a walk first needs them and freed when
// they become empty, so `bytes()` follows what is mapped, not the size of the address space.
//
// 4 KiB tables (every VT-d table, small TCE levels) come from 2 MiB chunks: a table is freed
// only once all its entries are zero, so a recycled page needs no clearing, and a fresh page
// comes zeroed from the kernel. A chunk whose pages are all free is returned to the kernel,
// except one spare kept to avoid mmap churn when a range is mapped and unmapped repeatedly.
// Larger tables (multi-page TCE levels) are mmapped one by one; up to kSpareBlockBytes of them
// are kept when released (they are zero then) and handed out again for a table of the same size,
// so a window mapped and cleared repeatedly does not fault its tables in afresh every time.
//
// Domains may share a TableBudget: the bytes of tables all of them may hold together. An
// allocation beyond it fails like an allocation the kernel refuses (the caller sees ENOMEM).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace vfio_emu::iommu {

class TableBudget {
 public:
  explicit TableBudget(std::uint64_t limit) : limit_(limit) {}
  TableBudget(const TableBudget&) = delete;
  TableBudget& operator=(const TableBudget&) = delete;

  // Takes `bytes` from the budget; false (and nothing taken) if that would pass the limit. A
  // refusal is remembered for this thread until take_refusal().
  bool charge(std::uint64_t bytes);
  void uncharge(std::uint64_t bytes);
  std::uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  std::uint64_t limit() const { return limit_; }

  // The last refusal on this thread, if any since the last call: a failed map can say that the
  // limit, not the kernel, was out of memory. Domains are used synchronously on the caller's
  // thread, so the refusal seen after a failed map is that map's.
  struct Refusal {
    std::uint64_t wanted;  // bytes of the table that was refused
    std::uint64_t used;    // bytes in use then
    std::uint64_t limit;
  };
  static std::optional<Refusal> take_refusal();

 private:
  std::atomic<std::uint64_t> used_{0};
  const std::uint64_t limit_;
};

class TableMemory {
 public:
  // `budget` (shared by other domains, or null for none) bounds the tables allocated here.
  explicit TableMemory(std::shared_ptr<TableBudget> budget = nullptr)
      : budget_(std::move(budget)) {}
  TableMemory(const TableMemory&) = delete;
  TableMemory& operator=(const TableMemory&) = delete;
  ~TableMemory();

  // Returns zeroed memory aligned to 4 KiB for one table: `table_bytes` of hardware entries
  // followed by `meta_bytes` of software bookkeeping (both multiples of 4 KiB), or nullptr when
  // out of memory, beyond the budget (both parts count), or when fault injection says so.
  void* allocate(std::size_t table_bytes, std::size_t meta_bytes);

  // Releases memory from allocate(), given the same sizes. The memory must be all zero again
  // (a table is released only when empty), which is what lets it be reused without clearing.
  void release(void* p, std::size_t table_bytes, std::size_t meta_bytes);

  std::uint64_t tables() const { return tables_; }
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t meta_bytes() const { return meta_bytes_; }

 private:
  struct Chunk {
    std::uint8_t* base = nullptr;
    std::uint32_t used = 0;                // pages handed out
    std::uint32_t bump = 0;                // pages never handed out start here
    std::vector<std::uint16_t> free_list;  // pages handed out before and released since
  };

  void* page_from_pool();
  void page_to_pool(void* p);
  void drop_chunk(std::uintptr_t base);

  static constexpr std::size_t kSpareBlockBytes = std::size_t{512} << 10;

  std::shared_ptr<TableBudget> budget_;

  std::unordered_map<std::uintptr_t, Chunk> chunks_;  // by 2 MiB-aligned base
  std::vector<std::uintptr_t> with_room_;             // chunks that may have free pages
  std::vector<std::pair<void*, std::size_t>> spare_blocks_;  // released multi-page tables
  std::size_t spare_block_bytes_ = 0;
  std::uint64_t tables_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t meta_bytes_ = 0;
};

}  // namespace vfio_emu::iommu
