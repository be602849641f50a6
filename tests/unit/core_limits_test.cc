// What one daemon lets its clients take (core/resource_limits.h): page-table memory of all
// domains together, objects per iommufd context, mappings per IOAS, open files per uid. Each
// limit fails with Linux's errno for the same exhaustion, changes nothing, and logs one line with
// the figures in hex. Built-in topology: groups 1 and 2 (vfio0, vfio1) on VT-d dmar0, group 3
// (vfio2) on TCE phb0.
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>
#include <string>
#include <vector>

#include "core/log.h"
#include "base/log_rate_limit.h"
#include "core/reject.h"
#include "iommu/table_memory.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;
using core::Topology;

namespace {

constexpr u32 kMapRW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

// The lines the named loggers write while it lives (instead of stderr), at info level, with no
// rate limit.
class LogCapture {
 public:
  explicit LogCapture(std::vector<const char*> names)
      : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    sink_->set_pattern("%v");
    for (const char* n : names) {
      auto l = logger(n);
      saved_.push_back(l->sinks());
      l->sinks() = {sink_};
      loggers_.push_back(l);
    }
    set_log_level(spdlog::level::info);
    LogRateLimitConfig unlimited;
    unlimited.burst = unlimited.total_burst = 1e9;
    core::configure_rejection_log_limit(unlimited);
  }
  ~LogCapture() {
    for (size_t i = 0; i < loggers_.size(); ++i) loggers_[i]->sinks() = saved_[i];
    set_log_level(spdlog::level::warn);
    core::configure_rejection_log_limit({});
  }
  std::string text() {
    sink_->flush();
    return out_.str();
  }
  bool has(const std::string& s) { return text().find(s) != std::string::npos; }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  std::vector<std::shared_ptr<spdlog::logger>> loggers_;
  std::vector<std::vector<spdlog::sink_ptr>> saved_;
};

Topology with_limits(void (*set)(core::Limits&)) {
  Topology t = Topology::builtin();
  set(t.limits);
  return t;
}

// A type1v2 container holding `group`; returns the container fd.
int type1_container(Harness& h, const char* group, int* errno_of_set_iommu = nullptr) {
  const int c = h.open("vfio/vfio");
  const int g = h.open(group);
  REQUIRE(g >= 0);
  REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  const int e = h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  if (errno_of_set_iommu) *errno_of_set_iommu = e;
  else REQUIRE(e == 0);
  return c;
}

int map_dma(Harness& h, int c, u64 vaddr, u64 iova, u64 size) {
  vfio_iommu_type1_dma_map m{sizeof(m), kMapRW, vaddr, iova, size};
  return h.fails(c, VFIO_IOMMU_MAP_DMA, &m);
}

int unmap_dma(Harness& h, int c, u64 iova, u64 size, u64* unmapped = nullptr, u32 flags = 0) {
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof(u);
  u.flags = flags;
  u.iova = iova;
  u.size = size;
  const int e = h.fails(c, VFIO_IOMMU_UNMAP_DMA, &u);
  if (unmapped) *unmapped = u.size;
  return e;
}

bool translates(Harness& h, u64 domain_id, u64 iova) {
  for (const auto& d : h.emu.domains())
    if (d->id == domain_id) return d->hw->translate(iova, iommu::Access::kRead).ok();
  FAIL("no domain " << domain_id);
  return false;
}

u64 only_domain(Harness& h) {
  auto doms = h.emu.domains();
  REQUIRE(doms.size() == 1);
  return doms[0]->id;
}

int ioas_alloc_errno(Harness& h, int fd, u32* id = nullptr) {
  iommu_ioas_alloc a{sizeof(a), 0, 0};
  const int e = h.fails(fd, IOMMU_IOAS_ALLOC, &a);
  if (e == 0 && id) *id = a.out_ioas_id;
  return e;
}

int hwpt_alloc(Harness& h, int fd, u32 devid, u32 pt_id, u32* hwpt = nullptr) {
  iommu_hwpt_alloc a{};
  a.size = sizeof(a);
  a.dev_id = devid;
  a.pt_id = pt_id;
  const int e = h.fails(fd, IOMMU_HWPT_ALLOC, &a);
  if (e == 0 && hwpt) *hwpt = a.out_hwpt_id;
  return e;
}

u32 group_status(Harness& h, int g) {
  vfio_group_status s{sizeof(s), 0};
  REQUIRE(h.ioctl(g, VFIO_GROUP_GET_STATUS, &s) == 0);
  return s.flags;
}

}  // namespace

