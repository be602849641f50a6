#include "cuse/exit_watcher.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace vfio_emu::cuse {

ExitWatcher& ExitWatcher::instance() {
  static ExitWatcher* watcher = new ExitWatcher;  // never destroyed: see the header
  return *watcher;
}

ExitWatcher::ExitWatcher()
    : epoll_(epoll_create1(EPOLL_CLOEXEC)), wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (epoll_ < 0 || wake_ < 0) return;  // watch() then refuses everything
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_;
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev) != 0) return;
  thread_ = std::thread([this] { run(); });
}

ExitWatcher::~ExitWatcher() {
  if (thread_.joinable()) {
    const std::uint64_t one = 1;
    if (write(wake_, &one, sizeof(one)) == sizeof(one)) thread_.join();
    else thread_.detach();
  }
  for (auto& [pidfd, on_exit] : callbacks_) close(pidfd);
  if (wake_ >= 0) close(wake_);
  if (epoll_ >= 0) close(epoll_);
}

bool ExitWatcher::watch(int pidfd, std::function<void()> on_exit) {
  if (!thread_.joinable()) return false;
  {
    // Registered before it is armed: the thread may see it fire at once.
    std::lock_guard lock(mu_);
    callbacks_[pidfd] = std::move(on_exit);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;  // a pidfd polls readable once its process or thread has exited
  ev.data.fd = pidfd;
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, pidfd, &ev) == 0) return true;
  std::lock_guard lock(mu_);
  callbacks_.erase(pidfd);
  return false;
}

void ExitWatcher::run() {
  epoll_event events[64];
  for (;;) {
    const int n = epoll_wait(epoll_, events, 64, -1);
    if (n < 0 && errno != EINTR) return;
    for (int i = 0; i < n; i++) {
      const int fd = events[i].data.fd;
      if (fd == wake_) return;
      std::function<void()> on_exit;
      {
        std::lock_guard lock(mu_);
        auto it = callbacks_.find(fd);
        if (it == callbacks_.end()) continue;
        on_exit = std::move(it->second);
        callbacks_.erase(it);
      }
      epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
      on_exit();
      close(fd);
    }
  }
}

}  // namespace vfio_emu::cuse
