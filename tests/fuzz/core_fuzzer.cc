// libFuzzer target over the in-process emulator: open, ioctl, pread/pwrite and release on every
// node kind, driven by the fuzz input, the way core/unit tests drive it (tests/unit/
// core_harness.h) but with a caller that exists only in this process: argument bytes come from
// the input, fd numbers name the fuzzer's own open files (or nothing), and no real process is
// ever read, written or looked at.
//
// After each input every file is released and the emulator must be clean again: no open file,
// no domain, no locked-memory charge, no group or device still held, no fd of the caller's still
// open in the daemon. A leftover is reported as a crash (__builtin_trap), so that libFuzzer keeps
// the input. Every IOMMU domain's page table is checked against what the emulator recorded
// before the release, too.
//
// The input (tests/fuzz/README.md has the full format; tests/fuzz/make_corpus.py writes seeds):
//   byte 0         configuration: topology, RLIMIT_MEMLOCK, whether the transport reads ahead,
//                  type1's dma_entry_limit, the CUSE retry protocol
//   then ops       each op is one byte, then its operands (missing bytes read as zero):
//     0 open NODE              1 close SLOT              2 dup SLOT
//     3 ioctl SLOT CMD ARG     4 pread/pwrite            5 caller PID/UID
//     6 env LIMIT CAPS         7 inspect WHAT ...        8 raise_irq DEV INDEX VECTOR
//
// Set VFIO_EMU_FUZZ_LOG=1 (refusals) or 2 (every ioctl) to see the core's log while reproducing
// an input.
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "core/device.h"
#include "core/node_type.h"
#include "core/device_irqs.h"
#include "core/emulator.h"
#include "core/inspect/check.h"
#include "core/inspect/list.h"
#include "core/inspect/maps.h"
#include "core/inspect/page_table.h"
#include "core/inspect/stats.h"
#include "core/iommufd/iommufd.h"
#include "core/log.h"
#include "iommu/nop/nop.h"
#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

namespace vfio_emu::fuzz {
namespace {

using core::u16;
using core::u32;
using core::u64;
using core::u8;

// ---- the input -------------------------------------------------------------------------------

// Reads little-endian values off the input; past its end everything reads as zero.
class Input {
 public:
  Input(const u8* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  template <class T>
  T get() {
    T v{};
    const size_t n = std::min(sizeof(T), size_ - std::min(pos_, size_));
    if (n != 0) std::memcpy(&v, data_ + pos_, n);
    pos_ += sizeof(T);
    return v;
  }
  // Up to `n` bytes (fewer at the end of the input).
  std::pair<const u8*, size_t> bytes(size_t n) {
    const size_t have = pos_ < size_ ? std::min(n, size_ - pos_) : 0;
    const u8* p = data_ + std::min(pos_, size_);
    pos_ += have;
    return {p, have};
  }

 private:
  const u8* data_;
  size_t size_;
  size_t pos_ = 0;
};

// ---- the caller's address space --------------------------------------------------------------

// Three windows of a pretend process; any other address faults. The argument window holds what
// the input put there for the current ioctl (and what the handler wrote back); the DMA windows
// read as zeros and can be mapped for DMA (read-only for the second).
constexpr u64 kArgBase = 0x7f0000000000;
constexpr u64 kArgSize = 64 * 1024;
constexpr u64 kRwBase = 0x10000000;
constexpr u64 kRwSize = 64 << 20;
constexpr u64 kRoBase = 0x20000000;
constexpr u64 kRoSize = 16 << 20;

// [addr, addr + len) inside [base, base + size)?
bool inside(u64 addr, u64 len, u64 base, u64 size) {
  return addr >= base && addr - base <= size && len <= size - (addr - base);
}

// fd numbers as the caller sees them: slots from kFirstSlotFd, then two files that are not ours.
constexpr int kSlots = 16;
constexpr int kFirstSlotFd = 3;
constexpr int kForeignFileFd = 20;  // an open file that is no VFIO node and no eventfd
constexpr int kEventFd = 21;        // an eventfd

// Two pretend processes; pid 1000 is the usual caller.
constexpr pid_t kPids[] = {1000, 2000};
constexpr uid_t kUids[] = {1000, 0};
// RLIMIT_MEMLOCK choices. Always finite, and CAP_IPC_LOCK is never granted: the emulator pins
// nothing, so without a limit a mapping recorded for another process (whose memory it cannot
// look at) could make a domain program 2^35 page-table entries, which is a slow input, not a bug.
constexpr u64 kLimits[] = {64 << 20, 16 << 20, 1 << 20, 0};

class Process final : public core::UserMemory, public core::FdResolver, public core::CallerEnv {
 public:
  // `window` is the argument window's memory, kArgSize bytes that live as long as the process.
  Process(int devnull, u8* window) : devnull_(devnull), arg_(window) { clear_arg(); }
  ~Process() override {
    if (eventfd_ >= 0) ::close(eventfd_);
  }

