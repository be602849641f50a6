// VT-d second-level paging: every rule of the backend, including the edges.
#include <catch2/catch.hpp>

#include <vector>

#include "iommu/fault_injection.h"
#include "iommu/vtd/vtd.h"

using namespace vfio_emu;
using namespace vfio_emu::iommu;
using namespace vfio_emu::iommu::vtd;

namespace {

constexpr u64 K4 = 4096;
constexpr u64 M2 = u64{1} << 21;
constexpr u64 G1 = u64{1} << 30;

std::shared_ptr<VtdUnit> make_unit(VtdConfig cfg = {}) {
  auto r = VtdUnit::create(std::move(cfg));
  REQUIRE(r.ok());
  return r.take();
}

std::unique_ptr<Domain> make_domain(const std::shared_ptr<VtdUnit>& unit) {
  auto r = unit->create_domain();
  REQUIRE(r.ok());
  return r.take();
}

std::vector<LeafView> leaves(const Domain& d, u64 first = 0, u64 last = kU64Max) {
  std::vector<LeafView> out;
  d.walk(first, last, [&](const LeafView& v) { out.push_back(v); });
  return out;
}

}  // namespace

TEST_CASE("vtd unit: configuration is validated", "[vtd]") {
  VtdConfig cfg;
  cfg.aw_bits = 40;
  CHECK(VtdUnit::create(cfg).error() == EINVAL);
  cfg.aw_bits = 48;
  cfg.max_domains = 100;
  CHECK(VtdUnit::create(cfg).error() == EINVAL);
  cfg.max_domains = 16;
  cfg.reserved = {IovaRange{0x2000, 0x1000}};
  CHECK(VtdUnit::create(cfg).error() == EINVAL);
}

TEST_CASE("vtd unit: address width gives the number of levels", "[vtd]") {
  for (auto [aw, levels] : {std::pair{39, 3}, std::pair{48, 4}, std::pair{57, 5}}) {
    VtdConfig cfg;
    cfg.aw_bits = aw;
    auto unit = make_unit(cfg);
    CHECK(unit->levels() == levels);
    auto d = make_domain(unit);
    CHECK(d->levels() == levels);
    REQUIRE(d->aperture().size() == 1);
    CHECK(d->aperture()[0] == IovaRange{0, (u64{1} << aw) - 1});
  }
}

TEST_CASE("vtd unit: CAP and ECAP registers follow the configuration", "[vtd]") {
  VtdConfig cfg;
  cfg.aw_bits = 39;
  cfg.page_2m = true;
  cfg.page_1g = false;
  cfg.max_domains = 64;
  cfg.snoop_control = false;
  auto unit = make_unit(cfg);
  const CapReg cap = std::bit_cast<CapReg>(unit->cap_reg());
  CHECK(cap.nd == 1);         // 2^(4+2) = 64 domains
  CHECK(cap.sagaw == 0x2);    // 39-bit, 3-level
  CHECK(cap.mgaw == 38);
  CHECK(cap.sllps == 0x1);    // 2 MiB only
  const EcapReg ecap = std::bit_cast<EcapReg>(unit->ecap_reg());
  CHECK(ecap.sc == 0);
  CHECK(ecap.c == 1);

  cfg.aw_bits = 57;
  cfg.page_1g = true;
  cfg.max_domains = 65536;
  const CapReg cap57 = std::bit_cast<CapReg>(make_unit(cfg)->cap_reg());
  CHECK(cap57.sagaw == 0x8);
  CHECK(cap57.mgaw == 56);
  CHECK(cap57.sllps == 0x3);
  CHECK(cap57.nd == 6);
  CHECK(make_unit(cfg)->page_sizes() == (K4 | M2 | G1));
}