// ---- table_memory ------------------------------------------------------------------------------

TEST_CASE("limits: page tables of all domains share table_memory; beyond it a map is ENOMEM "
          "and changes nothing", "[limits][table_memory]") {
  // A 4-level VT-d domain takes its root table at once; one 4 KiB page needs three more.
  Harness h(with_limits([](core::Limits& l) { l.table_memory = 4 * K4; }));
  LogCapture log({"core", "core.type1"});
  const int c1 = type1_container(h, "vfio/1");
  const u64 d1 = only_domain(h);
  CHECK(h.emu.table_budget().used() == K4);
  Buffer buf(2 * M2);
  REQUIRE(map_dma(h, c1, buf.addr(), 0, K4) == 0);
  CHECK(h.emu.table_budget().used() == 4 * K4);
  // 1 GiB up needs a new directory and a new table: refused, and nothing of it is left.
  CHECK(map_dma(h, c1, buf.addr(), u64{1} << 30, K4) == ENOMEM);
  CHECK(log.has("VFIO_IOMMU_MAP_DMA: iova 0x40000000 size 0x1000: domain"));
  CHECK(log.has("a 0x1000-byte table would pass the limit 0x4000, table_memory): ENOMEM"));
  CHECK(h.emu.table_budget().used() == 4 * K4);
  CHECK_FALSE(translates(h, d1, u64{1} << 30));
  CHECK(translates(h, d1, 0));
  CHECK(unmap_dma(h, c1, u64{1} << 30, K4) == 0);  // no mapping was recorded there
  // A 2 MiB page in the existing directory needs no table: the limit is on tables, not maps.
  REQUIRE(map_dma(h, c1, buf.addr(), M2, M2) == 0);
  CHECK(translates(h, d1, M2 + 0x1234));

  // Another container's domain draws from the same budget: its root table does not fit.
  int e = 0;
  const int c2 = type1_container(h, "vfio/2", &e);
  CHECK(e == ENOMEM);
  CHECK(h.emu.domains().size() == 1);
  // Freed tables go back: unmapping the 4 KiB page frees its page table, room for the root.
  u64 unmapped = 0;
  REQUIRE(unmap_dma(h, c1, 0, K4, &unmapped) == 0);
  CHECK(unmapped == K4);
  CHECK(h.emu.table_budget().used() == 3 * K4);
  CHECK(h.fails(c2, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  CHECK(h.emu.domains().size() == 2);
  CHECK(h.emu.table_budget().used() == 4 * K4);
}

TEST_CASE("limits: table_memory bounds iommufd domains and sPAPR windows", "[limits][table_memory]") {
  SECTION("an IOAS with a domain: IOAS_MAP is ENOMEM and leaves no area") {
    Harness h(with_limits([](core::Limits& l) { l.table_memory = 4 * K4; }));
    LogCapture log({"core"});
    const int fd = h.open("iommu");
    const int dev = h.open("vfio/devices/vfio0");
    REQUIRE(bind(h, dev, fd) == 0);
    const u32 ioas = ioas_alloc(h, fd);
    REQUIRE(attach(h, dev, ioas) == 0);
    Buffer buf(2 * K4);
    REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), K4, 0) == 0);
    CHECK(ioas_map_at(h, fd, ioas, buf.addr() + K4, K4, u64{1} << 30) == ENOMEM);
    CHECK(log.has("the IOMMU domain refused the map (page tables: 0x4000 bytes in use"));
    u64 unmapped = 0;
    CHECK(ioas_unmap(h, fd, ioas, 0, kMax, &unmapped) == 0);
    CHECK(unmapped == K4);  // only the first mapping was ever there
    CHECK(h.emu.table_budget().used() == K4);
  }
  SECTION("TCE_CREATE of a window whose table does not fit is ENOMEM") {
    Harness h(with_limits([](core::Limits& l) { l.table_memory = u64{8} << 20; }));
    const int c = h.open("vfio/vfio");
    const int g = h.open("vfio/3");
    REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
    REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == 0);
    auto create = [&](u64 window_size, u64* start) {
      vfio_iommu_spapr_tce_create cr{};
      cr.argsz = sizeof(cr);
      cr.page_shift = 16;
      cr.window_size = window_size;
      cr.levels = 1;
      const int e = h.fails(c, VFIO_IOMMU_SPAPR_TCE_CREATE, &cr);
      *start = cr.start_addr;
      return e;
    };
    u64 start = 0;
    // 2^20 TCEs of 8 bytes in one level: 8 MiB of table alone.
    CHECK(create(u64{1} << 36, &start) == ENOMEM);
    const u64 used = h.emu.table_budget().used();
    CHECK(used < (u64{8} << 20));
    // The slot stays free: a window that fits gets it.
    REQUIRE(create(u64{1} << 30, &start) == 0);
    CHECK(start == u64{1} << 59);
    CHECK(h.emu.table_budget().used() > used);
  }
}

