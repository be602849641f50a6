#include "cuse/fd_probe.h"

#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

namespace vfio_emu::cuse {
namespace {

Result<FdFacts> probe_path(const char* path) {
  struct statx sx {};
  // AT_STATX_DONT_SYNC: the attributes the kernel has; a FUSE file's are used as they are, with
  // no GETATTR sent to its daemon. The /proc link jumps straight to the open file's path, with no
  // lookup in its filesystem.
  if (statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, STATX_TYPE | STATX_MODE | STATX_INO, &sx) != 0)
    return err(EBADF);
  FdFacts f;
  f.st.st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  f.st.st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
  f.st.st_ino = sx.stx_ino;
  f.st.st_mode = sx.stx_mode;
  char target[256];
  const ssize_t n = ::readlink(path, target, sizeof(target));
  if (n > 0) f.link.assign(target, static_cast<size_t>(n));
  return f;
}

// The closer thread: a bounded queue of fds to close. It is started on first use and lives as
// long as the daemon (it may be stuck in a close forever; nothing waits for it).
class ForeignCloser {
 public:
  static constexpr size_t kMaxQueued = 1024;

  bool hand_over(int fd) {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued) return false;
    if (!started_) {
      std::thread([this] { run(); }).detach();
      started_ = true;
    }
    queue_.push_back(fd);
    cv_.notify_one();
    return true;
  }

 private:
  void run() {
    for (;;) {
      int fd = -1;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty(); });
        fd = queue_.front();
        queue_.pop_front();
      }
      ::close(fd);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int> queue_;
  bool started_ = false;
};

}  // namespace

Result<FdFacts> probe_caller_fd(pid_t tid, int fd) {
  if (tid <= 0 || fd < 0) return err(EBADF);
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/fd/%d", tid, fd);
  return probe_path(path);
}

Result<FdFacts> probe_own_fd(int fd) {
  if (fd < 0) return err(EBADF);
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  return probe_path(path);
}

bool is_eventfd(const FdFacts& facts) { return facts.link == "anon_inode:[eventfd]"; }

bool is_eventfd_link(int fd) {
  char path[64];
  char target[64];
  std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(path, target, sizeof(target));
  return n > 0 && std::string_view(target, static_cast<size_t>(n)) == "anon_inode:[eventfd]";
}

void close_foreign(int fd) {
  if (fd < 0) return;
  static ForeignCloser* closer = new ForeignCloser;  // never destroyed: see the class
  if (!closer->hand_over(fd)) ::close(fd);
}

}  // namespace vfio_emu::cuse
