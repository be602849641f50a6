// Threads for the calls a request thread must not make.
//
// An ioctl that passes an fd (VFIO_GROUP_SET_CONTAINER, VFIO_DEVICE_BIND_IOMMUFD, ...) needs the
// file identified, and identifying one of our files is itself a request to this daemon
// (cuse/request_caller.h). A request thread that waited for it could wait forever: with every
// request thread of a session busy in such an ioctl, none is left to answer. So such an ioctl is
// handed here and answered later, from one of these threads, and the request thread goes back to
// serving. The queue is bounded; past it a call is refused at once (the caller sees EAGAIN).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vfio_emu::cuse {

class DeferredCalls {
 public:
  static constexpr size_t kThreads = 4;
  static constexpr size_t kMaxQueued = 1024;

  DeferredCalls() = default;
  ~DeferredCalls() { stop(); }
  DeferredCalls(const DeferredCalls&) = delete;
  DeferredCalls& operator=(const DeferredCalls&) = delete;

  // Queues `call` to run on one of the threads (started on first use). Returns false, and does
  // not run it, when the queue is full or the threads are stopping.
  bool submit(std::function<void()> call);
  // Runs what is queued, then ends the threads. The transport first aborts its connection, so
  // that a call waiting on the kernel comes back at once.
  void stop();
  size_t queued() const;

 private:
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

}  // namespace vfio_emu::cuse
