// Backend benchmarks: the simulated page tables in-process, against a floor measured in the same
// run (a loop that only stores the same number of 8-byte entries into pre-allocated memory) and
// next to Linux's published generic_pt figures for VT-d second stage (i7-12700).
//
// Each benchmark times a region of many operations and reports ns per operation, so timer
// overhead does not distort the small figures. Single-page map/unmap run with the leaf table
// already present (a resident page keeps it), like Linux's kunit benchmark, whose tables are
// never freed; the cost of allocating tables shows in the 1 GiB figures.
#include <benchmark/benchmark.h>
#include <fmt/core.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

using namespace vfio_emu;
using namespace vfio_emu::iommu;

namespace {

constexpr u64 K4 = 4096;
constexpr u64 K64 = 65536;
constexpr u64 M2 = u64{1} << 21;
constexpr u64 G1 = u64{1} << 30;
constexpr u64 kBuf = 0x7f0000000000;  // output addresses: a plausible user VA

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

// Accumulates timed regions; reports ns per operation.
struct OpTimer {
  double ns = 0;
  double ops = 0;
  void report(benchmark::State& state, const char* what = "ns_per_op") {
    state.counters[what] = ops > 0 ? ns / ops : 0;
  }
};

std::unique_ptr<Domain> vtd_domain(bool superpages) {
  vtd::VtdConfig cfg;
  cfg.page_2m = superpages;
  cfg.page_1g = superpages;
  static std::vector<std::shared_ptr<vtd::VtdUnit>> units;  // keep units alive
  units.push_back(vtd::VtdUnit::create(cfg).take());
  return units.back()->create_domain().take();
}

struct TceFixture {
  std::shared_ptr<tce::TceUnit> unit = tce::TceUnit::create(tce::TceConfig{}).take();
  std::unique_ptr<Domain> dom = unit->create_domain().take();
  tce::TceDomain& d = static_cast<tce::TceDomain&>(*dom);
  u64 bus = d.create_window(16, u64{1} << 40, 2).take();  // 2 levels of 4096 64K TCEs
};

void check(bool ok, benchmark::State& state) {
  if (!ok) state.SkipWithError("operation failed");
}

// ---- floor ---------------------------------------------------------------------------------

void BM_Floor_Store(benchmark::State& state) {
  const u64 n = static_cast<u64>(state.range(0));
  std::vector<u64> table(std::max<u64>(n, 512));
  OpTimer t;
  u64 v = 0x1003;
  for (auto _ : state) {
    const int reps = n >= 65536 ? 1 : 64;
    auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) {
      u64* p = table.data();
      for (u64 i = 0; i < n; ++i) p[i] = v + (i << 12);
      benchmark::ClobberMemory();
      ++v;
    }
    t.ns += ns_since(t0);
    t.ops += reps;
  }
  t.report(state);
}
BENCHMARK(BM_Floor_Store)->Arg(1)->Arg(256)->Arg(262144)->Arg(16384);

// ---- VT-d ----------------------------------------------------------------------------------

// 4096 single-page maps, then 4096 single-page unmaps, over 8 leaf tables kept alive.
void BM_Vtd_Single4K(benchmark::State& state) {
  auto d = vtd_domain(true);
  constexpr u64 kTables = 8;
  for (u64 t = 0; t < kTables; ++t) check(d->map(t * M2 + 511 * K4, kBuf, K4, kProtRW).ok(), state);
  OpTimer map, unmap;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (u64 t = 0; t < kTables; ++t)
      for (u64 i = 0; i < 511; ++i) {
        auto r = d->map(t * M2 + i * K4, kBuf + i * K4, K4, kProtRW);
        benchmark::DoNotOptimize(r);
      }
    map.ns += ns_since(t0);
    map.ops += kTables * 511;
    t0 = Clock::now();
    for (u64 t = 0; t < kTables; ++t)
      for (u64 i = 0; i < 511; ++i) {
        auto r = d->unmap(t * M2 + i * K4, t * M2 + i * K4 + K4 - 1);
        benchmark::DoNotOptimize(r);
      }
    unmap.ns += ns_since(t0);
    unmap.ops += kTables * 511;
  }
  map.report(state, "map_ns");
  unmap.report(state, "unmap_ns");
}
BENCHMARK(BM_Vtd_Single4K);