  // ---- what the input controls ----
  std::array<std::shared_ptr<core::File>, kSlots> slots;
  std::array<std::string, kSlots> paths;
  core::Caller caller{kPids[0], kPids[0], kUids[0], kUids[0]};
  u64 limit = kLimits[0];
  u64 caps = 0;  // bit n: capability n
  bool read_ahead_enabled = true;

  // Places `len` argument bytes at `at` in the argument window (the rest of it reads as zero).
  void set_arg(u64 at, const u8* p, size_t len) {
    clear_arg();
    if (len == 0) return;
    std::memcpy(arg_ + (at - kArgBase), p, len);
    dirty(at - kArgBase, len);
  }
  // Changes argument bytes already placed (what the caller wrote, not a reply).
  void set_arg_bytes(u64 at, const void* p, size_t len) {
    std::memcpy(arg_ + (at - kArgBase), p, len);
    dirty(at - kArgBase, len);
  }
  // Zeroes what the last argument and the handler's replies left in the window.
  void clear_arg() {
    if (dirty_hi_ > dirty_lo_) std::memset(arg_ + dirty_lo_, 0, dirty_hi_ - dirty_lo_);
    dirty_lo_ = kArgSize;
    dirty_hi_ = 0;
  }

  // The argument window's bytes from `at` as the handler left them (what user space reads back).
  std::string window(u64 at, size_t len) const {
    return std::string(reinterpret_cast<const char*>(arg_ + (at - kArgBase)), len);
  }

  // Numbers handed out by take_foreign(): all must be closed once everything is released.
  std::vector<int> foreign_fds;

  // ---- the CUSE retry protocol (configuration bit 5) ----
  // The caller's memory as a handler sees it when the transport cannot read it directly (CUSE
  // retry, cuse/request_caller.cc): only what earlier rounds fetched is at hand, any other read
  // ends the round with kNeedRetry (the handler runs again from the start with it), every write
  // must have been announced with will_write in an earlier round, and an announced range is
  // fetched too. A round that ends in kNeedRetry must not have changed anything (Run::ioctl
  // checks).
  bool retry_protocol = false;
  // Set once the transport itself failed an ioctl (a range it could not copy, its limits): from
  // then on the input no longer runs as it does with direct access.
  bool transport_failed = false;
  void start_ioctl() {
    fetched_.clear();
    announced_.clear();
    ask_in_.clear();
    ask_out_.clear();
  }
  // After a round that ended in kNeedRetry: 0 if the next round has what was asked, else the
  // errno the kernel fails the ioctl with (it could not copy an asked range).
  int next_round() {
    for (const Range& r : ask_in_) {
      if (!readable(r.addr, r.len)) {
        transport_failed = true;
        return EFAULT;
      }
    }
    fetched_.insert(fetched_.end(), ask_in_.begin(), ask_in_.end());
    announced_.insert(announced_.end(), ask_out_.begin(), ask_out_.end());
    ask_in_.clear();
    ask_out_.clear();
    return 0;
  }

