#include "cuse/deferred_calls.h"

#include "core/log.h"

namespace vfio_emu::cuse {

bool DeferredCalls::submit(std::function<void()> call) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= kMaxQueued) return false;
    if (threads_.empty())
      for (size_t i = 0; i < kThreads; ++i) threads_.emplace_back([this] { run(); });
    queue_.push_back(std::move(call));
  }
  cv_.notify_one();
  return true;
}

void DeferredCalls::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (std::thread& t : threads) t.join();
}

size_t DeferredCalls::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void DeferredCalls::run() {
  for (;;) {
    std::function<void()> call;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to answer
      call = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      call();
    } catch (const std::exception& e) {  // the call answers its own request; this is a last net
      logger("cuse")->error("deferred call: {}", e.what());
    }
  }
}

}  // namespace vfio_emu::cuse