TEST_CASE("vtd unit: domain ids run out (ND) and come back", "[vtd]") {
  VtdConfig cfg;
  cfg.max_domains = 16;
  auto unit = make_unit(cfg);
  std::vector<std::unique_ptr<Domain>> held;
  for (int i = 0; i < 15; ++i) held.push_back(make_domain(unit));  // id 0 is reserved
  CHECK(unit->domains_in_use() == 15);
  auto more = unit->create_domain();
  CHECK(more.error() == ENOSPC);
  std::vector<u32> ids;
  for (auto& d : held) ids.push_back(static_cast<VtdDomain&>(*d).domain_id());
  CHECK(std::find(ids.begin(), ids.end(), 0u) == ids.end());
  held.pop_back();
  CHECK(unit->domains_in_use() == 14);
  CHECK(unit->create_domain().ok());
}

TEST_CASE("vtd: a 4 KiB map translates with its permissions", "[vtd]") {
  auto unit = make_unit();
  auto d = make_domain(unit);
  REQUIRE(d->map(0x1000, 0x7f0000042000, K4, kProtRead).ok());

  Translation t = d->translate(0x1abc, Access::kRead);
  REQUIRE(t.ok());
  CHECK(t.output == 0x7f0000042abc);
  CHECK(t.page_size == K4);
  CHECK(t.nsteps == 4);
  CHECK(t.steps[3].level == 1);

  t = d->translate(0x1abc, Access::kWrite);
  CHECK(t.fault == FaultReason::kNoPermission);
  CHECK(t.fault_level == 1);

  t = d->translate(0x2000, Access::kRead);
  CHECK(t.fault == FaultReason::kNotPresent);
  CHECK(t.fault_level == 1);  // the leaf table exists, its entry does not

  t = d->translate(0x40000000000, Access::kRead);  // another top-level slot
  CHECK(t.fault == FaultReason::kNotPresent);
  CHECK(t.fault_level == 4);
  CHECK(t.nsteps == 1);
}

TEST_CASE("vtd: entries are real second-level PTEs", "[vtd]") {
  auto unit = make_unit();
  auto d = make_domain(unit);
  REQUIRE(d->map(0x200000, 0x40000000, M2, kProtRW | kProtCache).ok());
  const Translation t = d->translate(0x200000, Access::kWrite);
  REQUIRE(t.ok());
  REQUIRE(t.nsteps == 3);  // PML4E, PDPE, PDE(PS)
  const SlPte leaf = decode(t.steps[2].entry);
  CHECK(leaf.read == 1);
  CHECK(leaf.write == 1);
  CHECK(leaf.page_size == 1);
  CHECK(leaf.snoop == 1);
  CHECK((u64{leaf.addr} << 12) == 0x40000000);
  // The entry read by the walk is the one stored in the table the previous entry points to.
  const SlPte pdpe = decode(t.steps[1].entry);
  CHECK((u64{pdpe.addr} << 12) == t.steps[2].table);
  CHECK(*reinterpret_cast<const u64*>(t.steps[2].table + 8 * t.steps[2].index) ==
        t.steps[2].entry);
  // Non-leaf entries grant R|W and carry no PS bit.
  CHECK(pdpe.read == 1);
  CHECK(pdpe.write == 1);
  CHECK(pdpe.page_size == 0);
}

TEST_CASE("vtd: without snoop control SNP is never set", "[vtd]") {
  VtdConfig cfg;
  cfg.snoop_control = false;
  auto d = make_domain(make_unit(cfg));
  REQUIRE(d->map(0, 0x1000, K4, kProtRW | kProtCache).ok());
  const Translation t = d->translate(0, Access::kRead);
  CHECK(decode(t.steps[t.nsteps - 1].entry).snoop == 0);
  CHECK((t.prot & kProtCache) == 0);
}

