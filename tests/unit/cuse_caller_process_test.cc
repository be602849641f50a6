// Reaching the caller's address space (cuse/caller_process.h) when a pid is reused.
//
// The daemon keeps /proc/<pid>/maps files open between MAPs. A kept file is bound to the address
// space it was opened on, not to the pid: PROCMAP_QUERY on it answers for that mm as long as the
// mm has users, whoever owns the pid now. An mm outlives its process when another process shares
// it (clone(CLONE_VM) without CLONE_THREAD; posix_spawn's vfork child does this for a while), so
// a process that gets a reused pid could have its MAP checked against the old process's memory.
//
// The test builds exactly that: P1 maps a page only it has and starts a CLONE_VM sibling that
// keeps P1's mm alive; the daemon side (this process) checks P1's page, which keeps its maps file;
// P1 exits and is reaped; P2 is created with P1's pid (clone3 set_tid, which needs
// CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE: as root) and does not have the page. The check for P2
// must say so.
#include <catch2/catch.hpp>

#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>

#include "cuse/caller_process.h"

using vfio_emu::cuse::dma_accessible;
using vfio_emu::iommu::kProtRead;
using vfio_emu::iommu::u64;

namespace {

constexpr u64 kPage = 4096;

// Whether `addr` lies in a mapping of `pid`, from a freshly opened text /proc/<pid>/maps (the
// ground truth, independent of the cache under test).
bool mapped_in(pid_t pid, u64 addr) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/maps", pid);
  FILE* f = std::fopen(path, "re");
  REQUIRE(f != nullptr);
  bool found = false;
  unsigned long long lo = 0, hi = 0;
  char line[512];
  while (std::fgets(line, sizeof(line), f) != nullptr)
    if (std::sscanf(line, "%llx-%llx", &lo, &hi) == 2 && lo <= addr && addr < hi) found = true;
  std::fclose(f);
  return found;
}

void write_all(int fd, const void* p, size_t n) { REQUIRE(write(fd, p, n) == static_cast<ssize_t>(n)); }
void read_all(int fd, void* p, size_t n) { REQUIRE(read(fd, p, n) == static_cast<ssize_t>(n)); }

// The CLONE_VM sibling: it shares P1's mm and only waits, with raw system calls (it runs on P1's
// memory and TLS), until its pipe is closed.
int hold_mm(void* arg) {
  const int fd = *static_cast<int*>(arg);
  char c;
  syscall(SYS_read, fd, &c, 1);
  syscall(SYS_exit, 0);
  return 0;
}

// A child with pid `want`, blocked until `wait_fd` is closed (it closes its copies of the
// `close_in_child` fds, the write ends its parent keeps). Returns its pid, or -errno.
pid_t fork_with_pid(pid_t want, int wait_fd, std::initializer_list<int> close_in_child) {
  clone_args args{};
  pid_t tid = want;
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<u64>(&tid);
  args.set_tid_size = 1;
  const long r = syscall(SYS_clone3, &args, sizeof(args));
  if (r < 0) return -errno;
  if (r == 0) {
    for (int fd : close_in_child) close(fd);
    char c;
    (void)!read(wait_fd, &c, 1);
    _exit(0);
  }
  return static_cast<pid_t>(r);
}

struct P1Report {
  u64 addr;
  pid_t sibling;
};

}  // namespace

