// Randomized model tests: long random sequences of map / unmap / translate on each backend,
// checked step by step against a simple reference model of what should be mapped. The seed is
// printed on failure; set VFIO_EMU_SEED to replay one.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <iterator>
#include <map>
#include <optional>
#include <random>

#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

using namespace vfio_emu;
using namespace vfio_emu::iommu;

namespace {

constexpr u64 K4 = 4096;
constexpr u64 K64 = 65536;
constexpr u64 M2 = u64{1} << 21;
constexpr u64 G1 = u64{1} << 30;

// The reference: disjoint runs [first, last] -> output of `first`, prot.
class RangeModel {
 public:
  struct Run {
    u64 last;
    u64 output;
    Prot prot;
  };

  bool overlaps(u64 first, u64 last) const {
    auto it = runs_.upper_bound(last);
    if (it == runs_.begin()) return false;
    --it;
    return it->second.last >= first;
  }

  void insert(u64 first, u64 last, u64 output, Prot prot) {
    runs_[first] = Run{last, output, prot};
  }

  // Removes [first, last]; returns the bytes that were covered.
  u64 erase(u64 first, u64 last) {
    split(first);
    if (last != kU64Max) split(last + 1);
    u64 bytes = 0;
    auto it = runs_.lower_bound(first);
    while (it != runs_.end() && it->first <= last) {
      bytes += it->second.last - it->first + 1;
      it = runs_.erase(it);
    }
    return bytes;
  }

  std::optional<std::pair<u64, Prot>> lookup(u64 a) const {
    auto it = runs_.upper_bound(a);
    if (it == runs_.begin()) return std::nullopt;
    --it;
    if (it->second.last < a) return std::nullopt;
    return std::pair{it->second.output + (a - it->first), it->second.prot};
  }

  u64 bytes() const {
    u64 b = 0;
    for (auto& [first, r] : runs_) b += r.last - first + 1;
    return b;
  }

  // A random mapped address, or 0 if nothing is mapped.
  u64 random_mapped(std::mt19937_64& rng) const {
    if (runs_.empty()) return 0;
    auto it = runs_.begin();
    std::advance(it, static_cast<long>(rng() % runs_.size()));
    return it->first + (rng() % (it->second.last - it->first + 1));
  }

 private:
  void split(u64 at) {
    auto it = runs_.upper_bound(at);
    if (it == runs_.begin()) return;
    --it;
    if (it->first == at || it->second.last < at) return;
    Run tail{it->second.last, it->second.output + (at - it->first), it->second.prot};
    it->second.last = at - 1;
    runs_[at] = tail;
  }

  std::map<u64, Run> runs_;
};

u64 seed_for_run() {
  if (const char* s = std::getenv("VFIO_EMU_SEED")) return std::strtoull(s, nullptr, 0);
  return std::random_device{}();
}

// Every leaf the walk reports must agree with the model, and together they cover exactly it.
void check_walk(const Domain& d, const RangeModel& model, Prot (*expected_prot)(Prot)) {
  u64 covered = 0;
  u64 prev_end = 0;
  bool first = true;
  d.walk(0, kU64Max, [&](const LeafView& l) {
    REQUIRE((first || l.iova >= prev_end));
    first = false;
    prev_end = l.iova + l.size;
    auto want = model.lookup(l.iova);
    REQUIRE(want.has_value());
    REQUIRE(want->first == l.output);
    REQUIRE(expected_prot(want->second) == l.prot);
    auto want_last = model.lookup(l.iova + l.size - 1);
    REQUIRE(want_last.has_value());
    REQUIRE(want_last->first == l.output + l.size - 1);
    covered += l.size;
  });
  REQUIRE(covered == model.bytes());
  REQUIRE(d.stats().mapped_bytes == model.bytes());
}

void check_translate(const Domain& d, const RangeModel& model, u64 a, Access acc,
                     Prot (*expected_prot)(Prot)) {
  const Translation t = d.translate(a, acc);
  auto want = model.lookup(a);
  if (!want) {
    REQUIRE(t.fault == FaultReason::kNotPresent);
    return;
  }
  const Prot p = expected_prot(want->second);
  const bool allowed = (p & (acc == Access::kRead ? kProtRead : kProtWrite)) != 0;
  if (!allowed) {
    REQUIRE(t.fault == FaultReason::kNoPermission);
    return;
  }
  REQUIRE(t.ok());
  REQUIRE(t.output == want->first);
}

Prot vtd_prot(Prot p) { return p; }
Prot tce_prot(Prot p) { return (p & kProtWrite) ? kProtRW : p; }  // PowerNV: WRITE implies READ

}  // namespace

