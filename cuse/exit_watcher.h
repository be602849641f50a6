// Tells the daemon's caches when a client process or thread has exited, so that they keep
// nothing for the dead: one thread waits (epoll) on the pidfds it is given and runs each one's
// callback as soon as its process or thread is gone.
//
// Why: the caches of callers (thread -> thread group, a process's /proc/<pid>/maps) hold an fd
// per entry. Dropped only when a cache filled up, they kept an fd per dead client: a daemon
// serving a few hundred short-lived clients then ran out of fds (RLIMIT_NOFILE is 1024 by
// default), and fd arguments failed with EBADF.
#pragma once

#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace vfio_emu::cuse {

class ExitWatcher {
 public:
  // The daemon's one watcher; its thread starts with the first watch(). Never destroyed: the
  // caches that use it live until the process exits.
  static ExitWatcher& instance();

  // Takes `pidfd` (of a process, or of a thread with PIDFD_THREAD) and runs `on_exit` on the
  // watcher's thread once that process or thread has exited (at once if it already has), with
  // no lock of the watcher held; then closes the pidfd. Until `on_exit` has run, the giver may go
  // on using the pidfd, but must not close it. Returns false if it cannot watch (no epoll,
  // EMFILE, ...): the pidfd is then still the giver's, and `on_exit` will never run.
  bool watch(int pidfd, std::function<void()> on_exit);

  ~ExitWatcher();
  ExitWatcher(const ExitWatcher&) = delete;
  ExitWatcher& operator=(const ExitWatcher&) = delete;

 private:
  ExitWatcher();
  void run();

  int epoll_ = -1;
  int wake_ = -1;  // an eventfd: ends the thread (destructor)
  std::mutex mu_;
  std::unordered_map<int, std::function<void()>> callbacks_;  // by pidfd
  std::thread thread_;
};

}  // namespace vfio_emu::cuse
