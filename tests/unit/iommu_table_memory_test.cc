// TableMemory: zeroed, aligned tables; accounting that follows what is allocated; released
// multi-page tables reused for the same size (up to the spare budget) and never counted.
#include <sys/mman.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "iommu/fault_injection.h"
#include "iommu/table_memory.h"

using vfio_emu::iommu::TableMemory;

namespace {

bool all_zero(const void* p, std::size_t n) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

// Whether every page of [p, p + n) is resident: a reused table was written before (resident), a
// fresh anonymous mapping was not (not resident until touched).
bool resident(void* p, std::size_t n) {
  std::vector<unsigned char> vec(n / 4096);
  REQUIRE(mincore(p, n, vec.data()) == 0);
  for (unsigned char v : vec)
    if ((v & 1) == 0) return false;
  return true;
}

// Uses a table as a walk would: writes an entry into each page, then empties it again.
void use(void* p, std::size_t n) {
  auto* e = static_cast<volatile std::uint64_t*>(p);
  for (std::size_t i = 0; i < n / 8; i += 512) e[i] = 0x1003;
  for (std::size_t i = 0; i < n / 8; i += 512) e[i] = 0;
}

}  // namespace

TEST_CASE("table memory: pages and blocks are zeroed, aligned and accounted", "[table_memory]") {
  TableMemory m;
  void* page = m.allocate(4096, 0);
  void* block = m.allocate(32768, 4096);
  REQUIRE(page != nullptr);
  REQUIRE(block != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(page) % 4096 == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(block) % 4096 == 0);
  CHECK(all_zero(page, 4096));
  CHECK(all_zero(block, 32768 + 4096));
  CHECK(m.tables() == 2);
  CHECK(m.bytes() == 4096 + 32768);
  CHECK(m.meta_bytes() == 4096);
  m.release(page, 4096, 0);
  m.release(block, 32768, 4096);
  CHECK(m.tables() == 0);
  CHECK(m.bytes() == 0);
  CHECK(m.meta_bytes() == 0);
}

TEST_CASE("table memory: a released block is handed out again for the same size only",
          "[table_memory]") {
  TableMemory m;
  void* a = m.allocate(32768, 0);
  REQUIRE(a != nullptr);
  use(a, 32768);
  m.release(a, 32768, 0);
  CHECK(m.bytes() == 0);  // a spare is not table memory
  void* other = m.allocate(65536, 0);  // another size: not the spare
  CHECK(other != a);
  void* again = m.allocate(32768, 0);
  CHECK(again == a);
  CHECK(resident(again, 32768));  // the same memory, not a fresh mapping at the same address
  CHECK(all_zero(again, 32768));
  m.release(other, 65536, 0);
  m.release(again, 32768, 0);
}

TEST_CASE("table memory: spares are bounded; the rest goes back to the kernel",
          "[table_memory]") {
  TableMemory m;
  constexpr std::size_t kBlock = 256 * 1024;
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(m.allocate(kBlock, 0));
    REQUIRE(blocks.back() != nullptr);
  }
  for (void* b : blocks) use(b, kBlock);
  for (void* b : blocks) m.release(b, kBlock, 0);
  // Two 256 KiB blocks fill the 512 KiB budget: the first two released come back, in order; the
  // others were unmapped (a fresh mapping may land at an old address, so it is not compared).
  std::vector<void*> again;
  for (int i = 0; i < 4; ++i) {
    again.push_back(m.allocate(kBlock, 0));
    REQUIRE(again.back() != nullptr);
  }
  CHECK(again[0] == blocks[0]);
  CHECK(again[1] == blocks[1]);
  CHECK(resident(again[0], kBlock));
  CHECK(resident(again[1], kBlock));
  CHECK_FALSE(resident(again[2], kBlock));
  CHECK_FALSE(resident(again[3], kBlock));
  for (void* b : again) CHECK(all_zero(b, kBlock));  // reading maps the zero page: after mincore
  for (void* b : again) m.release(b, kBlock, 0);
}

TEST_CASE("table memory: an injected failure allocates nothing", "[table_memory]") {
  namespace fi = vfio_emu::iommu::fault_injection;
  TableMemory m;
  fi::fail_nth(1);
  CHECK(m.allocate(4096, 0) == nullptr);
  CHECK(fi::consumed());
  fi::fail_nth(1);
  CHECK(m.allocate(32768, 0) == nullptr);
  CHECK(m.tables() == 0);
  CHECK(m.bytes() == 0);
}

TEST_CASE("table memory: a shared budget bounds the tables of every TableMemory using it",
          "[table_memory][budget]") {
  using vfio_emu::iommu::TableBudget;
  auto budget = std::make_shared<TableBudget>(5 * 4096);
  TableMemory a(budget), b(budget);
  (void)TableBudget::take_refusal();
  void* p1 = a.allocate(4096, 0);
  void* p2 = b.allocate(8192, 4096);  // the table and its bookkeeping both count
  REQUIRE(p1 != nullptr);
  REQUIRE(p2 != nullptr);
  CHECK(budget->used() == 4 * 4096);
  CHECK_FALSE(TableBudget::take_refusal());
  CHECK(a.allocate(8192, 0) == nullptr);  // 6 pages would pass 5
  auto refusal = TableBudget::take_refusal();
  REQUIRE(refusal);
  CHECK(refusal->wanted == 8192);
  CHECK(refusal->used == 4 * 4096);
  CHECK(refusal->limit == 5 * 4096);
  CHECK_FALSE(TableBudget::take_refusal());  // taken once
  CHECK(a.tables() == 1);
  CHECK(budget->used() == 4 * 4096);
  void* p3 = a.allocate(4096, 0);  // exactly the limit
  REQUIRE(p3 != nullptr);
  CHECK(budget->used() == 5 * 4096);
  b.release(p2, 8192, 4096);
  CHECK(budget->used() == 2 * 4096);
  void* p4 = a.allocate(8192, 0);
  REQUIRE(p4 != nullptr);
  a.release(p1, 4096, 0);
  a.release(p3, 4096, 0);
  a.release(p4, 8192, 0);
  CHECK(budget->used() == 0);
}
