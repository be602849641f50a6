#include "iommu/table_memory.h"

#include <sys/mman.h>

#include <cassert>
#include <cstdlib>
#include <cstring>

#include "iommu/fault_injection.h"

namespace vfio_emu::iommu {
namespace {
// Above this size tables come from mmap: the kernel hands out zero pages lazily, so a large flat
// TCE table only costs memory where entries are actually written.
constexpr std::size_t kMmapThreshold = 64 * 1024;
constexpr std::size_t kPage = 4096;
}  // namespace

TableMemory::~TableMemory() { assert(tables_ == 0 && "page tables leaked"); }

void* TableMemory::allocate(std::size_t table_bytes, std::size_t meta_bytes) {
  const std::size_t bytes = table_bytes + meta_bytes;
  assert(table_bytes % kPage == 0 && meta_bytes % kPage == 0 && table_bytes > 0);
  if (fault_injection::should_fail()) return nullptr;
  void* p;
  if (bytes >= kMmapThreshold) {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
  } else {
    p = std::aligned_alloc(kPage, bytes);
    if (p == nullptr) return nullptr;
    std::memset(p, 0, bytes);
  }
  tables_ += 1;
  bytes_ += table_bytes;
  meta_bytes_ += meta_bytes;
  return p;
}

void TableMemory::release(void* p, std::size_t table_bytes, std::size_t meta_bytes) {
  if (p == nullptr) return;
  const std::size_t bytes = table_bytes + meta_bytes;
  if (bytes >= kMmapThreshold)
    munmap(p, bytes);
  else
    std::free(p);
  tables_ -= 1;
  bytes_ -= table_bytes;
  meta_bytes_ -= meta_bytes;
}

}  // namespace vfio_emu::iommu