// 64 batches of 256 x 4 KiB, each batch one map call and one unmap call.
void BM_Vtd_Batch256(benchmark::State& state) {
  auto d = vtd_domain(true);
  constexpr u64 kBatches = 64;
  for (u64 b = 0; b < kBatches; ++b) check(d->map(b * M2 + 511 * K4, kBuf, K4, kProtRW).ok(), state);
  OpTimer map, unmap;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (u64 b = 0; b < kBatches; ++b) {
      auto r = d->map(b * M2, kBuf + K4, 256 * K4, kProtRW);
      benchmark::DoNotOptimize(r);
    }
    map.ns += ns_since(t0);
    map.ops += kBatches;
    t0 = Clock::now();
    for (u64 b = 0; b < kBatches; ++b) {
      auto r = d->unmap(b * M2, b * M2 + 256 * K4 - 1);
      benchmark::DoNotOptimize(r);
    }
    unmap.ns += ns_since(t0);
    unmap.ops += kBatches;
  }
  map.report(state, "map_ns");
  unmap.report(state, "unmap_ns");
}
BENCHMARK(BM_Vtd_Batch256);

// 1 GiB in one map call and one unmap call; tables are allocated and freed each time.
void BM_Vtd_1G(benchmark::State& state) {
  const bool superpages = state.range(0) != 0;
  auto d = vtd_domain(superpages);
  check(d->map(G1, kBuf, G1, kProtRW).ok() && d->unmap(G1, 2 * G1 - 1).ok(), state);  // warm up
  OpTimer map, unmap;
  u64 table_bytes = 0, tables = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto r = d->map(G1, kBuf, G1, kProtRW);
    map.ns += ns_since(t0);
    map.ops += 1;
    check(r.ok(), state);
    table_bytes = d->stats().table_bytes;
    tables = d->stats().tables;
    t0 = Clock::now();
    auto u = d->unmap(G1, 2 * G1 - 1);
    unmap.ns += ns_since(t0);
    unmap.ops += 1;
    check(u.ok() && *u == G1, state);
  }
  map.report(state, "map_ns");
  unmap.report(state, "unmap_ns");
  state.counters["table_bytes"] = static_cast<double>(table_bytes);
  state.counters["tables"] = static_cast<double>(tables);
}
BENCHMARK(BM_Vtd_1G)->Arg(0)->Arg(1)->Iterations(50);

void BM_Vtd_Translate(benchmark::State& state) {
  auto d = vtd_domain(false);
  check(d->map(0, kBuf, G1, kProtRW).ok(), state);
  std::mt19937_64 rng(1);
  std::vector<u64> addrs(4096);
  for (auto& a : addrs) a = rng() % G1;
  OpTimer t;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (u64 a : addrs) {
      Translation tr = d->translate(a, Access::kRead);
      benchmark::DoNotOptimize(tr.output);
    }
    t.ns += ns_since(t0);
    t.ops += static_cast<double>(addrs.size());
  }
  t.report(state);
}
BENCHMARK(BM_Vtd_Translate);

// ---- TCE (2-level window of 64 KiB pages) ----------------------------------------------------

void BM_Tce_Single(benchmark::State& state) {
  TceFixture f;
  constexpr u64 kPages = 4096;  // one leaf level
  check(f.d.map(f.bus + kPages * K64, kBuf, K64, kProtRW).ok(), state);  // keeps a 2nd level
  check(f.d.map(f.bus + (kPages - 1) * K64, kBuf, K64, kProtRW).ok(), state);
  OpTimer map, unmap;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (u64 i = 0; i < kPages - 1; ++i) {
      auto r = f.d.map(f.bus + i * K64, kBuf + i * K64, K64, kProtRW);
      benchmark::DoNotOptimize(r);
    }
    map.ns += ns_since(t0);
    map.ops += kPages - 1;
    t0 = Clock::now();
    for (u64 i = 0; i < kPages - 1; ++i) {
      auto r = f.d.unmap(f.bus + i * K64, f.bus + i * K64 + K64 - 1);
      benchmark::DoNotOptimize(r);
    }
    unmap.ns += ns_since(t0);
    unmap.ops += kPages - 1;
  }
  map.report(state, "map_ns");
  unmap.report(state, "unmap_ns");
}
BENCHMARK(BM_Tce_Single);