  // ---- UserMemory ----
  Status read(u64 addr, void* dst, std::size_t len) override {
    if (len == 0) return {};  // copy_from_user of nothing, wherever it points
    if (retry_protocol && !covered(fetched_, addr, len)) return ask(addr, len);
    if (inside(addr, len, kArgBase, kArgSize)) {
      std::memcpy(dst, arg_ + (addr - kArgBase), len);
      return {};
    }
    if (inside(addr, len, kRwBase, kRwSize) || inside(addr, len, kRoBase, kRoSize)) {
      std::memset(dst, 0, len);
      return {};
    }
    return Err{EFAULT};
  }
  std::size_t read_ahead(u64 addr, void* dst, std::size_t len) override {
    if (!read_ahead_enabled || retry_protocol || addr < kArgBase || addr - kArgBase >= kArgSize) return 0;
    const std::size_t n = std::min<u64>(len, kArgSize - (addr - kArgBase));
    std::memcpy(dst, arg_ + (addr - kArgBase), n);
    return n;
  }
  Status will_write(u64 addr, std::size_t len) override {
    if (!retry_protocol || len == 0 || covered(announced_, addr, len)) return {};
    if (!covered(ask_out_, addr, len)) ask_out_.push_back(Range{addr, len});
    return ask(addr, len);
  }
  Status write(u64 addr, const void* src, std::size_t len) override {
    if (len == 0) return {};
    if (retry_protocol && !covered(announced_, addr, len)) {
      std::fprintf(stderr, "vfio-emu fuzz: a write of %#zx bytes at %#llx was not announced with "
                   "will_write (the CUSE retry protocol cannot deliver it)\n", len,
                   static_cast<unsigned long long>(addr));
      __builtin_trap();
    }
    if (inside(addr, len, kArgBase, kArgSize)) {
      std::memcpy(arg_ + (addr - kArgBase), src, len);
      dirty(addr - kArgBase, len);
      return {};
    }
    if (inside(addr, len, kRwBase, kRwSize)) return {};
    return Err{EFAULT};
  }