TEST_CASE("maps check: a reused pid is never checked against the old process's memory",
          "[caller_process]") {
  if (geteuid() != 0) {
    WARN("needs root (clone3 set_tid): not run");
    return;
  }
  REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);  // to reap P1's sibling once P1 is gone
  int report[2], go[2], sibling_wait[2], p2_wait[2];
  REQUIRE(pipe(report) == 0);
  REQUIRE(pipe(go) == 0);
  REQUIRE(pipe(sibling_wait) == 0);
  REQUIRE(pipe(p2_wait) == 0);

  const pid_t p1 = fork();
  REQUIRE(p1 >= 0);
  if (p1 == 0) {
    void* page = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void* stack = mmap(nullptr, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    if (page == MAP_FAILED || stack == MAP_FAILED) _exit(1);
    // The sibling gets a copy of this fd table: without the write end, it ends when ours closes.
    close(sibling_wait[1]);
    close(p2_wait[1]);
    static int fd;
    fd = sibling_wait[0];
    const pid_t sibling = clone(hold_mm, static_cast<char*>(stack) + 64 * 1024,
                                CLONE_VM | SIGCHLD, &fd);
    if (sibling < 0) _exit(1);
    const P1Report r{reinterpret_cast<u64>(page), sibling};
    if (write(report[1], &r, sizeof(r)) != sizeof(r)) _exit(1);
    char c;
    (void)!read(go[0], &c, 1);
    _exit(0);
  }
  close(sibling_wait[0]);
  P1Report r{};
  read_all(report[0], &r, sizeof(r));
  const u64 page = r.addr;

  // What the daemon does on P1's MAP: the page is there, and P1's maps file is kept.
  CHECK(dma_accessible(p1, page, kPage, kProtRead) == kPage);
  write_all(go[1], "g", 1);
  int status = 0;
  REQUIRE(waitpid(p1, &status, 0) == p1);
  REQUIRE(WIFEXITED(status));
  // P1's mm lives on in its sibling: a query on the kept file would still find the page.
  REQUIRE(mapped_in(r.sibling, page));

  const pid_t p2 = fork_with_pid(p1, p2_wait[0], {p2_wait[1], sibling_wait[1]});
  if (p2 == -EPERM || p2 == -ENOSYS || p2 == -EEXIST) {
    WARN("clone3 set_tid gave errno " << -p2 << ": not run");
  } else {
    REQUIRE(p2 == p1);
    INFO("pid " << p2 << " reused; page " << std::hex << page);
    REQUIRE_FALSE(mapped_in(p2, page));
    CHECK(dma_accessible(p2, page, kPage, kProtRead) == 0);
    // And P2's own memory is checked against P2: this very variable's page is in it.
    const u64 own = reinterpret_cast<u64>(&r) & ~(kPage - 1);
    CHECK(dma_accessible(p2, own, kPage, kProtRead) == kPage);
  }

  close(p2_wait[1]);
  close(sibling_wait[1]);
  if (p2 > 0) waitpid(p2, &status, 0);
  waitpid(r.sibling, &status, 0);
  for (int fd : {report[0], report[1], go[0], go[1], p2_wait[0]}) close(fd);
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST_CASE("maps check: a process that exited and whose pid is reused is checked afresh",
          "[caller_process]") {
  if (geteuid() != 0) {
    WARN("needs root (clone3 set_tid): not run");
    return;
  }
  int report[2], go[2], p2_wait[2];
  REQUIRE(pipe(report) == 0);
  REQUIRE(pipe(go) == 0);
  REQUIRE(pipe(p2_wait) == 0);
  const pid_t p1 = fork();
  REQUIRE(p1 >= 0);
  if (p1 == 0) {
    close(p2_wait[1]);
    void* page = mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const u64 addr = reinterpret_cast<u64>(page);
    if (page == MAP_FAILED || write(report[1], &addr, sizeof(addr)) != sizeof(addr)) _exit(1);
    char c;
    (void)!read(go[0], &c, 1);
    _exit(0);
  }
  u64 page = 0;
  read_all(report[0], &page, sizeof(page));
  CHECK(dma_accessible(p1, page, kPage, kProtRead) == kPage);
  write_all(go[1], "g", 1);
  int status = 0;
  REQUIRE(waitpid(p1, &status, 0) == p1);
  const pid_t p2 = fork_with_pid(p1, p2_wait[0], {p2_wait[1]});
  if (p2 < 0) {
    WARN("clone3 set_tid gave errno " << -p2 << ": not run");
  } else {
    REQUIRE_FALSE(mapped_in(p2, page));
    CHECK(dma_accessible(p2, page, kPage, kProtRead) == 0);
  }
  close(p2_wait[1]);
  if (p2 > 0) waitpid(p2, &status, 0);
  for (int fd : {report[0], report[1], go[0], go[1], p2_wait[0]}) close(fd);
}

TEST_CASE("maps check: a mapping of a file the caller calls unpinnable ends the range",
          "[cuse][maps]") {
  // The daemon's device nodes (BAR mappings): Linux maps BARs VM_PFNMAP, which iommufd cannot
  // pin. Anonymous memory, then a file mapping right after it.
  const int fd = ::memfd_create("unpinnable-test", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, 2 * kPage) == 0);
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  auto* base = static_cast<char*>(::mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(base != MAP_FAILED);
  REQUIRE(::mmap(base + 2 * kPage, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
                 0) == base + 2 * kPage);
  const u64 addr = reinterpret_cast<u64>(base);
  auto is_it = [&](dev_t dev, u64 ino) { return dev == st.st_dev && ino == st.st_ino; };
  auto never = [](dev_t, u64) { return false; };
  CHECK(dma_accessible(getpid(), addr, 4 * kPage, kProtRead) == 4 * kPage);
  CHECK(dma_accessible(getpid(), addr, 4 * kPage, kProtRead, never) == 4 * kPage);
  CHECK(dma_accessible(getpid(), addr, 4 * kPage, kProtRead, is_it) == 2 * kPage);
  CHECK(dma_accessible(getpid(), addr + 2 * kPage, kPage, kProtRead, is_it) == 0);
  ::munmap(base, 4 * kPage);
  ::close(fd);
}
