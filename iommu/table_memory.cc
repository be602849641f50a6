#include "iommu/table_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>
#include <utility>

#include "iommu/fault_injection.h"

namespace vfio_emu::iommu {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kChunk = std::size_t{2} << 20;
constexpr std::uint32_t kPagesPerChunk = kChunk / kPage;

// kChunk bytes aligned to kChunk, zeroed, or nullptr.
std::uint8_t* map_aligned_chunk() {
  void* p = mmap(nullptr, 2 * kChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const auto raw = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (raw + kChunk - 1) & ~(kChunk - 1);
  if (aligned > raw) munmap(p, aligned - raw);
  const std::uintptr_t end = raw + 2 * kChunk;
  if (end > aligned + kChunk) munmap(reinterpret_cast<void*>(aligned + kChunk), end - aligned - kChunk);
  return reinterpret_cast<std::uint8_t*>(aligned);
}

#ifndef NDEBUG
bool all_zero(const void* p, std::size_t n) {
  const auto* w = static_cast<const std::uint64_t*>(p);
  for (std::size_t i = 0; i < n / 8; ++i)
    if (w[i] != 0) return false;
  return true;
}
#endif

thread_local std::optional<TableBudget::Refusal> last_refusal;

}  // namespace

bool TableBudget::charge(std::uint64_t bytes) {
  std::uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit_ || used > limit_ - bytes) {
      last_refusal = Refusal{bytes, used, limit_};
      return false;
    }
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void TableBudget::uncharge(std::uint64_t bytes) {
  used_.fetch_sub(bytes, std::memory_order_relaxed);
}

std::optional<TableBudget::Refusal> TableBudget::take_refusal() {
  return std::exchange(last_refusal, std::nullopt);
}

TableMemory::~TableMemory() {
  assert(tables_ == 0 && "page tables leaked");
  for (auto& [base, chunk] : chunks_) munmap(chunk.base, kChunk);
  for (auto& [p, bytes] : spare_blocks_) munmap(p, bytes);
}

void* TableMemory::allocate(std::size_t table_bytes, std::size_t meta_bytes) {
  const std::size_t bytes = table_bytes + meta_bytes;
  assert(table_bytes % kPage == 0 && meta_bytes % kPage == 0 && table_bytes > 0);
  if (fault_injection::should_fail()) return nullptr;
  if (budget_ && !budget_->charge(bytes)) return nullptr;
  void* p;
  if (bytes == kPage) {
    p = page_from_pool();
  } else {
    // Room for every block release() may keep (each is at least two pages), so that releasing
    // never allocates.
    try {
      spare_blocks_.reserve(kSpareBlockBytes / (2 * kPage));
    } catch (const std::bad_alloc&) {
      return nullptr;
    }
    p = nullptr;
    for (auto it = spare_blocks_.begin(); it != spare_blocks_.end(); ++it) {
      if (it->second != bytes) continue;
      p = it->first;  // zero: released only when empty
      spare_block_bytes_ -= bytes;
      spare_blocks_.erase(it);
      break;
    }
    if (p == nullptr) {
      p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) p = nullptr;
    }
  }
  if (p == nullptr) {
    if (budget_) budget_->uncharge(bytes);
    return nullptr;
  }
  tables_ += 1;
  bytes_ += table_bytes;
  meta_bytes_ += meta_bytes;
  return p;
}

void TableMemory::release(void* p, std::size_t table_bytes, std::size_t meta_bytes) {
  if (p == nullptr) return;
  const std::size_t bytes = table_bytes + meta_bytes;
  assert(all_zero(p, bytes) && "a table must be empty when it is released");
  if (bytes == kPage) {
    page_to_pool(p);
  } else if (spare_block_bytes_ + bytes <= kSpareBlockBytes &&
             spare_blocks_.size() < spare_blocks_.capacity()) {
    spare_blocks_.emplace_back(p, bytes);
    spare_block_bytes_ += bytes;
  } else {
    munmap(p, bytes);
  }
  if (budget_) budget_->uncharge(bytes);
  tables_ -= 1;
  bytes_ -= table_bytes;
  meta_bytes_ -= meta_bytes;
}

void* TableMemory::page_from_pool() {
  while (!with_room_.empty()) {
    Chunk& c = chunks_.at(with_room_.back());
    std::uint32_t page;
    if (!c.free_list.empty()) {
      page = c.free_list.back();
      c.free_list.pop_back();
    } else if (c.bump < kPagesPerChunk) {
      page = c.bump++;
    } else {
      with_room_.pop_back();  // full; it comes back when a page is released
      continue;
    }
    ++c.used;
    return c.base + std::size_t{page} * kPage;
  }
  std::uint8_t* base = map_aligned_chunk();
  if (base == nullptr) return nullptr;
  const auto key = reinterpret_cast<std::uintptr_t>(base);
  // Everything the chunk's bookkeeping will ever need is allocated now, so that a failure is
  // nullptr here (ENOMEM for the walk, which undoes its work) and releasing a page never
  // allocates: with_room_ holds each chunk at most once, a free list at most every page.
  try {
    with_room_.reserve(chunks_.size() + 1);
    std::vector<std::uint16_t> free_list;
    free_list.reserve(kPagesPerChunk);
    Chunk& c = chunks_[key];
    c.base = base;
    c.bump = 1;
    c.used = 1;
    c.free_list = std::move(free_list);
  } catch (const std::bad_alloc&) {
    chunks_.erase(key);
    munmap(base, kChunk);
    return nullptr;
  }
  with_room_.push_back(key);
  return base;
}

void TableMemory::page_to_pool(void* p) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t key = addr & ~(kChunk - 1);
  Chunk& c = chunks_.at(key);
  const bool was_full = c.free_list.empty() && c.bump == kPagesPerChunk;
  c.free_list.push_back(static_cast<std::uint16_t>((addr - key) / kPage));
  --c.used;
  if (was_full) with_room_.push_back(key);
  if (c.used == 0) {
    // Keep one empty chunk as a spare; return any other to the kernel.
    for (const auto& [other_key, other] : chunks_) {
      if (other_key != key && other.used == 0) {
        drop_chunk(key);
        return;
      }
    }
  }
}

void TableMemory::drop_chunk(std::uintptr_t key) {
  munmap(reinterpret_cast<void*>(key), kChunk);
  chunks_.erase(key);
  with_room_.erase(std::remove(with_room_.begin(), with_room_.end(), key), with_room_.end());
}

}  // namespace vfio_emu::iommu