  // ---- FdResolver ----
  std::shared_ptr<core::File> slot_file(int fd) const {
    if (fd < kFirstSlotFd || fd >= kFirstSlotFd + kSlots) return nullptr;
    return slots[fd - kFirstSlotFd];
  }
  Result<std::shared_ptr<core::File>> resolve(int fd) override {
    if (fd == kForeignFileFd || fd == kEventFd) return std::shared_ptr<core::File>();
    if (auto f = slot_file(fd)) return f;
    return Err{EBADF};
  }
  Result<core::UniqueFd> take_eventfd(int fd) override {
    int source = -1;
    if (fd == kEventFd) {
      if (eventfd_ < 0) eventfd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      source = eventfd_;
    } else if (fd == kForeignFileFd || slot_file(fd)) {
      return Err{EINVAL};  // open, but no eventfd: never taken (as the transport)
    }
    if (source < 0) return Err{EBADF};
    const int dup = ::fcntl(source, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return Err{EBADF};
    foreign_fds.push_back(dup);
    return core::UniqueFd(dup);
  }

  // ---- CallerEnv ----
  u64 dma_accessible(u64 addr, u64 len, core::Prot prot) override {
    auto prefix = [&](u64 base, u64 size) -> u64 {
      if (addr < base || addr - base >= size) return 0;
      return std::min(len, size - (addr - base));
    };
    u64 n = prefix(kRwBase, kRwSize);
    if (n == 0) n = prefix(kArgBase, kArgSize);
    if (n == 0 && !(prot & iommu::kProtWrite)) n = prefix(kRoBase, kRoSize);
    return n;
  }
  u64 memlock_limit() override { return limit; }
  bool capable(int cap) override { return cap >= 0 && cap < 64 && ((caps >> cap) & 1); }

  void close_eventfd() {
    if (eventfd_ >= 0) ::close(eventfd_);
    eventfd_ = -1;
  }

 private:
  int devnull_;
  int eventfd_ = -1;
  struct Range {
    u64 addr;
    u64 len;
  };
  static bool covered(const std::vector<Range>& v, u64 addr, u64 len) {
    for (const Range& r : v)
      if (inside(addr, len, r.addr, r.len)) return true;
    return false;
  }
  static bool readable(u64 addr, u64 len) {
    return inside(addr, len, kArgBase, kArgSize) || inside(addr, len, kRwBase, kRwSize) ||
           inside(addr, len, kRoBase, kRoSize);
  }
  // The transport's limits (cuse/request_caller.h): 256 iovecs, 128 KiB.
  Status ask(u64 addr, u64 len) {
    if (!covered(ask_in_, addr, len)) ask_in_.push_back(Range{addr, len});
    u64 bytes = 0;
    for (const Range& r : fetched_) bytes += r.len;
    for (const Range& r : ask_in_) bytes += r.len;
    if (fetched_.size() + ask_in_.size() > 256 || bytes > 32 * 4096) {
      transport_failed = true;
      return Err{ENOMEM};
    }
    return Err{kNeedRetry};
  }

  void dirty(u64 off, size_t len) {
    dirty_lo_ = std::min<size_t>(dirty_lo_, off);
    dirty_hi_ = std::max<size_t>(dirty_hi_, off + len);
  }

  u8* arg_;
  size_t dirty_lo_ = 0;
  size_t dirty_hi_ = kArgSize;  // the first clear_arg() zeroes it all
  std::vector<Range> fetched_, announced_, ask_in_, ask_out_;
};

// ---- the machines ------------------------------------------------------------------------------

// Richer than the built-in one: a group of two devices, a device whose reset fails, a VT-d unit
// with few domain ids and one that refuses to split superpages, two TCE units (one with a single
// window), and a unit without DMA.
core::Topology fuzz_topology() {
  core::Topology t;
  iommu::vtd::VtdConfig vtd;
  vtd.name = "dmar0";
  vtd.max_domains = 16;
  vtd.reserved = {iommu::IovaRange{0xfee00000, 0xfeefffff}};
  t.units.push_back(iommu::vtd::VtdUnit::create(vtd).take());
  iommu::vtd::VtdConfig vtd39;
  vtd39.name = "dmar1";
  vtd39.aw_bits = 39;
  vtd39.page_1g = false;
  vtd39.split = iommu::SplitPolicy::kRefuse;
  vtd39.snoop_control = false;
  t.units.push_back(iommu::vtd::VtdUnit::create(vtd39).take());
  iommu::tce::TceConfig tce;
  tce.name = "phb0";
  t.units.push_back(iommu::tce::TceUnit::create(tce).take());
  iommu::tce::TceConfig tce1;
  tce1.name = "phb1";
  tce1.max_windows = 1;
  tce1.dma32_window_size = u64{32} << 20;  // VFIO_IOMMU_ENABLE charges it all: within the limit
  t.units.push_back(iommu::tce::TceUnit::create(tce1).take());
  t.units.push_back(std::make_shared<iommu::nop::NopUnit>("nop0"));

  u32 cdev = 0;
  auto group = [&](u32 id, const char* unit, std::vector<const char*> bdfs, bool fail_reset) {
    core::GroupSpec g;
    g.id = id;
    g.iommu = unit;
    for (const char* bdf : bdfs) {
      core::DeviceSpec d;
      d.bdf = bdf;
      d.cdev_index = cdev++;
      d.fail_reset = fail_reset;
      g.devices.push_back(d);
    }
    t.groups.push_back(g);
  };
  group(1, "dmar0", {"0000:00:01.0", "0000:00:01.1"}, false);
  group(2, "dmar0", {"0000:00:02.0"}, true);
  group(3, "dmar1", {"0000:00:03.0"}, false);
  group(4, "phb0", {"0001:00:00.0"}, false);
  group(5, "phb0", {"0001:00:01.0"}, false);
  group(6, "phb1", {"0002:00:00.0"}, false);
  group(7, "nop0", {"0000:00:04.0"}, false);
  return t;
}

// The machine an input runs on. Constructing one costs more than most inputs (its trace ring
// alone is 1.3 MB), so each is made once and reused (a twin of each serves the direct side of a
// differential run): it must be clean after every
// input anyway, which is what finish() checks. What a clean emulator still remembers on purpose
// is reset here: a device whose reset failed stays in a bad state, and region contents persist.
core::Emulator& machine(bool builtin, bool few_dma_entries, bool twin) {
  static std::unique_ptr<core::Emulator> machines[8];
  auto& m = machines[(builtin ? 1 : 0) | (few_dma_entries ? 2 : 0) | (twin ? 4 : 0)];
  if (!m) {
    core::Topology topology = builtin ? core::Topology::builtin() : fuzz_topology();
    if (few_dma_entries) topology.limits.dma_entry_limit = 8;  // type1's ENOSPC within reach
    m = std::make_unique<core::Emulator>(std::move(topology));
    // Device models with engines (the built-in machine's I/OAT) run on threads of their own:
    // what a pread of their registers returns depends on timing, which the twin-machine
    // comparison cannot allow. Their registers read 0 here; devices-ioat tests the model.
    core::connect_device_models(*m, false);
  }
  for (const auto& g : m->groups()) {
    for (const auto& d : g->devices()) {
      d->bad_state = false;
      d->reset();
    }
  }
  return *m;
}

// ---- one input -----------------------------------------------------------------------------------

[[noreturn]] void leftover(const char* what) {
  std::fprintf(stderr, "vfio-emu fuzz: after releasing every file: %s\n", what);
  __builtin_trap();
}

int devnull_fd() {
  static const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return fd;
}

class Run {
 public:
  Run(core::Emulator& emu, Process& p) : emu_(emu), p_(p) {}

