// POWER TCE tables: windows, TCE semantics, multi-level lazy levels, the top of the bus space.
#include <catch2/catch.hpp>

#include <vector>

#include "iommu/fault_injection.h"
#include "iommu/tce/tce.h"

using namespace vfio_emu;
using namespace vfio_emu::iommu;
using namespace vfio_emu::iommu::tce;

namespace {

constexpr u64 K4 = 4096;
constexpr u64 K64 = 65536;
constexpr u64 G1 = u64{1} << 30;

std::shared_ptr<TceUnit> make_unit(TceConfig cfg = {}) {
  auto r = TceUnit::create(std::move(cfg));
  REQUIRE(r.ok());
  return r.take();
}

std::unique_ptr<TceDomain> make_domain(const std::shared_ptr<TceUnit>& unit) {
  auto r = unit->create_domain();
  REQUIRE(r.ok());
  return std::unique_ptr<TceDomain>(static_cast<TceDomain*>(r.take().release()));
}

std::vector<LeafView> leaves(const Domain& d, u64 first = 0, u64 last = kU64Max) {
  std::vector<LeafView> out;
  d.walk(first, last, [&](const LeafView& v) { out.push_back(v); });
  return out;
}

// The raw 8 bytes the walk read, straight from table memory.
u64 raw_memory(const WalkStep& s) {
  return *reinterpret_cast<const u64*>(s.table + 8 * u64{s.index});
}

}  // namespace

TEST_CASE("tce unit: configuration is validated", "[tce]") {
  TceConfig cfg;
  cfg.dma32_window_size = 3 * G1;
  CHECK(TceUnit::create(cfg).error() == EINVAL);
  cfg = {};
  cfg.page_sizes = u64{1} << 13;
  CHECK(TceUnit::create(cfg).error() == EINVAL);
  cfg = {};
  cfg.max_levels = 6;
  CHECK(TceUnit::create(cfg).error() == EINVAL);
  cfg = {};
  cfg.max_windows = 0;
  CHECK(TceUnit::create(cfg).error() == EINVAL);
}

TEST_CASE("tce: level sizing follows Linux", "[tce]") {
  CHECK(tce_level_bits(12, G1, 1, 5) == 18);            // flat: 2^18 entries, 2 MiB
  CHECK(tce_level_bits(12, G1, 2, 5) == 9);             // 2 x 512 entries
  CHECK(tce_level_bits(12, G1, 3, 5) == 9);             // 6 bits per level, rounded up to 4 KiB
  CHECK(tce_level_bits(16, u64{1} << 40, 2, 5) == 12);  // 2^24 entries: 2 x 4096
  CHECK(tce_level_bits(12, G1, 0, 5) == -1);
  CHECK(tce_level_bits(12, G1, 6, 5) == -1);
  CHECK(tce_level_bits(12, G1, 3, 2) == -1);            // above max_levels
  CHECK(tce_level_bits(12, 3 * G1, 1, 5) == -1);        // not a power of two
  CHECK(tce_level_bits(16, K4, 1, 5) == -1);            // smaller than a page
  CHECK(tce_level_bits(12, u64{1} << 62, 1, 5) == -1);  // 50 bits in one level: over 55
  CHECK(tce_level_bits(12, u64{1} << 48, 4, 5) == 9);   // 4 x 9 + 12 = 48 < 55
  CHECK(tce_level_bits(16, u64{1} << 52, 4, 5) == 9);   // 4 x 9 + 16 = 52 < 55
  // Five levels of at least 4 KiB each need 5 x 9 + page_shift >= 57 bits: Linux's 55-bit
  // limit rejects them for every window, as it does on PowerNV.
  CHECK(tce_level_bits(12, u64{1} << 52, 5, 5) == -1);
  CHECK(tce_level_bits(12, u64{1} << 30, 5, 5) == -1);
}