// ---- iommufd_objects ---------------------------------------------------------------------------

TEST_CASE("limits: objects per iommufd context; beyond the limit ENOMEM and nothing changes",
          "[limits][objects]") {
  Harness h(with_limits([](core::Limits& l) { l.iommufd_objects = 3; }));
  LogCapture log({"core"});
  const int fd = h.open("iommu");
  CHECK(ioas_alloc(h, fd) == 1);
  CHECK(ioas_alloc(h, fd) == 2);
  CHECK(ioas_alloc(h, fd) == 3);
  CHECK(ioas_alloc_errno(h, fd) == ENOMEM);
  CHECK(log.has("IOMMU_IOAS_ALLOC: iommufd 0x"));
  CHECK(log.has(": IOAS object: 0x3 objects, the limit (iommufd_objects): ENOMEM"));
  // Another context has its own count.
  const int fd2 = h.open("iommu");
  CHECK(ioas_alloc(h, fd2) == 1);

  // BIND needs a device object: refused, the device stays unbound.
  const int dev = h.open("vfio/devices/vfio0");
  CHECK(bind(h, dev, fd) == ENOMEM);
  vfio_device_info info{};
  info.argsz = sizeof(info);
  CHECK(h.fails(dev, VFIO_DEVICE_GET_INFO, &info) == EINVAL);  // not bound
  REQUIRE(destroy(h, fd, 2) == 0);
  u32 devid = 0;
  REQUIRE(bind(h, dev, fd, &devid) == 0);
  CHECK(devid == 2);  // the lowest free id

  // ATTACH to an IOAS needs an automatic HWPT object; HWPT_ALLOC one of its own.
  CHECK(attach(h, dev, 1) == ENOMEM);
  CHECK(h.emu.domains().empty());
  CHECK(hwpt_alloc(h, fd, devid, 1) == ENOMEM);
  CHECK(h.emu.domains().empty());
  REQUIRE(destroy(h, fd, 3) == 0);
  u32 hwpt = 0;
  REQUIRE(attach(h, dev, 1, &hwpt) == 0);
  CHECK(hwpt == 3);

  // A group joining a full iommufd needs a compat IOAS: refused, the group has no container.
  const int g = h.open("vfio/2");
  CHECK(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd) == ENOMEM);
  CHECK((group_status(h, g) & VFIO_GROUP_FLAGS_CONTAINER_SET) == 0);
  CHECK(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd2) == 0);
}

// ---- ioas_mappings -----------------------------------------------------------------------------

