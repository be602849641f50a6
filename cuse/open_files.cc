#include "cuse/open_files.h"

#include <algorithm>

namespace vfio_emu::cuse {

void OpenFiles::opened(const core::File& f) {
  std::lock_guard lock(mu_);
  flushed_at_[f.id()] = Clock::time_point::min();
}

void OpenFiles::flushed(const core::File& f) {
  std::lock_guard lock(mu_);
  auto it = flushed_at_.find(f.id());
  if (it != flushed_at_.end()) it->second = Clock::now();
}

void OpenFiles::released(const core::File& f) {
  {
    std::lock_guard lock(mu_);
    flushed_at_.erase(f.id());
    releases_.fetch_add(1, std::memory_order_release);
  }
  released_.notify_all();
}

bool OpenFiles::settle_recent_closes(u64 releases_before) {
  std::unique_lock lock(mu_);
  // The latest moment a recently flushed, unreleased file could still be released by.
  auto deadline = [&] {
    Clock::time_point until = Clock::time_point::min();
    const Clock::time_point now = Clock::now();
    for (const auto& [id, at] : flushed_at_)
      if (at != Clock::time_point::min() && at + kSettleWindow > now)
        until = std::max(until, at + kSettleWindow);
    return until;
  };
  if (deadline() == Clock::time_point::min()) return releases_.load(std::memory_order_relaxed) != releases_before;
  for (Clock::time_point until = deadline(); until != Clock::time_point::min(); until = deadline())
    released_.wait_until(lock, until);
  return true;
}

}  // namespace vfio_emu::cuse