  // What an op returned to the caller: compared between the two sides of a differential run.
  struct Outcome {
    u32 cmd = 0;
    long result = 0;
    std::string reply;  // the argument struct as the handler left it
    bool operator==(const Outcome&) const = default;
  };

  Outcome op(Input& in) {
    Outcome out;
    switch (in.get<u8>() % 9) {
      case 0: open(in.get<u8>()); break;
      case 1: close(in.get<u8>() % kSlots); break;
      case 2: dup(in.get<u8>() % kSlots); break;
      case 3: out = ioctl(in); break;
      case 4: out.result = rw(in); break;
      case 5: {
        const u8 who = in.get<u8>();
        p_.caller.pid = p_.caller.tid = kPids[who & 1];
        p_.caller.uid = p_.caller.gid = kUids[(who >> 1) & 1];
        break;
      }
      case 6: {
        p_.limit = kLimits[in.get<u8>() % std::size(kLimits)];
        const u8 caps = in.get<u8>();
        p_.caps = 0;
        if (caps & 1) p_.caps |= u64{1} << CAP_SYS_RESOURCE;
        if (caps & 2) p_.caps |= u64{1} << CAP_SYS_RAWIO;
        if (caps & 4) p_.caps |= u64{1} << CAP_SYS_ADMIN;
        break;
      }
      case 7: inspect(in); break;
      case 8: {
        const u8 pick = in.get<u8>();
        const u8 index = in.get<u8>();
        const u8 vector = in.get<u8>();
        std::vector<const core::Device*> devices;
        for (const auto& g : emu_.groups())
          for (const auto& d : g->devices()) devices.push_back(d.get());
        out.result = core::raise_irq(*devices[pick % devices.size()], index % 6, vector);
        break;
      }
    }
    return out;
  }

  // Releases everything, then checks that nothing is left in the emulator.
  void finish() {
    // The page tables must hold what was recorded, before the release takes it all away.
    if (!core::inspect::check(emu_).value("ok", false)) {
      std::fprintf(stderr, "%s\n", core::inspect::check(emu_).dump(1).c_str());
      std::fprintf(stderr, "vfio-emu fuzz: a page table differs from the record\n");
      __builtin_trap();
    }
    for (int s = 0; s < kSlots; ++s) close(s);
    p_.close_eventfd();
    if (!emu_.files().empty()) leftover("an open file");
    if (!emu_.domains().empty()) leftover("an IOMMU domain");
    for (pid_t pid : kPids)
      if (emu_.locked_memory().charged(pid) != 0) leftover("locked memory charged to a pid");
    for (uid_t uid : kUids)
      if (emu_.locked_memory().charged(core::iommufd_user_lock_key(uid)) != 0)
        leftover("locked memory charged to a user");
    for (const auto& g : emu_.groups()) {
      if (g->open_file != nullptr || g->released_file) leftover("a group still open");
      if (g->container || g->ictx) leftover("a group still in a container or an iommufd");
      if (g->device_users != 0) leftover("a group still used by device files");
      for (const auto& d : g->devices()) {
        if (d->cdev_opens != 0 || d->group_path_files != 0) leftover("a device still open");
        if (d->bound_file != nullptr) leftover("a device still bound");
        if (core::raise_irq(*d, 0) || core::raise_irq(*d, 4)) leftover("a device interrupt");
      }
    }
  }

  // After finish() (of both sides of a differential run, whose fd numbers interleave): the
  // duplicates of the caller's fds the core took are all closed.
  void check_caller_fds() {
    for (int fd : p_.foreign_fds)
      if (::fcntl(fd, F_GETFD) != -1) leftover("a duplicate of the caller's fd is still open");
  }

 private:
  void open(u8 pick) {
    const auto& nodes = emu_.nodes();
    const core::NodeInfo& node = nodes[pick % nodes.size()];
    int s = 0;
    while (s < kSlots && p_.slots[s]) ++s;
    if (s == kSlots) return;
    auto r = emu_.open(node, p_.caller);
    if (!r) return;
    p_.slots[s] = r.take();
    p_.paths[s] = node.path;
  }

