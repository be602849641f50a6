// A tour of the simulated IOMMU hardware, without daemon or VFIO: builds a VT-d domain and a TCE
// table group, maps a few ranges and prints what the tables hold and how addresses translate.
#include <fmt/core.h>

#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

using namespace vfio_emu;
using namespace vfio_emu::iommu;

static void show(const Domain& d, const char* title) {
  fmt::print("== {}\n", title);
  int shown = 0;
  d.walk(0, kU64Max, [&](const LeafView& l) {
    if (++shown > 6) return;
    fmt::print("  iova {:#018x}..{:#018x} -> {:#014x}  {:>4} KiB  level {}  {}{}\n", l.iova,
               l.iova + l.size - 1, l.output, l.size >> 10, l.level,
               (l.prot & kProtRead) ? "r" : "-", (l.prot & kProtWrite) ? "w" : "-");
  });
  if (shown > 6) fmt::print("  ... {} more leaves\n", shown - 6);
  const DomainStats s = d.stats();
  fmt::print("  {} leaf entries, {} tables, {} bytes of tables\n", s.entries, s.tables,
             s.table_bytes);
}

static void explain(const Domain& d, u64 iova) {
  const Translation t = d.translate(iova, Access::kRead);
  fmt::print("  translate {:#x}:", iova);
  for (int i = 0; i < t.nsteps; ++i)
    fmt::print(" L{}[{}]={:#x}", t.steps[i].level, t.steps[i].index, t.steps[i].entry);
  if (t.ok())
    fmt::print(" -> {:#x}\n", t.output);
  else
    fmt::print(" -> fault {} at level {}\n", fault_reason_name(t.fault), t.fault_level);
}

int main() {
  auto unit = vtd::VtdUnit::create(vtd::VtdConfig{}).take();
  auto vtd_domain = unit->create_domain().take();
  const u64 buf = 0x7f0000000000;
  (void)vtd_domain->map(0x1000, buf, 0x3000, kProtRW).take();
  (void)vtd_domain->map(0x200000, buf + 0x200000, 0x200000, kProtRead).take();
  (void)vtd_domain->map(0x40000000, buf + 0x40000000, 0x40000000, kProtRW).take();
  show(*vtd_domain, "VT-d domain (48-bit, 4 levels)");
  explain(*vtd_domain, 0x2abc);
  explain(*vtd_domain, 0x234567);
  explain(*vtd_domain, 0x5000);
  fmt::print("  unmap 4 KiB inside the 1 GiB page: {} bytes\n",
             vtd_domain->unmap(0x40100000, 0x40100fff).take());
  show(*vtd_domain, "after splitting the 1 GiB page");

  auto phb = tce::TceUnit::create(tce::TceConfig{}).take();
  auto dom = phb->create_domain().take();
  auto& tce_domain = static_cast<tce::TceDomain&>(*dom);
  const u64 dma32 = tce_domain.create_window(12, 1ull << 30, 1).take();
  const u64 ddw = tce_domain.create_window(16, 1ull << 40, 2).take();
  (void)tce_domain.map(dma32 + 0x10000, buf, 0x2000, kProtRW).take();
  (void)tce_domain.map(ddw, buf + 0x100000, 0x20000, kProtWrite).take();
  show(tce_domain, "TCE table group (32-bit window + 2-level 64K DDW)");
  explain(tce_domain, ddw + 0x10004);
  return 0;
}
