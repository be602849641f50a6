#include "tools/store_watch.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "tools/control_client.h"
#include "tools/device_fd_supervisor.h"
#include "tools/x86_store.h"

namespace vfio_emu::tools {
namespace {

constexpr long kPtraceOptions = PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                                PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP |
                                PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL;

// A trapped BAR mapping of a process.
struct Mapping {
  std::uint64_t start = 0, end = 0;  // [start, end)
  dev_t dev = 0;                     // the file behind it (the daemon's BAR memory)
  ino_t ino = 0;
  const WatchedDevice* device = nullptr;
  std::uint32_t bar = 0;
  std::uint64_t bar_offset = 0;  // the BAR offset at `start`
};

struct Task {
  pid_t tgid = 0;
  // An mmap of a trapped BAR stopped at its entry: what it maps, until its exit stop.
  std::optional<Mapping> mapping;
};

bool stat_mapping(pid_t pid, std::uint64_t start, std::uint64_t end, dev_t* dev, ino_t* ino) {
  char path[96];
  std::snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", pid,
                static_cast<unsigned long long>(start), static_cast<unsigned long long>(end));
  struct stat st {};
  if (stat(path, &st) != 0) return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

// A task's thread group (itself if /proc no longer says).
pid_t group_of(pid_t tid) {
  const pid_t tgid = tgid_of(tid);
  return tgid < 0 ? tid : tgid;
}

std::uint64_t gpr(const user_regs_struct& r, unsigned n) {
  const unsigned long long* regs[16] = {&r.rax, &r.rcx, &r.rdx, &r.rbx, &r.rsp, &r.rbp,
                                        &r.rsi, &r.rdi, &r.r8,  &r.r9,  &r.r10, &r.r11,
                                        &r.r12, &r.r13, &r.r14, &r.r15};
  return *regs[n & 15];
}

class Watcher {
 public:
  Watcher(const DeviceFdSupervisor& checks, std::vector<WatchedDevice> devices,
          std::string control)
      : checks_(checks), devices_(std::move(devices)), control_path_(std::move(control)) {}

  void add_first(pid_t pid) { tasks_[pid].tgid = pid; }
  int run();

 private:
  void on_stop(pid_t pid, int status);
  void on_seccomp(pid_t pid, Task& t);
  void on_syscall_exit(pid_t pid, Task& t);
  void on_sigsegv(pid_t pid, Task& t);
  // Sends a store to the daemon: 0, or the signal the program gets instead.
  int send_store(const Mapping& m, std::uint64_t offset, unsigned width, std::uint64_t value);
  void forget_space_if_unused(pid_t tgid);
  void cont(pid_t pid, int sig, long request = PTRACE_CONT) {
    ptrace(static_cast<__ptrace_request>(request), pid, nullptr,
           reinterpret_cast<void*>(static_cast<long>(sig)));
  }

  const DeviceFdSupervisor& checks_;
  std::vector<WatchedDevice> devices_;
  std::string control_path_;
  std::unique_ptr<ControlClient> control_;
  std::map<pid_t, Task> tasks_;
  std::map<pid_t, std::vector<Mapping>> spaces_;  // by thread-group id
};

int Watcher::run() {
  for (;;) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, __WALL);
    if (pid < 0) {
      if (errno == EINTR) continue;
      return 0;  // ECHILD: every process of the program is gone
    }
    try {
      if (WIFEXITED(status) || WIFSIGNALED(status)) {
        auto it = tasks_.find(pid);
        if (it != tasks_.end()) {
          const pid_t tgid = it->second.tgid;
          tasks_.erase(it);
          forget_space_if_unused(tgid);
        }
        continue;
      }
      if (WIFSTOPPED(status)) on_stop(pid, status);
    } catch (const std::exception& e) {
      // Nothing may leave a tracee stopped: it goes on as it would without us.
      std::fprintf(stderr, "vfio-emu run: store watch: pid %d: %s\n", pid, e.what());
      cont(pid, 0);
    }
  }
}

void Watcher::forget_space_if_unused(pid_t tgid) {
  for (const auto& [pid, t] : tasks_)
    if (t.tgid == tgid) return;
  spaces_.erase(tgid);
}