TEST_CASE("tce: windows are placed by the hardware, by slot", "[tce]") {
  auto unit = make_unit();
  auto d = make_domain(unit);
  CHECK(d->aperture().empty());
  CHECK(d->translate(0, Access::kRead).fault == FaultReason::kOutOfAperture);

  auto w0 = d->create_window(12, G1, 1);
  REQUIRE(w0.ok());
  CHECK(*w0 == 0);
  auto w1 = d->create_window(16, u64{1} << 40, 2);
  REQUIRE(w1.ok());
  CHECK(*w1 == u64{1} << 59);
  CHECK(d->create_window(12, G1, 1).error() == ENOSPC);

  auto ws = d->windows();
  REQUIRE(ws.size() == 2);
  CHECK(ws[1].page_shift == 16);
  CHECK(ws[1].levels == 2);
  CHECK(ws[1].level_bits == 12);
  REQUIRE(d->aperture().size() == 2);
  CHECK(d->aperture()[1] == IovaRange{u64{1} << 59, (u64{1} << 59) + (u64{1} << 40) - 1});

  CHECK(d->remove_window(12345).error() == EINVAL);
  REQUIRE(d->remove_window(0).ok());
  // The freed slot 0 is reused, at the 32-bit base, with whatever size is asked for.
  auto again = d->create_window(16, u64{1} << 31, 1);
  REQUIRE(again.ok());
  CHECK(*again == 0);
}

TEST_CASE("tce: window parameters are checked", "[tce]") {
  TceConfig cfg;
  cfg.page_sizes = (u64{1} << 12) | (u64{1} << 16);
  auto d = make_domain(make_unit(cfg));
  CHECK(d->create_window(21, G1, 1).error() == EINVAL);   // 2M pages not supported
  CHECK(d->create_window(13, G1, 1).error() == EINVAL);
  CHECK(d->create_window(12, G1, 0).error() == EINVAL);
  CHECK(d->create_window(12, G1, 6).error() == EINVAL);
  CHECK(d->create_window(12, G1 + K4, 1).error() == EINVAL);
  CHECK(d->create_window(16, K4, 1).error() == EINVAL);
  CHECK(d->windows().empty());
}

TEST_CASE("tce: a TCE per page, big-endian, with READ/WRITE bits", "[tce]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->create_window(12, G1, 1).ok());
  REQUIRE(d->map(0x5000, 0x7f1234567000, 2 * K4, kProtRead).ok());
  Translation t = d->translate(0x6123, Access::kRead);
  REQUIRE(t.ok());
  CHECK(t.output == 0x7f1234568123);
  CHECK(t.page_size == K4);
  REQUIRE(t.nsteps == 1);
  CHECK(t.steps[0].index == 6);
  CHECK(t.steps[0].entry == (0x7f1234568000 | 1));
  CHECK(raw_memory(t.steps[0]) == __builtin_bswap64(0x7f1234568000 | 1));
  CHECK(d->translate(0x6123, Access::kWrite).fault == FaultReason::kNoPermission);
  CHECK(d->translate(0x7000, Access::kRead).fault == FaultReason::kNotPresent);
  CHECK(d->stats().entries == 2);
}

TEST_CASE("tce: WRITE implies READ, as PowerNV writes TCEs", "[tce]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->create_window(12, G1, 1).ok());
  REQUIRE(d->map(0, 0x10000, K4, kProtWrite).ok());
  const Translation t = d->translate(0, Access::kRead);
  CHECK(t.ok());
  CHECK(t.prot == kProtRW);
  CHECK(decode(t.steps[0].entry).read == 1);
}

TEST_CASE("tce: mapping over a TCE replaces it", "[tce]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->create_window(12, G1, 1).ok());
  REQUIRE(d->map(0x1000, 0xa000, 3 * K4, kProtRW).ok());
  auto replaced = d->map(0x2000, 0xb0000, 3 * K4, kProtRead);
  REQUIRE(replaced.ok());
  CHECK(*replaced == 2 * K4);
  CHECK(d->translate(0x1000, Access::kRead).output == 0xa000);
  CHECK(d->translate(0x2000, Access::kRead).output == 0xb0000);
  CHECK(d->translate(0x4fff, Access::kRead).output == 0xb2fff);
  CHECK(d->stats().entries == 4);

  auto old = d->exchange(0x1000, 0xc000 | 3);
  REQUIRE(old.ok());
  CHECK(*old == (0xa000 | 3));
  CHECK(*d->exchange(0x9000, 0) == 0);  // clearing an empty TCE
  CHECK(*d->exchange(0x1000, 0) == (0xc000 | 3));
  CHECK(d->translate(0x1000, Access::kRead).fault == FaultReason::kNotPresent);
  CHECK(d->exchange(0x1800, 0xc003).error() == EINVAL);
  CHECK(d->exchange(u64{1} << 40, 0xc003).error() == ERANGE);
}