  // Like close(2): the open file is released when its last fd goes.
  void close(int s) {
    std::shared_ptr<core::File> f = std::move(p_.slots[s]);
    if (!f) return;
    for (const auto& other : p_.slots)
      if (other == f) return;
    emu_.release(f);
  }

  void dup(int s) {
    if (!p_.slots[s]) return;
    for (int t = 0; t < kSlots; ++t) {
      if (!p_.slots[t]) {
        p_.slots[t] = p_.slots[s];
        p_.paths[t] = p_.paths[s];
        return;
      }
    }
  }

  // The command: mostly one of the command table's, sometimes one bit away from one, sometimes
  // any number at all.
  u32 command(Input& in) {
    const auto all = core::all_commands();
    const u8 pick = in.get<u8>();
    if (pick < 0xe0) return all[pick % all.size()].cmd;
    if (pick < 0xf0) return all[in.get<u8>() % all.size()].cmd ^ (u32{1} << (pick & 0x1f));
    return in.get<u32>();
  }

  Outcome ioctl(Input& in) {
    const int s = in.get<u8>() % kSlots;
    const u32 cmd = command(in);
    const u8 mode = in.get<u8>();
    u64 arg = 0;
    size_t arg_len = 0;
    switch (mode & 3) {
      case 0:  // a value: small (an fd, an extension, an IOMMU type) or any
        arg = (mode & 4) ? in.get<u8>() : in.get<u64>();
        break;
      case 1:    // a struct at the start of the argument window
      case 2: {  // a struct that ends where the window ends
        const size_t want = in.get<u16>() % 4096;
        auto [p, len] = in.bytes(want);
        arg = (mode & 3) == 1 ? kArgBase : kArgBase + kArgSize - len;
        arg_len = len;
        p_.set_arg(arg, p, len);
        if ((mode & 0x80) && len >= 4) {  // argsz/size = the bytes given
          const u32 size = static_cast<u32>(len);
          p_.set_arg_bytes(arg, &size, sizeof(size));
        }
        break;
      }
      case 3:  // a pointer anywhere
        arg = in.get<u64>();
        break;
    }
    Outcome out;
    out.cmd = cmd;
    out.result = -EBADF;
    if (!p_.slots[s]) return out;
    p_.start_ioctl();
    for (int round = 0;; ++round) {
      core::IoctlCall call;
      call.cmd = cmd;
      call.arg = arg;
      call.caller = p_.caller;
      call.node_name = p_.paths[s];
      call.mem = &p_;
      call.fds = &p_;
      call.env = &p_;
      auto r = emu_.ioctl(*p_.slots[s], call);
      out.result = r ? *r : -r.error();
      if (r || r.error() != kNeedRetry) break;
      if (!p_.retry_protocol) {
        std::fprintf(stderr, "vfio-emu fuzz: ioctl %#x asked for more of the caller's memory "
                     "(kNeedRetry) from a transport that reads it directly\n", cmd);
        __builtin_trap();
      }
      if (const int e = p_.next_round(); e != 0) {  // the kernel fails the ioctl
        out.result = -e;
        break;
      }
      if (round == 16) {
        p_.transport_failed = true;
        break;
      }
    }
    if (arg_len != 0) out.reply = p_.window(arg, arg_len);
    p_.clear_arg();
    return out;
  }

  long rw(Input& in) {
    const int s = in.get<u8>() % kSlots;
    const u8 how = in.get<u8>();
    const u64 index = in.get<u8>() % 12;
    const u64 pos = (how & 2) ? in.get<u64>() & ((u64{1} << 40) - 1) : in.get<u16>();
    const u64 len = in.get<u16>() % 4096;
    if (!p_.slots[s]) return -EBADF;
    std::vector<u8> buf(len);
    const u64 offset = core::vfio_pci_index_to_offset(static_cast<u32>(index)) + pos;
    if (how & 1) {
      auto [p, n] = in.bytes(len);
      if (n != 0) std::memcpy(buf.data(), p, n);
      auto r = emu_.write(*p_.slots[s], offset, buf.data(), len);
      return r ? static_cast<long>(*r) : -r.error();
    }
    auto r = emu_.read(*p_.slots[s], offset, buf.data(), len);
    if (!r) return -r.error();
    // What was read goes into the result, so that both sides of a differential run read alike.
    u64 sum = *r;
    for (u64 i = 0; i < *r; ++i) sum = sum * 31 + buf[i];
    return static_cast<long>(sum >> 1);
  }