void Watcher::on_stop(pid_t pid, int status) {
  const int sig = WSTOPSIG(status);
  const int event = (status >> 16) & 0xff;
  auto known = tasks_.find(pid);
  if (known == tasks_.end()) known = tasks_.emplace(pid, Task{group_of(pid), std::nullopt}).first;
  Task& t = known->second;
  switch (event) {
    case PTRACE_EVENT_CLONE:
    case PTRACE_EVENT_FORK:
    case PTRACE_EVENT_VFORK: {
      unsigned long msg = 0;
      ptrace(PTRACE_GETEVENTMSG, pid, nullptr, &msg);
      const pid_t child = static_cast<pid_t>(msg);
      const pid_t child_tgid = group_of(child);
      // A thread shares its parent's space; a process starts with a copy of its mappings, the
      // protection included.
      if (child_tgid != t.tgid) {
        auto parent = spaces_.find(t.tgid);
        if (parent != spaces_.end()) spaces_[child_tgid] = parent->second;
      }
      tasks_[child].tgid = child_tgid;
      cont(pid, 0);
      return;
    }
    case PTRACE_EVENT_EXEC: {
      // The old address space is gone, and with it every other thread of the group.
      const pid_t tgid = t.tgid;
      for (auto it = tasks_.begin(); it != tasks_.end();)
        it = it->second.tgid == tgid && it->first != pid ? tasks_.erase(it) : std::next(it);
      spaces_.erase(tgid);
      t.mapping.reset();
      cont(pid, 0);
      return;
    }
    case PTRACE_EVENT_SECCOMP:
      on_seccomp(pid, t);
      return;
    case PTRACE_EVENT_EXIT: {
      // Let it go before it is a zombie: a zombie ptracee is seen by its tracer only, and its
      // parent's wait (after a pidfd said it exited: the kselftest harness) would not find it.
      const pid_t tgid = t.tgid;
      tasks_.erase(known);
      forget_space_if_unused(tgid);
      ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
      return;
    }
    case PTRACE_EVENT_STOP:
      if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
        ptrace(PTRACE_LISTEN, pid, nullptr, nullptr);  // a group stop stays one
        return;
      }
      cont(pid, 0);  // the first stop of an attached task
      return;
    default:
      break;
  }
  if (sig == (SIGTRAP | 0x80)) return on_syscall_exit(pid, t);
  if (sig == SIGSEGV) return on_sigsegv(pid, t);
  cont(pid, sig);  // a signal for the program
}

void Watcher::on_seccomp(pid_t pid, Task& t) {
  user_regs_struct regs{};
  if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return cont(pid, 0);
  const std::uint64_t args[6] = {regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9};
  MmapTarget target;
  if (const int e = checks_.mmap_errno(pid, args, &target); e != 0) {
    regs.orig_rax = ~0ull;  // skipped: the call returns rax
    regs.rax = static_cast<unsigned long long>(-static_cast<long long>(e));
    ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
    return cont(pid, 0);
  }
  // A shared writable mapping of a trapped BAR: read-only, so that each store faults to us.
  if (!target.device.empty() && (args[2] & PROT_WRITE) && (args[3] & MAP_TYPE) == MAP_SHARED) {
    for (const WatchedDevice& d : devices_) {
      if (d.cdev != target.device) continue;
      for (std::uint32_t bar : d.trapped_bars) {
        if (bar != target.region) continue;
        regs.rdx &= ~static_cast<unsigned long long>(PROT_WRITE);
        if (ptrace(PTRACE_SETREGS, pid, nullptr, &regs) != 0) return cont(pid, 0);
        Mapping m;
        m.end = args[1];  // the length, until the exit gives the address
        m.device = &d;
        m.bar = bar;
        m.bar_offset = target.region_offset;
        t.mapping = m;
        return cont(pid, 0, PTRACE_SYSCALL);  // stop again at its exit, for the address
      }
    }
  }
  cont(pid, 0);
}