TEST_CASE("tce: clearing a range clears every entry, mapped or not", "[tce]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->create_window(12, G1, 1).ok());
  REQUIRE(d->map(0x10000, 0x10000, 4 * K4, kProtRW).ok());
  REQUIRE(d->map(0x20000, 0x20000, K4, kProtRW).ok());
  // No record of earlier maps is needed: any sub-range, any span.
  CHECK(*d->unmap(0x11000, 0x11fff) == K4);
  CHECK(*d->unmap(0x0, 0x1ffff) == 3 * K4);
  CHECK(*d->unmap(0x0, 0x1ffff) == 0);
  CHECK(*d->unmap(0x0, kU64Max) == K4);
  CHECK(leaves(*d).empty());
}

TEST_CASE("tce: map errors", "[tce]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->create_window(12, G1, 1).ok());
  REQUIRE(d->create_window(16, u64{1} << 32, 1).ok());
  const u64 ddw = u64{1} << 59;
  CHECK(d->map(G1, 0, K4, kProtRW).error() == ERANGE);             // no window there
  CHECK(d->map(G1 - K4, 0, 2 * K4, kProtRW).error() == ERANGE);    // runs past the window
  CHECK(d->map(ddw + K4, 0, K64, kProtRW).error() == EINVAL);      // not 64K aligned
  CHECK(d->map(ddw, K4, K64, kProtRW).error() == EINVAL);
  CHECK(d->map(ddw, 0, K4, kProtRW).error() == EINVAL);
  CHECK(d->map(0, 0, K4, 0).error() == EINVAL);
  CHECK(d->map(0, 0, 0, kProtRW).error() == EINVAL);
  CHECK(d->map(0, u64{1} << 52, K4, kProtRW).error() == ERANGE);
  CHECK(d->map(ddw, 0x30000, K64, kProtRW).ok());
  CHECK(d->unmap(ddw + K4, ddw + K64 - 1).error() == EINVAL);       // edge inside a 64K TCE
  CHECK(d->stats().entries == 1);
}

TEST_CASE("tce: multi-level windows allocate lower levels lazily and free them", "[tce]") {
  auto d = make_domain(make_unit());
  const u64 bus = *d->create_window(16, u64{1} << 40, 2);  // 2 x 4096 entries of 64K pages
  DomainStats s = d->stats();
  CHECK(s.tables == 1);
  CHECK(s.table_bytes == 32768);
  CHECK(s.meta_bytes == 16384);
  REQUIRE(d->map(bus + 5 * K64, 0x100000, K64, kProtRW).ok());
  REQUIRE(d->map(bus + (u64{1} << 30) * 3, 0x200000, K64, kProtRW).ok());
  s = d->stats();
  CHECK(s.tables == 3);
  CHECK(s.table_bytes == 3 * 32768);
  const Translation t = d->translate(bus + 5 * K64 + 9, Access::kWrite);
  REQUIRE(t.ok());
  CHECK(t.nsteps == 2);
  CHECK((t.steps[0].entry & 3) == 3);  // intermediate entries are R|W + next-level address
  CHECK((t.steps[0].entry & ~u64{0xfff}) == t.steps[1].table);
  CHECK(raw_memory(t.steps[0]) == __builtin_bswap64(t.steps[0].entry));
  CHECK(t.output == 0x100009);
  CHECK(*d->unmap(bus, bus + (u64{1} << 40) - 1) == 2 * K64);
  CHECK(d->stats().tables == 1);
  REQUIRE(d->remove_window(bus).ok());
  CHECK(d->stats().tables == 0);
  CHECK(d->stats().table_bytes == 0);
}