TEST_CASE("vtd: map picks the largest page alignment and length allow", "[vtd]") {
  auto unit = make_unit();
  auto d = make_domain(unit);
  // [1G - 4K, 2G + 2M + 4K): one 4K page, one 1G page, one 2M page, one 4K page.
  const u64 iova = G1 - K4;
  const u64 size = K4 + G1 + M2 + K4;
  REQUIRE(d->map(iova, iova, size, kProtRW).ok());
  auto ls = leaves(*d);
  REQUIRE(ls.size() == 4);
  CHECK(ls[0].iova == G1 - K4);
  CHECK(ls[0].size == K4);
  CHECK(ls[1].iova == G1);
  CHECK(ls[1].size == G1);
  CHECK(ls[1].level == 3);
  CHECK(ls[2].iova == 2 * G1);
  CHECK(ls[2].size == M2);
  CHECK(ls[2].level == 2);
  CHECK(ls[3].size == K4);
  CHECK(d->stats().entries == 4);
  CHECK(d->stats().mapped_bytes == size);
}

TEST_CASE("vtd: superpages need the output aligned too", "[vtd]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->map(M2, M2 + K4, M2, kProtRW).ok());  // iova aligned, output not
  CHECK(leaves(*d).size() == 512);
  CHECK(d->translate(M2 + 5, Access::kRead).output == M2 + K4 + 5);
}

TEST_CASE("vtd: switched-off page sizes are not used", "[vtd]") {
  VtdConfig cfg;
  cfg.page_2m = false;
  cfg.page_1g = false;
  auto d = make_domain(make_unit(cfg));
  CHECK(d->page_sizes() == K4);
  REQUIRE(d->map(0, 0, M2, kProtRW).ok());
  CHECK(leaves(*d).size() == 512);

  cfg.page_2m = false;
  cfg.page_1g = true;  // 1G without 2M: a 1G range still becomes one 1G page
  auto d2 = make_domain(make_unit(cfg));
  REQUIRE(d2->map(0, 0, G1 + M2, kProtRW).ok());
  auto ls = leaves(*d2);
  REQUIRE(ls.size() == 1 + 512);
  CHECK(ls[0].size == G1);
}

TEST_CASE("vtd: argument errors, in order", "[vtd]") {
  auto d = make_domain(make_unit());
  CHECK(d->map(0, 0, 0, kProtRW).error() == EINVAL);
  CHECK(d->map(0, 0, K4, 0).error() == EINVAL);
  CHECK(d->map(0, 0, K4, kProtCache).error() == EINVAL);
  CHECK(d->map(0x800, 0, K4, kProtRW).error() == EINVAL);
  CHECK(d->map(0, 0x800, K4, kProtRW).error() == EINVAL);
  CHECK(d->map(0, 0, 0x1800, kProtRW).error() == EINVAL);
  CHECK(d->map(kU64Max - K4 + 1, 0, 2 * K4, kProtRW).error() == EOVERFLOW);
  CHECK(d->map(0, kU64Max - K4 + 1, 2 * K4, kProtRW).error() == EOVERFLOW);
  CHECK(d->map(u64{1} << 48, 0, K4, kProtRW).error() == ERANGE);
  CHECK(d->map((u64{1} << 48) - K4, 0, 2 * K4, kProtRW).error() == ERANGE);
  CHECK(d->map(0, u64{1} << 52, K4, kProtRW).error() == ERANGE);
  CHECK(d->map(0, (u64{1} << 52) - K4, K4, kProtRW).ok());
  CHECK(d->unmap(0x800, 0x1fff).error() == EINVAL);
  CHECK(d->unmap(0, 0x17ff).error() == EINVAL);
  CHECK(d->unmap(0x2000, 0x1fff).error() == EINVAL);
}

TEST_CASE("vtd: IOVAs beyond the address width are rejected", "[vtd]") {
  VtdConfig cfg;
  cfg.aw_bits = 39;
  auto d = make_domain(make_unit(cfg));
  const u64 top = (u64{1} << 39) - K4;
  CHECK(d->map(top, 0x1000, K4, kProtRW).ok());
  CHECK(d->map(u64{1} << 39, 0x1000, K4, kProtRW).error() == ERANGE);
  CHECK(d->translate(u64{1} << 39, Access::kRead).fault == FaultReason::kOutOfAperture);
  CHECK(d->translate(top + 7, Access::kRead).output == 0x1007);
  // Unmapping past the aperture just finds nothing there.
  CHECK(*d->unmap(u64{1} << 39, kU64Max) == 0);
  CHECK(*d->unmap(0, kU64Max) == K4);
}