void Watcher::on_syscall_exit(pid_t pid, Task& t) {
  std::optional<Mapping> pending = std::move(t.mapping);
  t.mapping.reset();
  user_regs_struct regs{};
  if (!pending || ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return cont(pid, 0);
  const auto addr = static_cast<std::uint64_t>(regs.rax);
  if (addr > ~std::uint64_t{4095}) return cont(pid, 0);  // it failed: -errno
  Mapping m = *pending;
  const std::uint64_t page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  m.start = addr;
  m.end = addr + ((m.end + page - 1) & ~(page - 1));
  if (stat_mapping(pid, m.start, m.end, &m.dev, &m.ino)) {
    auto& space = spaces_[t.tgid];
    // A MAP_FIXED mapping over an older one replaces it.
    std::erase_if(space, [&](const Mapping& o) { return o.start < m.end && m.start < o.end; });
    space.push_back(m);
  }
  cont(pid, 0);
}

void Watcher::on_sigsegv(pid_t pid, Task& t) {
  siginfo_t si{};
  if (ptrace(PTRACE_GETSIGINFO, pid, nullptr, &si) != 0) return cont(pid, SIGSEGV);
  const auto addr = reinterpret_cast<std::uint64_t>(si.si_addr);
  auto space = spaces_.find(t.tgid);
  if (si.si_code != SEGV_ACCERR || space == spaces_.end()) return cont(pid, SIGSEGV);
  const Mapping* m = nullptr;
  for (const Mapping& o : space->second)
    if (o.start <= addr && addr < o.end) m = &o;
  if (m == nullptr) return cont(pid, SIGSEGV);
  // Still that BAR there (munmap is not watched)?
  dev_t dev = 0;
  ino_t ino = 0;
  if (!stat_mapping(pid, m->start, m->end, &dev, &ino) || dev != m->dev || ino != m->ino) {
    std::erase_if(space->second, [&](const Mapping& o) { return &o == m; });
    return cont(pid, SIGSEGV);
  }
  user_regs_struct regs{};
  if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return cont(pid, SIGSEGV);
  std::uint8_t code[15] = {};
  iovec local{code, sizeof(code)}, remote{reinterpret_cast<void*>(regs.rip), sizeof(code)};
  const ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
  X86Store store;
  if (got <= 0 || !decode_x86_store(std::span(code, static_cast<size_t>(got)), &store)) {
    std::fprintf(stderr, "vfio-emu run: pid %d: a store to %#llx (BAR %u of %s) by an instruction "
                 "vfio-emu cannot carry out at %#llx (%02x %02x %02x %02x %02x %02x): SIGSEGV\n",
                 pid, static_cast<unsigned long long>(addr), m->bar, m->device->bdf.c_str(),
                 static_cast<unsigned long long>(regs.rip), code[0], code[1], code[2], code[3],
                 code[4], code[5]);
    return cont(pid, SIGSEGV);
  }
  std::uint64_t value[2] = {0, 0};
  switch (store.source) {
    case X86Store::Source::kGpr: value[0] = gpr(regs, store.reg); break;
    case X86Store::Source::kGprHigh8: value[0] = gpr(regs, store.reg) >> 8; break;
    case X86Store::Source::kImmediate: value[0] = store.immediate; break;
    case X86Store::Source::kXmm: {
      user_fpregs_struct fp{};
      if (ptrace(PTRACE_GETFPREGS, pid, nullptr, &fp) != 0) return cont(pid, SIGSEGV);
      std::memcpy(value, &fp.xmm_space[4 * store.reg], sizeof(value));
      break;
    }
  }
  const std::uint64_t offset = m->bar_offset + (addr - m->start);
  int signal = 0;
  if (store.width == 16) {
    signal = send_store(*m, offset, 8, value[0]);
    if (signal == 0) signal = send_store(*m, offset + 8, 8, value[1]);
  } else {
    if (store.width < 8) value[0] &= (std::uint64_t{1} << (8 * store.width)) - 1;
    signal = send_store(*m, offset, store.width, value[0]);
  }
  if (signal != 0) return cont(pid, signal);
  regs.rip += store.length;
  ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
  cont(pid, 0);
}

int Watcher::send_store(const Mapping& m, std::uint64_t offset, unsigned width,
                        std::uint64_t value) {
  const Json request = {{"cmd", "store"}, {"bdf", m.device->bdf}, {"bar", m.bar},
                        {"offset", offset}, {"width", width}, {"value", value}};
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The daemon closes a connection that stays idle past its request timeout: a new one then.
    if (!control_) control_ = std::make_unique<ControlClient>(control_path_, std::chrono::seconds(5));
    const Outcome o = control_->request(request);
    if (o.ok()) return 0;
    if (o.code != kExitProtocol && o.code != kExitNotRunning) {
      // The daemon refused it (memory decoding off: Linux's fault handler gives SIGBUS).
      std::fprintf(stderr, "vfio-emu run: store of %#llx to %#llx of BAR %u of %s: %s: SIGBUS\n",
                   static_cast<unsigned long long>(value), static_cast<unsigned long long>(offset),
                   m.bar, m.device->bdf.c_str(), o.message.c_str());
      return SIGBUS;
    }
    control_.reset();
    if (attempt == 1) {
      std::fprintf(stderr, "vfio-emu run: store to %#llx of BAR %u of %s lost: %s: SIGBUS\n",
                   static_cast<unsigned long long>(offset), m.bar, m.device->bdf.c_str(),
                   o.message.c_str());
      return SIGBUS;
    }
  }
  return SIGBUS;
}

}  // namespace

pid_t start_store_watch(pid_t program, const DeviceFdSupervisor& checks,
                        std::vector<WatchedDevice> devices, std::string control_socket) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return -1;
  const pid_t parent = getpid();
  const pid_t watcher = fork();
  if (watcher < 0) {
    close(ready[0]);
    close(ready[1]);
    return -1;
  }
  if (watcher == 0) {
    close(ready[0]);
    // With `run` gone, the program goes too (PTRACE_O_EXITKILL): its file mmaps need us.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    char ok = 1;
    if (ptrace(PTRACE_SEIZE, program, nullptr, reinterpret_cast<void*>(kPtraceOptions)) != 0) {
      std::fprintf(stderr, "vfio-emu run: no store watch (ptrace: %s): stores to mapped BARs "
                   "are polled\n", std::strerror(errno));
      ok = 0;
    }
    (void)!write(ready[1], &ok, 1);
    close(ready[1]);
    if (!ok) _exit(1);
    Watcher w(checks, std::move(devices), std::move(control_socket));
    w.add_first(program);
    _exit(w.run());
  }
  close(ready[1]);
  char ok = 0;
  ssize_t n;
  do {
    n = read(ready[0], &ok, 1);
  } while (n < 0 && errno == EINTR);
  close(ready[0]);
  if (n == 1 && ok) return watcher;
  waitpid(watcher, nullptr, 0);
  return -1;
}

}  // namespace vfio_emu::tools