void BM_Tce_Batch256(benchmark::State& state) {
  TceFixture f;
  constexpr u64 kBatches = 15;  // 15 x 256 in one 4096-entry leaf level
  check(f.d.map(f.bus + 4095 * K64, kBuf, K64, kProtRW).ok(), state);
  OpTimer map, unmap;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (u64 b = 0; b < kBatches; ++b) {
      auto r = f.d.map(f.bus + b * 256 * K64, kBuf, 256 * K64, kProtRW);
      benchmark::DoNotOptimize(r);
    }
    map.ns += ns_since(t0);
    map.ops += kBatches;
    t0 = Clock::now();
    for (u64 b = 0; b < kBatches; ++b) {
      auto r = f.d.unmap(f.bus + b * 256 * K64, f.bus + (b + 1) * 256 * K64 - 1);
      benchmark::DoNotOptimize(r);
    }
    unmap.ns += ns_since(t0);
    unmap.ops += kBatches;
  }
  map.report(state, "map_ns");
  unmap.report(state, "unmap_ns");
}
BENCHMARK(BM_Tce_Batch256);

void BM_Tce_1G(benchmark::State& state) {
  TceFixture f;
  check(f.d.map(f.bus + G1, kBuf, G1, kProtRW).ok() && f.d.unmap(f.bus + G1, f.bus + 2 * G1 - 1).ok(),
        state);  // warm up
  OpTimer map, unmap;
  u64 table_bytes = 0, tables = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto r = f.d.map(f.bus + G1, kBuf, G1, kProtRW);
    map.ns += ns_since(t0);
    map.ops += 1;
    check(r.ok(), state);
    table_bytes = f.d.stats().table_bytes;
    tables = f.d.stats().tables;
    t0 = Clock::now();
    auto u = f.d.unmap(f.bus + G1, f.bus + 2 * G1 - 1);
    unmap.ns += ns_since(t0);
    unmap.ops += 1;
    check(u.ok() && *u == G1, state);
  }
  map.report(state, "map_ns");
  unmap.report(state, "unmap_ns");
  state.counters["table_bytes"] = static_cast<double>(table_bytes);
  state.counters["tables"] = static_cast<double>(tables);
}
BENCHMARK(BM_Tce_1G)->Iterations(50);

void BM_Tce_Translate(benchmark::State& state) {
  TceFixture f;
  check(f.d.map(f.bus, kBuf, G1, kProtRW).ok(), state);
  std::mt19937_64 rng(1);
  std::vector<u64> addrs(4096);
  for (auto& a : addrs) a = f.bus + rng() % G1;
  OpTimer t;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (u64 a : addrs) {
      Translation tr = f.d.translate(a, Access::kRead);
      benchmark::DoNotOptimize(tr.output);
    }
    t.ns += ns_since(t0);
    t.ops += static_cast<double>(addrs.size());
  }
  t.report(state);
}
BENCHMARK(BM_Tce_Translate);

// ---- summary -------------------------------------------------------------------------------

// Collects every counter so the summary can relate figures measured in this run.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs)
      for (const auto& [k, c] : r.counters) values[r.benchmark_name() + "." + k] = c.value;
    ConsoleReporter::ReportRuns(runs);
  }
  double get(const std::string& k) const {
    auto it = values.find(k);
    return it == values.end() ? 0 : it->second;
  }
  std::map<std::string, double> values;
};