TEST_CASE("model: VT-d against a reference map", "[model][vtd]") {
  const u64 seed = seed_for_run();
  INFO("seed " << seed << " (replay with VFIO_EMU_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);

  vtd::VtdConfig cfg;
  cfg.aw_bits = GENERATE(39, 48);
  auto unit = vtd::VtdUnit::create(cfg).take();
  auto dom = unit->create_domain().take();
  Domain& d = *dom;
  RangeModel model;
  const u64 space = 8 * G1;  // where the action happens; 1G pages fit

  auto aligned = [&](u64 align, u64 limit) { return (rng() % (limit / align)) * align; };
  auto pick_align = [&] {
    const unsigned r = rng() % 100;
    return r < 3 ? G1 : r < 20 ? M2 : K4;
  };
  auto pick_size = [&](u64 align) {
    const unsigned r = rng() % 100;
    if (align == G1) return G1 * (1 + rng() % 2) + (r < 50 ? K4 * (rng() % 4) : 0);
    if (align == M2) return M2 * (1 + rng() % 8) + (r < 50 ? K4 * (rng() % 600) : 0);
    return r < 70 ? K4 * (1 + rng() % 16) : K4 * (1 + rng() % 1500);
  };

  for (int step = 0; step < 12000; ++step) {
    const unsigned op = rng() % 100;
    if (op < 45) {
      const u64 align = pick_align();
      const u64 size = pick_size(align);
      const u64 iova = aligned(align, space);
      const u64 out = aligned(align, u64{1} << 44) + (rng() % 4 == 0 ? K4 : 0);
      const Prot prot = static_cast<Prot>(1 + rng() % 3);
      auto r = d.map(iova, out, size, prot);
      if (model.overlaps(iova, iova + size - 1)) {
        REQUIRE(r.error() == EEXIST);
      } else {
        REQUIRE(r.ok());
        model.insert(iova, iova + size - 1, out, prot);
      }
    } else if (op < 80) {
      u64 first = rng() % 3 == 0 ? (model.random_mapped(rng) & ~(K4 - 1)) : aligned(K4, space);
      const u64 len = rng() % 10 == 0 ? G1 * (1 + rng() % 3) : K4 * (1 + rng() % 2048);
      const u64 last = first + len - 1;
      const u64 want = model.erase(first, last);
      auto r = d.unmap(first, last);
      REQUIRE(r.ok());
      REQUIRE(*r == want);
    } else {
      const u64 a = rng() % 2 ? model.random_mapped(rng) : rng() % space;
      check_translate(d, model, a, rng() % 2 ? Access::kRead : Access::kWrite, vtd_prot);
    }
    if (step % 1000 == 999) check_walk(d, model, vtd_prot);
  }
  check_walk(d, model, vtd_prot);
  REQUIRE(*d.unmap(0, kU64Max) == model.bytes());
  // Table memory returns to the top-level table alone.
  CHECK(d.stats().tables == 1);
  CHECK(d.stats().table_bytes == K4);
  CHECK(d.stats().entries == 0);
}

TEST_CASE("model: TCE against a reference map", "[model][tce]") {
  const u64 seed = seed_for_run();
  INFO("seed " << seed << " (replay with VFIO_EMU_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);

  auto unit = tce::TceUnit::create(tce::TceConfig{}).take();
  auto dom = unit->create_domain().take();
  auto& d = static_cast<tce::TceDomain&>(*dom);
  struct Win {
    u64 bus;
    u64 size;
    u64 page;
  };
  std::vector<Win> wins;
  wins.push_back(Win{*d.create_window(12, G1, 2), G1, K4});
  wins.push_back(Win{*d.create_window(16, u64{1} << 36, 3), u64{1} << 36, K64});
  RangeModel model;

  auto in_window = [&](const Win& w, u64 span_pages) {
    const u64 pages = w.size / w.page;
    // Cluster half the activity near the start so that entries collide and levels fill up.
    const u64 limit = rng() % 2 ? std::min<u64>(pages, 4096) : pages;
    const u64 p = rng() % (limit - std::min(limit - 1, span_pages));
    return w.bus + p * w.page;
  };

  for (int step = 0; step < 12000; ++step) {
    const Win& w = wins[rng() % wins.size()];
    const unsigned op = rng() % 100;
    if (op < 45) {
      const u64 pages = rng() % 5 == 0 ? 1 + rng() % 2000 : 1 + rng() % 8;
      const u64 iova = in_window(w, pages);
      const u64 size = pages * w.page;
      const u64 out = (rng() % (u64{1} << 30)) * w.page;
      const Prot prot = static_cast<Prot>(1 + rng() % 3);
      const u64 before = model.bytes();
      const u64 replaced = model.erase(iova, iova + size - 1);
      model.insert(iova, iova + size - 1, out, prot);
      auto r = d.map(iova, out, size, prot);
      REQUIRE(r.ok());
      REQUIRE(*r == replaced);
      REQUIRE(model.bytes() == before - replaced + size);
    } else if (op < 75) {
      const u64 pages = rng() % 10 == 0 ? 1 + rng() % 100000 : 1 + rng() % 64;
      u64 first = rng() % 3 == 0 ? (model.random_mapped(rng) & ~(w.page - 1)) : 0;
      if (first < w.bus || first > w.bus + (w.size - 1)) first = in_window(w, pages);
      u64 last = first + pages * w.page - 1;
      if (last > w.bus + w.size - 1 || last < first) last = w.bus + w.size - 1;
      const u64 want = model.erase(first, last);
      auto r = d.unmap(first, last);
      REQUIRE(r.ok());
      REQUIRE(*r == want);
    } else if (op < 80) {
      const u64 bus = in_window(w, 1);
      const u64 out = (rng() % (u64{1} << 30)) * w.page;
      const u64 tce = rng() % 4 == 0 ? 0 : out | (1 + rng() % 3);
      auto old = model.lookup(bus);
      const u64 want_old = old ? ((old->first & ~(w.page - 1)) | tce_prot(old->second)) : 0;
      model.erase(bus, bus + w.page - 1);
      if (tce != 0) model.insert(bus, bus + w.page - 1, out, static_cast<Prot>(tce & 3));
      auto r = d.exchange(bus, tce);
      REQUIRE(r.ok());
      REQUIRE(*r == want_old);
    } else {
      const u64 a = rng() % 2 ? model.random_mapped(rng) : in_window(w, 1) + rng() % w.page;
      if (a == 0 && !model.lookup(0)) continue;
      check_translate(d, model, a, rng() % 2 ? Access::kRead : Access::kWrite, tce_prot);
    }
    if (step % 1000 == 999) check_walk(d, model, tce_prot);
  }
  check_walk(d, model, tce_prot);
  REQUIRE(*d.unmap(0, kU64Max) == model.bytes());
  // Lower levels are all freed; only each window's top level remains, until the windows go.
  CHECK(d.stats().tables == 2);
  for (const Win& w : wins) REQUIRE(d.remove_window(w.bus).ok());
  CHECK(d.stats().tables == 0);
  CHECK(d.stats().table_bytes == 0);
  CHECK(d.stats().meta_bytes == 0);
}