TEST_CASE("vtd: 57-bit, 5-level tables reach the top page", "[vtd]") {
  VtdConfig cfg;
  cfg.aw_bits = 57;
  auto d = make_domain(make_unit(cfg));
  const u64 top = (u64{1} << 57) - K4;
  REQUIRE(d->map(top, 0xabc000, K4, kProtWrite).ok());
  Translation t = d->translate(top + 0xfff, Access::kWrite);
  REQUIRE(t.ok());
  CHECK(t.output == 0xabcfff);
  CHECK(t.nsteps == 5);
  for (int i = 0; i < 5; ++i) CHECK(t.steps[i].index == (i == 4 ? 511u : 511u));
  CHECK(d->translate(top, Access::kRead).fault == FaultReason::kNoPermission);
  CHECK(d->stats().tables == 5);
  // A 1G page at the very top of the 57-bit space.
  REQUIRE(d->map((u64{1} << 57) - 2 * G1, 0, G1, kProtRW).ok());
  auto ls = leaves(*d);
  REQUIRE(ls.size() == 2);
  CHECK(ls[0].size == G1);
  CHECK(ls[0].top_level == 5);
  CHECK(*d->unmap(0, (u64{1} << 57) - 1) == G1 + K4);
  CHECK(d->stats().tables == 1);
}

TEST_CASE("vtd: unmap returns the bytes it unmapped", "[vtd]") {
  auto d = make_domain(make_unit());
  SECTION("empty range") { CHECK(*d->unmap(0x100000, 0x1fffff) == 0); }
  SECTION("several mappings, gaps between them") {
    REQUIRE(d->map(0x1000, 0x1000, K4, kProtRW).ok());
    REQUIRE(d->map(0x5000, 0x5000, 2 * K4, kProtRW).ok());
    REQUIRE(d->map(M2, M2, M2, kProtRW).ok());
    REQUIRE(d->map(4 * M2, 0, K4, kProtRW).ok());
    CHECK(*d->unmap(0, 2 * M2 - 1) == 3 * K4 + M2);
    CHECK(d->translate(4 * M2, Access::kRead).ok());
    CHECK(d->stats().entries == 1);
  }
  SECTION("the whole 64-bit space") {
    REQUIRE(d->map(0, 0, G1, kProtRW).ok());
    REQUIRE(d->map((u64{1} << 48) - K4, 0, K4, kProtRW).ok());
    CHECK(*d->unmap(0, kU64Max) == G1 + K4);
    CHECK(leaves(*d).empty());
  }
}

TEST_CASE("vtd: unmapping part of a superpage splits it", "[vtd]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->map(G1, 0x80000000, G1, kProtRW).ok());
  REQUIRE(d->stats().tables == 2);  // PML4 and PDPT: the 1G page lives in the PDPT
  // One 4K page in the middle of the 1G page: 1G -> 2M pages -> 4K pages around the hole.
  const u64 hole = G1 + 5 * M2 + 3 * K4;
  CHECK(*d->unmap(hole, hole + K4 - 1) == K4);
  CHECK(d->translate(hole, Access::kRead).fault == FaultReason::kNotPresent);
  CHECK(d->translate(hole - 1, Access::kRead).output == 0x80000000 + 5 * M2 + 3 * K4 - 1);
  CHECK(d->translate(hole + K4, Access::kRead).output == 0x80000000 + 5 * M2 + 4 * K4);
  CHECK(d->translate(G1 + G1 - 1, Access::kWrite).output == 0x80000000 + G1 - 1);
  const DomainStats s = d->stats();
  CHECK(s.entries == 511 + 511);    // 511 2M leaves + 511 4K leaves
  CHECK(s.mapped_bytes == G1 - K4);
  CHECK(s.tables == 4);             // PML4, PDPT, the new PD and the new PT
  auto ls = leaves(*d);
  u64 covered = 0;
  for (auto& l : ls) covered += l.size;
  CHECK(covered == G1 - K4);
  // The rest can be unmapped page by page until everything is freed.
  CHECK(*d->unmap(G1, 2 * G1 - 1) == G1 - K4);
  CHECK(d->stats().tables == 1);
}