void print_summary(const SummaryReporter& r) {
  const double floor1 = r.get("BM_Floor_Store/1.ns_per_op");
  const double floor256 = r.get("BM_Floor_Store/256.ns_per_op");
  const double floor1g = r.get("BM_Floor_Store/262144.ns_per_op");
  const double floor16k = r.get("BM_Floor_Store/16384.ns_per_op");
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0; };
  fmt::print("\n== Backend summary (floor = storing the same number of 8-byte entries)\n");
  fmt::print("{:<34} {:>12} {:>12} {:>14}\n", "operation", "ours", "floor", "Linux (i7)");
  auto row = [&](const char* what, double ours, double floor, const char* linux_ns) {
    fmt::print("{:<34} {:>9.1f} ns {:>9.1f} ns {:>14}   x{:.2f} floor\n", what, ours, floor,
               linux_ns, ratio(ours, floor));
  };
  row("vtd map 4K", r.get("BM_Vtd_Single4K.map_ns"), floor1, "55 ns");
  row("vtd unmap 4K", r.get("BM_Vtd_Single4K.unmap_ns"), floor1, "69 ns");
  row("vtd map 256x4K (one call)", r.get("BM_Vtd_Batch256.map_ns"), floor256, "391 ns");
  row("vtd unmap 256x4K (one call)", r.get("BM_Vtd_Batch256.unmap_ns"), floor256, "210 ns");
  row("vtd map 1G as 4K pages", r.get("BM_Vtd_1G/0/iterations:50.map_ns"), floor1g, "-");
  row("vtd unmap 1G as 4K pages", r.get("BM_Vtd_1G/0/iterations:50.unmap_ns"), floor1g, "-");
  row("vtd map 1G aligned (superpage)", r.get("BM_Vtd_1G/1/iterations:50.map_ns"), floor1, "-");
  row("vtd unmap 1G aligned", r.get("BM_Vtd_1G/1/iterations:50.unmap_ns"), floor1, "-");
  row("vtd translate (random, 4K pages)", r.get("BM_Vtd_Translate.ns_per_op"), floor1, "-");
  row("tce map 64K page", r.get("BM_Tce_Single.map_ns"), floor1, "-");
  row("tce unmap 64K page", r.get("BM_Tce_Single.unmap_ns"), floor1, "-");
  row("tce map 256x64K (one call)", r.get("BM_Tce_Batch256.map_ns"), floor256, "-");
  row("tce unmap 256x64K (one call)", r.get("BM_Tce_Batch256.unmap_ns"), floor256, "-");
  row("tce map 1G as 64K pages", r.get("BM_Tce_1G/iterations:50.map_ns"), floor16k, "-");
  row("tce unmap 1G as 64K pages", r.get("BM_Tce_1G/iterations:50.unmap_ns"), floor16k, "-");
  row("tce translate (random)", r.get("BM_Tce_Translate.ns_per_op"), floor1, "-");

  fmt::print("\n== Table memory per mapped GiB (hardware minimum: leaf tables + one per level)\n");
  const double vtd4k = r.get("BM_Vtd_1G/0/iterations:50.table_bytes");
  const double vtd1g = r.get("BM_Vtd_1G/1/iterations:50.table_bytes");
  const double tce64k = r.get("BM_Tce_1G/iterations:50.table_bytes");
  // VT-d 4K pages: 512 leaf tables + PD + PDPT + PML4. 1G page: PDPT + PML4.
  // TCE, 2 levels of 4096 entries (32 KiB): 4 leaf levels of 256 MiB + the top level.
  const double min_vtd4k = (512 + 3) * 4096.0, min_vtd1g = 2 * 4096.0, min_tce = 5 * 32768.0;
  auto mem = [&](const char* what, double ours, double min) {
    fmt::print("{:<34} {:>10.0f} B {:>10.0f} B   x{:.4f}\n", what, ours, min, ratio(ours, min));
  };
  mem("vtd 1G as 4K pages", vtd4k, min_vtd4k);
  mem("vtd 1G superpage", vtd1g, min_vtd1g);
  mem("tce 1G as 64K pages", tce64k, min_tce);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  print_summary(reporter);
  benchmark::Shutdown();
  return 0;
}