TEST_CASE("tce: four levels; five exceed the 55-bit limit", "[tce]") {
  auto d = make_domain(make_unit());
  CHECK(d->create_window(12, u64{1} << 48, 5).error() == EINVAL);
  const u64 bus = *d->create_window(12, u64{1} << 48, 4);
  const u64 iova = bus + (u64{1} << 48) - K4;
  REQUIRE(d->map(iova, 0xdead000, K4, kProtRW).ok());
  const Translation t = d->translate(iova, Access::kRead);
  REQUIRE(t.ok());
  CHECK(t.nsteps == 4);
  CHECK(t.output == 0xdead000);
  CHECK(d->stats().tables == 4);
  CHECK(*d->unmap(iova, iova + K4 - 1) == K4);
  CHECK(d->stats().tables == 1);
}

TEST_CASE("tce: a window at the top of the bus space reaches the last page", "[tce]") {
  TceConfig cfg;
  cfg.ddw_start = 0xffffffff00000000;
  auto d = make_domain(make_unit(cfg));
  REQUIRE(d->create_window(12, G1, 1).ok());
  auto w = d->create_window(12, u64{1} << 32, 2);
  REQUIRE(w.ok());
  CHECK(*w == 0xffffffff00000000);
  const u64 last_page = 0xfffffffffffff000;
  REQUIRE(d->map(last_page, 0x42000, K4, kProtRW).ok());
  const Translation t = d->translate(kU64Max, Access::kWrite);
  REQUIRE(t.ok());
  CHECK(t.output == 0x42fff);
  auto ls = leaves(*d, last_page, kU64Max);
  REQUIRE(ls.size() == 1);
  CHECK(ls[0].iova == last_page);
  CHECK(ls[0].size == K4);
  CHECK(d->map(last_page, 0, 2 * K4, kProtRW).error() == EOVERFLOW);
  CHECK(*d->unmap(last_page, kU64Max) == K4);
  CHECK(d->translate(kU64Max, Access::kRead).fault == FaultReason::kNotPresent);
  // No room for another window above: a second DDW cannot be placed.
  auto d2 = make_domain(make_unit(cfg));
  TceConfig three = cfg;
  three.max_windows = 3;
  auto d3 = make_domain(make_unit(three));
  REQUIRE(d3->create_window(12, u64{1} << 32, 1).ok());
  REQUIRE(d3->create_window(12, u64{1} << 32, 1).ok());
  CHECK(d3->create_window(12, u64{1} << 32, 1).error() == EINVAL);
}

TEST_CASE("tce: an allocation failure during map changes no TCE", "[tce][fault]") {
  auto d = make_domain(make_unit());
  const u64 bus = *d->create_window(12, u64{1} << 40, 3);
  REQUIRE(d->map(bus, 0xa000, K4, kProtRW).ok());
  const DomainStats before = d->stats();
  unsigned n = 1;
  for (;; ++n) {
    REQUIRE(n < 50);
    fault_injection::fail_nth(n);
    // Replaces the TCE at `bus` and needs new levels further on.
    auto r = d->map(bus, 0xf0000000, (u64{1} << 24) + K4, kProtRead);
    const bool fired = fault_injection::consumed();
    fault_injection::fail_nth(0);
    if (!fired) {
      REQUIRE(r.ok());
      CHECK(*r == K4);
      break;
    }
    REQUIRE(r.error() == ENOMEM);
    REQUIRE(d->stats().tables == before.tables);
    REQUIRE(d->stats().entries == before.entries);
    REQUIRE(d->translate(bus, Access::kWrite).output == 0xa000);
  }
  CHECK(n > 3);
  CHECK(d->translate(bus + (u64{1} << 24), Access::kRead).output == 0xf0000000 + (u64{1} << 24));
}

TEST_CASE("tce: the named masks agree with the bitfield layout", "[tce]") {
  Tce t{};
  t.read = 1;
  t.write = 1;
  CHECK(encode(t) == kPresentMask);
}