TEST_CASE("limits: mappings per IOAS; beyond the limit ENOMEM and nothing changes",
          "[limits][mappings]") {
  Harness h(with_limits([](core::Limits& l) { l.ioas_mappings = 2; }));
  LogCapture log({"core"});
  Buffer buf(8 * K4);
  SECTION("IOAS_MAP and IOAS_COPY") {
    const int fd = h.open("iommu");
    const u32 a = ioas_alloc(h, fd);
    const u32 b = ioas_alloc(h, fd);
    REQUIRE(ioas_map_at(h, fd, a, buf.addr(), K4, 0x10000) == 0);
    REQUIRE(ioas_map_at(h, fd, a, buf.addr() + K4, K4, 0x11000) == 0);
    CHECK(ioas_map_at(h, fd, a, buf.addr(), K4, 0x20000) == ENOMEM);
    CHECK(log.has("IOMMU_IOAS_MAP: 0x1 more mapping(s) on the IOAS's 0x2 would pass the limit 0x2 "
                  "(ioas_mappings): ENOMEM"));
    // The copy of both mappings would make two areas in b, which has one already.
    REQUIRE(ioas_map_at(h, fd, b, buf.addr(), K4, 0x50000) == 0);
    iommu_ioas_copy cp{};
    cp.size = sizeof(cp);
    cp.flags = kRW | kFixed;
    cp.dst_ioas_id = b;
    cp.src_ioas_id = a;
    cp.length = 2 * K4;
    cp.dst_iova = 0x60000;
    cp.src_iova = 0x10000;
    CHECK(h.fails(fd, IOMMU_IOAS_COPY, &cp) == ENOMEM);
    u64 unmapped = 0;
    CHECK(ioas_unmap(h, fd, b, 0, kMax, &unmapped) == 0);
    CHECK(unmapped == K4);
    CHECK(h.fails(fd, IOMMU_IOAS_COPY, &cp) == 0);  // now there is room
    CHECK(ioas_unmap(h, fd, a, 0, kMax, &unmapped) == 0);
    CHECK(unmapped == 2 * K4);
  }
  SECTION("compat type1 v1: an unmap inside a mapping that would split it twice") {
    const int fd = h.open("iommu");
    const int g = h.open("vfio/1");
    REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd) == 0);
    REQUIRE(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == 0);
    REQUIRE(map_dma(h, fd, buf.addr(), 0x10000, 8 * K4) == 0);
    // The middle needs two cuts (three areas); both are refused before either is made.
    CHECK(unmap_dma(h, fd, 0x12000, 2 * K4) == ENOMEM);
    CHECK(log.has("0x2 more mapping(s) on the IOAS's 0x1 would pass the limit 0x2"));
    // The tail needs one cut: two areas fit.
    u64 unmapped = 0;
    REQUIRE(unmap_dma(h, fd, 0x14000, 4 * K4, &unmapped) == 0);
    CHECK(unmapped == 4 * K4);
    // The mapping was never split by the refused call: [0x10000, 0x14000) is one area.
    CHECK(unmap_dma(h, fd, 0x10000, 4 * K4, &unmapped) == 0);
    CHECK(unmapped == 4 * K4);
  }
}

TEST_CASE("limits: type1 dma_entry_limit comes from the topology's [limits]", "[limits][type1]") {
  Harness h(parse_topology(R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "dmar0"
devices = ["0000:00:01.0"]
[limits]
dma_entry_limit = 2
)"));
  LogCapture log({"core"});
  const int c = type1_container(h, "vfio/1");
  Buffer buf(K4);
  REQUIRE(map_dma(h, c, buf.addr(), 0, K4) == 0);
  REQUIRE(map_dma(h, c, buf.addr(), K4, K4) == 0);
  CHECK(map_dma(h, c, buf.addr(), 2 * K4, K4) == ENOSPC);
  CHECK(log.has("iova 0x2000: dma_entry_limit (0x2) mappings reached: ENOSPC"));
}

// ---- open_files_per_uid ------------------------------------------------------------------------

TEST_CASE("limits: open files per uid; beyond the limit ENFILE, root exempt", "[limits][open]") {
  Harness h(with_limits([](core::Limits& l) { l.open_files_per_uid = 2; }));
  LogCapture log({"core"});
  h.caller.uid = 1000;
  const int a = h.open("iommu");
  const int b = h.open("vfio/vfio");
  REQUIRE(a >= 0);
  REQUIRE(b >= 0);
  CHECK(h.open("vfio/1") == -1);
  CHECK(errno == ENFILE);
  CHECK(log.has("vfio/1 pid " + std::to_string(getpid()) + " open: uid 1000 has 0x2 files open, "
                "the limit (open_files_per_uid): ENFILE"));
  CHECK(h.emu.open_files().count(1000) == 2);
  // The refused open of the group left it free: once a file is closed, it opens.
  REQUIRE(h.close(b) == 0);
  CHECK(h.emu.open_files().count(1000) == 1);
  const int g = h.open("vfio/1");
  CHECK(g >= 0);
  // Another user has a count of its own; root has no limit.
  h.caller.uid = 1001;
  CHECK(h.open("vfio/vfio") >= 0);
  h.caller.uid = 0;
  for (int i = 0; i < 5; ++i) CHECK(h.open("vfio/vfio") >= 0);
  // A failed open of another kind (EBUSY) gives its count back.
  h.caller.uid = 1001;
  CHECK(h.open("vfio/1") == -1);
  CHECK(errno == EBUSY);
  CHECK(h.emu.open_files().count(1001) == 1);
  CHECK(h.open("vfio/vfio") >= 0);
  CHECK(h.emu.open_files().count(1001) == 2);
}