TEST_CASE("vtd: refusing to split a superpage changes nothing", "[vtd]") {
  VtdConfig cfg;
  cfg.split = SplitPolicy::kRefuse;
  auto d = make_domain(make_unit(cfg));
  REQUIRE(d->map(0, 0, M2, kProtRW).ok());
  REQUIRE(d->map(M2, M2, K4, kProtRW).ok());
  CHECK(d->unmap(K4, M2 + K4 - 1).error() == EINVAL);  // first edge cuts the 2M page
  CHECK(d->unmap(0, K4 - 1).error() == EINVAL);        // last edge cuts it
  CHECK(d->stats().entries == 2);
  CHECK(d->translate(K4, Access::kRead).ok());
  CHECK(*d->unmap(0, M2 + K4 - 1) == M2 + K4);  // whole pages: fine
}

TEST_CASE("vtd: map over a present entry is refused and leaves nothing behind", "[vtd]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->map(3 * M2, 0x1000000, K4, kProtRW).ok());
  const DomainStats before = d->stats();
  // The range starts in empty space (new tables, a 2M page) and runs into the existing page.
  CHECK(d->map(0, 0, 3 * M2 + K4, kProtRW).error() == EEXIST);
  const DomainStats after = d->stats();
  CHECK(after.entries == before.entries);
  CHECK(after.tables == before.tables);
  CHECK(after.mapped_bytes == before.mapped_bytes);
  CHECK(d->translate(0, Access::kRead).fault == FaultReason::kNotPresent);
  CHECK(d->translate(3 * M2, Access::kRead).output == 0x1000000);
  // A superpage over a present 4K page is refused too.
  CHECK(d->map(2 * M2, 0, 2 * M2, kProtRW).error() == EEXIST);
  CHECK(d->stats().entries == before.entries);
}

TEST_CASE("vtd: a present page anywhere in a leaf run refuses the whole run", "[vtd]") {
  // The leaf writer checks and writes in chunks of 8: a present entry in any chunk, or in the
  // tail after the last whole chunk, must leave every earlier chunk as empty as it was.
  const u64 at = GENERATE(u64{0}, u64{7}, u64{8}, u64{100}, u64{248}, u64{250}, u64{255});
  const u64 start = GENERATE(u64{0}, u64{3});  // runs that start aligned and unaligned to 8
  if (at < start) return;
  auto d = make_domain(make_unit());
  REQUIRE(d->map(at * K4, 0x7000000, K4, kProtRW).ok());
  const DomainStats before = d->stats();
  CAPTURE(at, start);
  CHECK(d->map(start * K4, 0x1000000, (256 - start) * K4, kProtRW).error() == EEXIST);
  CHECK(d->stats().entries == before.entries);
  CHECK(d->stats().mapped_bytes == before.mapped_bytes);
  for (u64 i = start; i < 256; ++i) {
    const Translation t = d->translate(i * K4, Access::kRead);
    if (i == at) {
      CHECK(t.output == 0x7000000);
    } else {
      CHECK(t.fault == FaultReason::kNotPresent);
    }
  }
  // And with the page gone, the same run maps every page in order.
  REQUIRE(d->unmap(at * K4, at * K4 + K4 - 1).ok());
  REQUIRE(d->map(start * K4, 0x1000000, (256 - start) * K4, kProtRW).ok());
  for (u64 i = start; i < 256; ++i)
    CHECK(d->translate(i * K4 + 0x10, Access::kRead).output == 0x1000000 + (i - start) * K4 + 0x10);
}

