// Allocation failure at every point of the calls that build state: MAP (type1 VFIO_IOMMU_MAP_DMA,
// iommufd IOMMU_IOAS_MAP and its VFIO compat MAP_DMA), BIND (VFIO_DEVICE_BIND_IOMMUFD), ATTACH
// (VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU) and IOMMU_IOAS_COPY.
//
// As Linux's fail-nth: for n = 1, 2, ... the n-th allocation made by the call fails, until a run
// no longer reaches an n-th allocation (then the call must have succeeded). Two kinds of
// allocation are swept, one after the other: the heap (this binary replaces the global operator
// new, which throws std::bad_alloc at the n-th while armed) and the IOMMU's page tables
// (iommu/fault_injection.h). Every failed call must fail with ENOMEM and leave the emulator
// exactly as it was (core::inspect's list, maps, per-domain leaves and stats, the consistency
// check, and the locked-memory charges); the same call without a failure must then succeed, and
// releasing every file must leave nothing behind.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "core/inspect/check.h"
#include "core/inspect/list.h"
#include "core/inspect/maps.h"
#include "core/inspect/stats.h"
#include "core/iommufd/iommufd.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "iommu/fault_injection.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Buffer;
using vfio_emu::test::Harness;

// ---- the counting allocator ----------------------------------------------------------------

