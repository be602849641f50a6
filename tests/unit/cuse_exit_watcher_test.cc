// The daemon keeps nothing for callers that have exited (cuse/exit_watcher.h): the watcher runs a
// callback once a process or thread has exited, and the caches of callers (ThreadGroups,
// the /proc/<pid>/maps files behind dma_accessible) drop their entries and fds then. Before, a
// daemon kept an fd per dead client and ran out of them (tests/integration/many_clients.c).
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "cuse/caller_process.h"
#include "cuse/exit_watcher.h"
#include "cuse/thread_groups.h"

namespace vfio_emu::test {
namespace {

using cuse::ExitWatcher;
using cuse::ThreadGroups;

int open_fds() {
  DIR* d = opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  int n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1;  // the directory itself
}

// Waits up to 5 s for `done`; returns its last answer.
bool eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A child that waits to be killed.
pid_t sleeping_child() {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (;;) pause();
  }
  return pid;
}

void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

TEST_CASE("ExitWatcher: the callback runs once the process has exited, then the pidfd is closed",
          "[cuse][exit-watcher]") {
  ExitWatcher& watcher = ExitWatcher::instance();
  const int fds = open_fds();
  const pid_t child = sleeping_child();
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  REQUIRE(pidfd >= 0);
  std::atomic<int> calls{0};
  REQUIRE(watcher.watch(pidfd, [&] { calls++; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(calls == 0);  // alive: nothing yet
  kill_and_reap(child);
  CHECK(eventually([&] { return calls == 1; }));
  CHECK(eventually([&] { return open_fds() == fds; }));
}

TEST_CASE("ExitWatcher: a process that has exited already fires at once", "[cuse][exit-watcher]") {
  const pid_t child = sleeping_child();
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  REQUIRE(pidfd >= 0);
  kill(child, SIGKILL);  // a zombie: exited, not yet reaped
  std::atomic<int> calls{0};
  REQUIRE(ExitWatcher::instance().watch(pidfd, [&] { calls++; }));
  CHECK(eventually([&] { return calls == 1; }));
  waitpid(child, nullptr, 0);
}

TEST_CASE("ThreadGroups: a client thread's entry and its pidfd go when the thread exits",
          "[cuse][exit-watcher]") {
  ExitWatcher::instance();  // its own fds (epoll, eventfd) are not what is counted
  ThreadGroups groups;
  const int fds = open_fds();
  std::vector<pid_t> children;
  for (int i = 0; i < 20; i++) {
    const pid_t child = sleeping_child();
    children.push_back(child);
    CHECK(groups.tgid_of(child) == child);
  }
  CHECK(groups.size() == 20);  // live: kept, one pidfd each
  CHECK(open_fds() == fds + 20);
  CHECK(groups.tgid_of(children[0]) == children[0]);  // from the cache
  for (pid_t child : children) kill_and_reap(child);
  CHECK(eventually([&] { return groups.size() == 0; }));
  CHECK(eventually([&] { return open_fds() == fds; }));
}

TEST_CASE("ThreadGroups: the daemon's own threads are answered, not cached",
          "[cuse][exit-watcher]") {
  ThreadGroups groups;
  pid_t tgid = 0;
  std::thread t([&] { tgid = groups.tgid_of(static_cast<pid_t>(gettid())); });
  t.join();
  CHECK(tgid == getpid());
  CHECK(groups.tgid_of(static_cast<pid_t>(gettid())) == getpid());
  CHECK(groups.size() == 0);
}

TEST_CASE("dma_accessible: the maps file kept for a process goes when the process exits",
          "[cuse][exit-watcher]") {
  ExitWatcher::instance();
  const int fds = open_fds();
  std::vector<pid_t> children;
  for (int i = 0; i < 20; i++) {
    const pid_t child = sleeping_child();
    children.push_back(child);
    // The child's copy of this function's code is mapped and readable.
    const auto code = reinterpret_cast<cuse::u64>(&sleeping_child) & ~cuse::u64{0xfff};
    CHECK(cuse::dma_accessible(child, code, 0x1000, iommu::kProtRead) == 0x1000);
  }
  CHECK(open_fds() > fds);  // kept while they live
  for (pid_t child : children) kill_and_reap(child);
  CHECK(eventually([&] { return open_fds() == fds; }));
}

}  // namespace
}  // namespace vfio_emu::test