TEST_CASE("vtd: tables follow what is mapped", "[vtd]") {
  auto d = make_domain(make_unit());
  CHECK(d->stats().tables == 1);  // the top-level table
  REQUIRE(d->map(0x7000, 0x7000, K4, kProtRW).ok());
  CHECK(d->stats().tables == 4);
  CHECK(d->stats().table_bytes == 4 * K4);
  REQUIRE(d->map(u64{1} << 40, 0, K4, kProtRW).ok());
  CHECK(d->stats().tables == 7);
  CHECK(*d->unmap(0x7000, 0x7fff) == K4);
  CHECK(d->stats().tables == 4);
  CHECK(*d->unmap(u64{1} << 40, (u64{1} << 40) + K4 - 1) == K4);
  CHECK(d->stats().tables == 1);
  CHECK(d->stats().table_bytes == K4);
  // A full leaf table: 512 pages, then freed.
  REQUIRE(d->map(0, 0, M2 - K4, kProtRW).ok());
  REQUIRE(d->map(M2 - K4, 0, K4, kProtRW).ok());
  CHECK(d->stats().tables == 4);
  for (u64 a = 0; a < M2; a += K4) REQUIRE(*d->unmap(a, a + K4 - 1) == K4);
  CHECK(d->stats().tables == 1);
}

TEST_CASE("vtd: walk reports leaves in order with their path", "[vtd]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->map(G1, 0, M2, kProtRead).ok());
  REQUIRE(d->map(0x3000, 0x9000, K4, kProtWrite).ok());
  auto ls = leaves(*d);
  REQUIRE(ls.size() == 2);
  CHECK(ls[0].iova == 0x3000);
  CHECK(ls[0].output == 0x9000);
  CHECK(ls[0].prot == kProtWrite);
  CHECK(ls[0].level == 1);
  CHECK(ls[0].top_level == 4);
  CHECK(decode(ls[0].path[3]).addr == 0x9);
  CHECK(decode(ls[1].path[2]).page_size == 1);
  CHECK(ls[1].path[3] == 0);
  // A window of the walk.
  CHECK(leaves(*d, 0x4000, G1 - 1).empty());
  CHECK(leaves(*d, G1 + M2 - 1, G1 + M2 - 1).size() == 1);
}

TEST_CASE("vtd: every allocation failure during map leaves the domain unchanged", "[vtd][fault]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->map(3 * G1 + 7 * K4, 0, K4, kProtRW).ok());
  const DomainStats before = d->stats();
  unsigned n = 1;
  for (;; ++n) {
    REQUIRE(n < 100);
    fault_injection::fail_nth(n);
    auto r = d->map(0, 0, G1 + 5 * K4 + M2, kProtRW);
    const bool fired = fault_injection::consumed();
    fault_injection::fail_nth(0);
    if (!fired) {
      REQUIRE(r.ok());
      break;
    }
    REQUIRE(r.error() == ENOMEM);
    const DomainStats s = d->stats();
    REQUIRE(s.tables == before.tables);
    REQUIRE(s.entries == before.entries);
    REQUIRE(d->translate(0, Access::kRead).fault == FaultReason::kNotPresent);
  }
  CHECK(n > 2);  // the map needed several tables, each was a failure point
  CHECK(d->translate(G1 + 5 * K4, Access::kRead).ok());
}

TEST_CASE("vtd: a failed split keeps every translation", "[vtd][fault]") {
  auto d = make_domain(make_unit());
  REQUIRE(d->map(0, 0x40000000, G1, kProtRW).ok());
  for (unsigned n = 1; n <= 2; ++n) {
    fault_injection::fail_nth(n);
    auto r = d->unmap(M2 + K4, M2 + 2 * K4 - 1);
    fault_injection::fail_nth(0);
    CHECK(r.error() == ENOMEM);
    CHECK(d->stats().mapped_bytes == G1);
    CHECK(d->translate(M2 + K4, Access::kRead).output == 0x40000000 + M2 + K4);
  }
  CHECK(*d->unmap(M2 + K4, M2 + 2 * K4 - 1) == K4);
}

TEST_CASE("vtd: the named masks agree with the bitfield layout", "[vtd]") {
  SlPte p{};
  p.read = 1;
  p.write = 1;
  CHECK(encode(p) == kPresentMask);
}