namespace {

// The n-th operator new of this thread while armed fails (0: disarmed). Other threads (the
// unmask irqfd's) are never failed.
thread_local unsigned heap_countdown = 0;

bool heap_should_fail() {
  if (heap_countdown == 0) return false;
  return --heap_countdown == 0;
}

void* checked_malloc(std::size_t n) {
  if (heap_should_fail()) throw std::bad_alloc();
  if (void* p = std::malloc(n != 0 ? n : 1)) return p;
  throw std::bad_alloc();
}

void* checked_aligned(std::size_t n, std::align_val_t a) {
  if (heap_should_fail()) throw std::bad_alloc();
  const std::size_t align = static_cast<std::size_t>(a);
  const std::size_t size = (n + align - 1) / align * align;  // aligned_alloc wants a multiple
  if (void* p = std::aligned_alloc(align, size != 0 ? size : align)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t n) { return checked_malloc(n); }
void* operator new[](std::size_t n) { return checked_malloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (heap_should_fail()) return nullptr;
  return std::malloc(n != 0 ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a) { return checked_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return checked_aligned(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

// ---- injection around one ioctl --------------------------------------------------------------

enum class Kind { kNone, kHeap, kTable };

struct Injection {
  Kind kind = Kind::kNone;
  unsigned n = 0;
  bool fired = false;  // set by armed(): the n-th allocation was reached and failed
};
Injection injection;

// One ioctl straight into the emulator, with the injection armed around Emulator::ioctl alone
// (the harness's own bookkeeping allocates too). Returns the errno, 0 on success.
int armed(Harness& h, int fd, u32 cmd, u64 arg) {
  auto file = h.file(fd);
  REQUIRE(file);
  IoctlCall call;
  call.cmd = cmd;
  call.arg = arg;
  call.caller = h.caller;
  call.node_name = "fail-nth";
  call.mem = &h;
  call.fds = &h;
  call.env = &h;
  if (injection.kind == Kind::kHeap) heap_countdown = injection.n;
  if (injection.kind == Kind::kTable) iommu::fault_injection::fail_nth(injection.n);
  auto r = h.emu.ioctl(*file, call);
  if (injection.kind == Kind::kHeap) {
    injection.fired = injection.n != 0 && heap_countdown == 0;
    heap_countdown = 0;
  }
  if (injection.kind == Kind::kTable) {
    injection.fired = injection.n != 0 && iommu::fault_injection::consumed();
    iommu::fault_injection::fail_nth(0);
  }
  return r ? 0 : r.error();
}
template <class T>
int armed(Harness& h, int fd, u32 cmd, T* arg) {
  return armed(h, fd, cmd, reinterpret_cast<u64>(arg));
}

// Everything the tools can see of the emulator, plus the locked-memory charges: named parts.
using Snapshot = std::vector<std::pair<std::string, std::string>>;

Snapshot snapshot(Harness& h) {
  Snapshot s;
  s.emplace_back("list", inspect::list(h.emu).dump());
  auto maps = inspect::maps(h.emu, {});
  s.emplace_back("maps", maps ? maps->dump() : "error");
  for (const auto& d : h.emu.domains()) {
    inspect::MapFilter f;
    f.domain = d->id;
    auto leaves = inspect::maps(h.emu, f);
    s.emplace_back("leaves of domain " + std::to_string(d->id),
                   leaves ? leaves->dump() : "error");
  }
  auto stats = inspect::stats(h.emu);
  stats.erase("ioctls");  // the calls themselves are counted
  stats.erase("unknown_ioctls");
  s.emplace_back("stats", stats.dump());
  s.emplace_back("check", inspect::check(h.emu).dump());
  s.emplace_back("locked by the pid", std::to_string(h.emu.locked_memory().charged(h.caller.pid)));
  s.emplace_back("locked by the user", std::to_string(h.emu.locked_memory().charged(
                                           iommufd_user_lock_key(h.caller.uid))));
  return s;
}

// "" if equal, else where the first difference is, with some context on both sides.
std::string difference(const Snapshot& before, const Snapshot& after) {
  for (size_t i = 0; i < std::max(before.size(), after.size()); ++i) {
    if (i >= before.size()) return "after has more: " + after[i].first;
    if (i >= after.size()) return "before had more: " + before[i].first;
    const std::string& a = before[i].second;
    const std::string& b = after[i].second;
    if (before[i].first != after[i].first) return before[i].first + " vs " + after[i].first;
    if (a == b) continue;
    size_t k = 0;
    while (k < a.size() && k < b.size() && a[k] == b[k]) ++k;
    const size_t from = k > 80 ? k - 80 : 0;
    return before[i].first + " differs at " + std::to_string(k) + ":\n  before: ..." +
           a.substr(from, 240) + "\n  after:  ..." + b.substr(from, 240);
  }
  return "";
}

// What a scenario's setup made: the fds it opened (closed by hand at the end, to check what
// their release leaves behind) and object ids the call needs.
struct Fds {
  std::vector<int> all;
  std::vector<u32> ids;
  int open(Harness& h, const std::string& path) {
    const int fd = h.open(path);
    REQUIRE(fd >= 0);
    all.push_back(fd);
    return fd;
  }
};

// A scenario: `setup` brings a fresh emulator to the state before the call; `call` makes the
// call through armed() and returns its errno.
using Setup = std::function<void(Harness&, Fds&)>;
using Call = std::function<int(Harness&, Fds&)>;

constexpr const char* kTopology = R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[iommu]]
name = "dmar1"
model = "vtd"
aw_bits = 39
[[iommu]]
name = "nop0"
model = "nop"
[[group]]
id = 1
iommu = "dmar0"
devices = ["0000:00:01.0", "0000:00:01.1"]
[[group]]
id = 2
iommu = "dmar1"
devices = ["0000:00:02.0"]
[[group]]
id = 3
iommu = "nop0"
devices = ["0000:00:03.0"]
)";

Topology topology() {
  std::string error;
  auto t = Topology::parse(kTopology, &error);
  INFO(error);
  REQUIRE(t.has_value());
  return std::move(*t);
}

// What the call leaves when nothing fails, from a fresh emulator.
Snapshot after_success(const Setup& setup, const Call& call) {
  Harness h(topology());
  Fds fds;
  setup(h, fds);
  REQUIRE(call(h, fds) == 0);
  return snapshot(h);
}

// Sweeps n for one kind of allocation; returns how many failure points the call has.
unsigned sweep_kind(Kind kind, const Setup& setup, const Call& call, const Snapshot& success) {
  for (unsigned n = 1;; ++n) {
    INFO((kind == Kind::kHeap ? "heap" : "table") << " allocation " << n);
    Harness h(topology());
    Fds fds;
    setup(h, fds);
    const auto before = snapshot(h);
    injection = Injection{kind, n, false};
    const int e = call(h, fds);
    const bool fired = injection.fired;
    injection = Injection{};
    if (!fired) {
      REQUIRE(e == 0);  // every allocation of the call succeeded
      return n - 1;
    }
    if (e == 0) {
      // An allocation whose failure costs only a trace detail or a log line: the call did all
      // it does without it.
      CHECK(difference(success, snapshot(h)) == "");
    } else {
      CHECK(e == ENOMEM);
      CHECK(difference(before, snapshot(h)) == "");
      // Nothing failing, the same call succeeds (ids the failed call used are not reused, so
      // the result is not compared with `success`).
      REQUIRE(call(h, fds) == 0);
    }
    for (int fd : fds.all) h.close(fd);
    CHECK(h.emu.domains().empty());
    CHECK(h.emu.files().empty());
    CHECK(h.emu.locked_memory().charged(h.caller.pid) == 0);
    CHECK(h.emu.locked_memory().charged(iommufd_user_lock_key(h.caller.uid)) == 0);
    REQUIRE(n < 100000);
  }
}

void sweep(const Setup& setup, const Call& call) {
  const Snapshot success = after_success(setup, call);
  const unsigned heap = sweep_kind(Kind::kHeap, setup, call, success);
  const unsigned tables = sweep_kind(Kind::kTable, setup, call, success);
  INFO("heap allocations " << heap << ", table allocations " << tables);
  CHECK(heap > 0);
}

constexpr u64 K4 = 4096;
constexpr u64 M2 = u64{2} << 20;
constexpr u32 kMapRW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
constexpr u32 kIoasRW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
constexpr u32 kFixed = IOMMU_IOAS_MAP_FIXED_IOVA;

// Memory every scenario maps: 8 MiB, 2 MiB aligned.
Buffer& buffer() {
  static Buffer b(8 * M2);
  return b;
}

// IOVAs whose offset from the buffer's 2 MiB-aligned vaddr rules out superpages: every 4 KiB
// page is a leaf, in leaf tables allocated for the call.
constexpr u64 kOddIova = 0x1ff000;

int type1_map(Harness& h, int c, u64 vaddr, u64 iova, u64 size) {
  vfio_iommu_type1_dma_map m{sizeof(m), kMapRW, vaddr, iova, size};
  return armed(h, c, VFIO_IOMMU_MAP_DMA, &m);
}

int set_container(Harness& h, int group, int container) {
  return armed(h, group, VFIO_GROUP_SET_CONTAINER, &container);
}

u32 ioas_alloc(Harness& h, int fd) {
  iommu_ioas_alloc a{sizeof(a), 0, 0};
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOC, &a) == 0);
  return a.out_ioas_id;
}

int ioas_map(Harness& h, int fd, u32 ioas, u64 user_va, u64 length, u64 iova) {
  iommu_ioas_map m{};
  m.size = sizeof(m);
  m.flags = kIoasRW | kFixed;
  m.ioas_id = ioas;
  m.user_va = user_va;
  m.length = length;
  m.iova = iova;
  return armed(h, fd, IOMMU_IOAS_MAP, &m);
}

int bind(Harness& h, int dev, int iommufd) {
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = iommufd;
  return armed(h, dev, VFIO_DEVICE_BIND_IOMMUFD, &b);
}

int attach(Harness& h, int dev, u32 pt_id) {
  vfio_device_attach_iommufd_pt a{};
  a.argsz = sizeof(a);
  a.pt_id = pt_id;
  return armed(h, dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a);
}

// The setup calls go through armed() too, with nothing armed.
#define OK(call) REQUIRE((call) == 0)

// ---- type1 -----------------------------------------------------------------------------------

// A type1v2 container with groups 1 (dmar0), 2 (dmar1) and 3 (nop0): two domains.
struct Type1 {
  int c, g1, g2, g3;
};
Type1 type1_three_groups(Harness& h, Fds& fds) {
  Type1 t{fds.open(h, "vfio/vfio"), fds.open(h, "vfio/1"), fds.open(h, "vfio/2"),
          fds.open(h, "vfio/3")};
  OK(set_container(h, t.g1, t.c));
  OK(set_container(h, t.g2, t.c));
  OK(set_container(h, t.g3, t.c));
  OK(h.fails(t.c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
  return t;
}

}  // namespace

TEST_CASE("fail-nth: type1 MAP_DMA into two VT-d domains", "[fail-nth][type1]") {
  const u64 va = buffer().addr();
  sweep(
      [&](Harness& h, Fds& fds) {
        const Type1 t = type1_three_groups(h, fds);
        OK(type1_map(h, t.c, va, 0x40000000, M2));
      },
      [&](Harness& h, Fds& fds) { return type1_map(h, fds.all[0], va, kOddIova, 2 * M2); });
}

TEST_CASE("fail-nth: type1 SET_IOMMU attaches three groups", "[fail-nth][type1]") {
  for (u32 type : {VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU}) {
    INFO("type " << type);
    sweep(
        [&](Harness& h, Fds& fds) {
          const int c = fds.open(h, "vfio/vfio");
          for (const char* g : {"vfio/1", "vfio/2", "vfio/3"})
            OK(set_container(h, fds.open(h, g), c));
        },
        [&](Harness& h, Fds& fds) { return armed(h, fds.all[0], VFIO_SET_IOMMU, u64{type}); });
  }
}

TEST_CASE("fail-nth: type1 SET_CONTAINER adds a domain and replays the mappings",
          "[fail-nth][type1]") {
  const u64 va = buffer().addr();
  sweep(
      [&](Harness& h, Fds& fds) {
        const int c = fds.open(h, "vfio/vfio");
        OK(set_container(h, fds.open(h, "vfio/1"), c));
        OK(set_container(h, fds.open(h, "vfio/3"), c));
        OK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
        OK(type1_map(h, c, va, 0x40000000, M2));
        OK(type1_map(h, c, va + M2, kOddIova, M2));
        fds.open(h, "vfio/2");
      },
      [&](Harness& h, Fds& fds) { return set_container(h, fds.all[3], fds.all[0]); });
}

TEST_CASE("fail-nth: type1 SET_CONTAINER pins what an emulated group only recorded",
          "[fail-nth][type1]") {
  const u64 va = buffer().addr();
  sweep(
      [&](Harness& h, Fds& fds) {
        const int c = fds.open(h, "vfio/vfio");
        OK(set_container(h, fds.open(h, "vfio/3"), c));
        OK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
        OK(type1_map(h, c, va, 0x40000000, M2));
        OK(type1_map(h, c, va + M2, kOddIova, M2));
        fds.open(h, "vfio/1");
      },
      [&](Harness& h, Fds& fds) { return set_container(h, fds.all[2], fds.all[0]); });
}

// ---- iommufd -----------------------------------------------------------------------------------

TEST_CASE("fail-nth: SET_CONTAINER with an iommufd creates the compat IOAS",
          "[fail-nth][iommufd]") {
  sweep(
      [&](Harness& h, Fds& fds) {
        fds.open(h, "iommu");
        fds.open(h, "vfio/1");
      },
      [&](Harness& h, Fds& fds) { return set_container(h, fds.all[1], fds.all[0]); });
}

TEST_CASE("fail-nth: BIND_IOMMUFD", "[fail-nth][iommufd]") {
  sweep(
      [&](Harness& h, Fds& fds) {
        const int i = fds.open(h, "iommu");
        ioas_alloc(h, i);
        fds.open(h, "vfio/devices/vfio0");
      },
      [&](Harness& h, Fds& fds) { return bind(h, fds.all[1], fds.all[0]); });
}

namespace {

// An iommufd with IOAS 1 holding two areas (one of 4 KiB leaves), devices vfio0 (group 1,
// dmar0), vfio1 (group 1) and vfio2 (group 2, dmar1) bound; fds: iommufd, vfio0, vfio1, vfio2.
void iommufd_bound(Harness& h, Fds& fds, u64 va) {
  const int i = fds.open(h, "iommu");
  const u32 ioas = ioas_alloc(h, i);
  REQUIRE(ioas == 1);
  OK(ioas_map(h, i, ioas, va, M2, 0x40000000));
  OK(ioas_map(h, i, ioas, va + M2, M2, kOddIova));
  for (const char* d : {"vfio/devices/vfio0", "vfio/devices/vfio1", "vfio/devices/vfio2"})
    OK(bind(h, fds.open(h, d), i));
}

}  // namespace

TEST_CASE("fail-nth: ATTACH to an IOAS allocates a domain and fills it", "[fail-nth][iommufd]") {
  const u64 va = buffer().addr();
  sweep([&](Harness& h, Fds& fds) { iommufd_bound(h, fds, va); },
        [&](Harness& h, Fds& fds) { return attach(h, fds.all[1], 1); });
}

TEST_CASE("fail-nth: ATTACH of a second device of the group shares the HWPT",
          "[fail-nth][iommufd]") {
  const u64 va = buffer().addr();
  sweep(
      [&](Harness& h, Fds& fds) {
        iommufd_bound(h, fds, va);
        OK(attach(h, fds.all[1], 1));
      },
      [&](Harness& h, Fds& fds) { return attach(h, fds.all[2], 1); });
}

TEST_CASE("fail-nth: ATTACH to an explicit HWPT", "[fail-nth][iommufd]") {
  const u64 va = buffer().addr();
  u32 hwpt_id = 0;
  sweep(
      [&](Harness& h, Fds& fds) {
        iommufd_bound(h, fds, va);
        iommu_hwpt_alloc a{};
        a.size = sizeof(a);
        a.dev_id = 2;  // vfio0's device object (IOAS 1 came first: devices are 2, 3, 4)
        a.pt_id = 1;
        OK(armed(h, fds.all[0], IOMMU_HWPT_ALLOC, &a));
        hwpt_id = a.out_hwpt_id;
      },
      [&](Harness& h, Fds& fds) { return attach(h, fds.all[1], hwpt_id); });
}

TEST_CASE("fail-nth: ATTACH replaces the domain with one of another IOAS",
          "[fail-nth][iommufd]") {
  const u64 va = buffer().addr();
  u32 other = 0;
  sweep(
      [&](Harness& h, Fds& fds) {
        iommufd_bound(h, fds, va);
        OK(attach(h, fds.all[1], 1));
        OK(attach(h, fds.all[2], 1));
        other = ioas_alloc(h, fds.all[0]);
        OK(ioas_map(h, fds.all[0], other, va + 2 * M2, 2 * M2, kOddIova));
      },
      [&](Harness& h, Fds& fds) { return attach(h, fds.all[1], other); });
}

TEST_CASE("fail-nth: IOAS_MAP into two domains", "[fail-nth][iommufd]") {
  const u64 va = buffer().addr();
  sweep(
      [&](Harness& h, Fds& fds) {
        iommufd_bound(h, fds, va);
        OK(attach(h, fds.all[1], 1));
        OK(attach(h, fds.all[3], 1));
      },
      [&](Harness& h, Fds& fds) {
        return ioas_map(h, fds.all[0], 1, va + 2 * M2, 2 * M2, 0x10000000 + K4);
      });
}

TEST_CASE("fail-nth: IOAS_COPY of two areas into two domains", "[fail-nth][iommufd]") {
  const u64 va = buffer().addr();
  u32 dst = 0;
  sweep(
      [&](Harness& h, Fds& fds) {
        iommufd_bound(h, fds, va);
        const int i = fds.all[0];
        // The source: two areas back to back at 0x80000000.
        const u32 src = ioas_alloc(h, i);
        OK(ioas_map(h, i, src, va + 4 * M2, M2, 0x80000000));
        OK(ioas_map(h, i, src, va + 6 * M2, M2, 0x80000000 + M2));
        dst = 1;
        OK(attach(h, fds.all[1], dst));
        OK(attach(h, fds.all[3], dst));
        fds.ids.push_back(src);
      },
      [&](Harness& h, Fds& fds) {
        iommu_ioas_copy c{};
        c.size = sizeof(c);
        c.flags = kIoasRW | kFixed;
        c.dst_ioas_id = dst;
        c.src_ioas_id = fds.ids.at(0);
        c.length = 2 * M2;
        c.dst_iova = 0x20000000 + K4;
        c.src_iova = 0x80000000;
        return armed(h, fds.all[0], IOMMU_IOAS_COPY, &c);
      });
}

TEST_CASE("fail-nth: VFIO_IOMMU_MAP_DMA on an iommufd (compat IOAS with a domain)",
          "[fail-nth][iommufd]") {
  const u64 va = buffer().addr();
  sweep(
      [&](Harness& h, Fds& fds) {
        const int i = fds.open(h, "iommu");
        OK(set_container(h, fds.open(h, "vfio/1"), i));
        iommu_vfio_ioas get{};
        get.size = sizeof(get);
        get.op = IOMMU_VFIO_IOAS_GET;
        OK(armed(h, i, IOMMU_VFIO_IOAS, &get));
        const int dev = fds.open(h, "vfio/devices/vfio2");
        OK(bind(h, dev, i));
        OK(attach(h, dev, get.ioas_id));
        OK(h.fails(i, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
      },
      [&](Harness& h, Fds& fds) { return type1_map(h, fds.all[0], va, kOddIova, 2 * M2); });
}