  // What the tools would ask: none of it may crash, and the check must find no difference.
  void inspect(Input& in) {
    const u8 what = in.get<u8>();
    const auto domains = emu_.domains();
    const u64 domain = domains.empty() ? in.get<u8>() : domains[in.get<u8>() % domains.size()]->id;
    switch (what % 5) {
      case 0:
        if (!core::inspect::check(emu_).value("ok", false)) {
          std::fprintf(stderr, "%s\n", core::inspect::check(emu_).dump(1).c_str());
          std::fprintf(stderr, "vfio-emu fuzz: a page table differs from the record\n");
          __builtin_trap();
        }
        break;
      case 1:
        // The two whole-emulator JSON documents are slow to build: once per input is enough.
        if (!listed_) {
          (void)core::inspect::list(emu_);
          (void)core::inspect::stats(emu_);
          listed_ = true;
        }
        break;
      case 2: {
        core::inspect::MapFilter f;
        const u8 which = in.get<u8>();
        if (which & 1) f.domain = domain;
        if (which & 2) f.container = in.get<u8>();
        if (which & 4) f.ioas = std::to_string(in.get<u8>());
        if (which & 8) f.pid = kPids[(which >> 4) & 1];
        (void)core::inspect::maps(emu_, f);
        break;
      }
      case 3: {
        // A window of at most 4 GiB, so that a superpage-mapped table is not listed page by page.
        const u64 first = in.get<u64>();
        const u64 last = first + std::min<u64>(in.get<u32>(), ~first);
        (void)core::inspect::page_table(emu_, domain, first, last);
        break;
      }
      case 4:
        (void)core::inspect::translate(emu_, domain, in.get<u64>(),
                                       (what & 0x10) ? iommu::Access::kWrite
                                                     : iommu::Access::kRead);
        break;
    }
  }

  core::Emulator& emu_;
  Process& p_;
  bool listed_ = false;
};

}  // namespace
}  // namespace vfio_emu::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Silent unless asked: 1 shows what the core refuses (info), 2 every ioctl's result (debug).
  const char* log = std::getenv("VFIO_EMU_FUZZ_LOG");
  const char level = log != nullptr ? *log : '0';
  vfio_emu::set_log_level(level == '2'   ? spdlog::level::debug
                          : level == '1' ? spdlog::level::info
                                         : spdlog::level::off);
  (void)vfio_emu::fuzz::devnull_fd();  // opened before any number is handed out
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace vfio_emu::fuzz;
  using vfio_emu::core::u8;
  static u8 windows[2][kArgSize];
  const u8 config = size != 0 ? data[0] : 0;
  auto setup = [&](Process& p) {
    p.limit = kLimits[(config >> 1) & 3];
    p.read_ahead_enabled = !(config & 8);
  };
  Process process(devnull_fd(), windows[0]);
  setup(process);
  process.retry_protocol = config & 0x20;
  Run run(machine(config & 1, config & 0x10, false), process);
  Input in(data, size);
  (void)in.get<u8>();
  if (!process.retry_protocol) {
    for (int ops = 0; !in.done() && ops < 256; ++ops) (void)run.op(in);
    run.finish();
    run.check_caller_fds();
    return 0;
  }
  // Through the CUSE retry protocol, the input must run as it does with direct access, on a
  // twin machine: every ioctl, pread and pwrite with the same result and the same reply bytes,
  // until the transport itself fails an ioctl (what it could not copy, its limits).
  Process direct_process(devnull_fd(), windows[1]);
  setup(direct_process);
  Run direct(machine(config & 1, config & 0x10, true), direct_process);
  Input direct_in(data, size);
  (void)direct_in.get<u8>();
  for (int ops = 0; !in.done() && ops < 256; ++ops) {
    const Run::Outcome retried = run.op(in);
    const Run::Outcome expected = direct.op(direct_in);
    if (!process.transport_failed && !(retried == expected)) {
      std::fprintf(stderr, "vfio-emu fuzz: op %d (ioctl %#x): through the CUSE retry protocol "
                   "%ld, reading directly %ld%s\n", ops, retried.cmd, retried.result,
                   expected.result, retried.reply != expected.reply ? " (replies differ)" : "");
      __builtin_trap();
    }
  }
  direct.finish();
  run.finish();
  direct.check_caller_fds();
  run.check_caller_fds();
  return 0;
}
