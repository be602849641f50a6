// Zeroed, page-aligned memory for page tables, with the accounting the stats report.
//
// One TableMemory per domain. Tables are allocated when a walk first needs them and freed when
// they become empty, so `bytes()` follows what is mapped, not the size of the address space.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vfio_emu::iommu {

class TableMemory {
 public:
  TableMemory() = default;
  TableMemory(const TableMemory&) = delete;
  TableMemory& operator=(const TableMemory&) = delete;
  ~TableMemory();

  // Returns zeroed memory aligned to 4 KiB for one table: `table_bytes` of hardware entries
  // followed by `meta_bytes` of software bookkeeping (both multiples of 4 KiB), or nullptr when
  // out of memory or when fault injection says so.
  void* allocate(std::size_t table_bytes, std::size_t meta_bytes);

  // Releases memory from allocate(), given the same sizes.
  void release(void* p, std::size_t table_bytes, std::size_t meta_bytes);

  std::uint64_t tables() const { return tables_; }
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t meta_bytes() const { return meta_bytes_; }

 private:
  std::uint64_t tables_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t meta_bytes_ = 0;
};

}  // namespace vfio_emu::iommu
