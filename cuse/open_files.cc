#include "cuse/open_files.h"

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
  }
  released_.notify_all();
}

bool OpenFiles::settle(u64 conflict) {
  if (conflict == 0) return false;
  std::unique_lock lock(mu_);
  auto it = flushed_at_.find(conflict);
  if (it == flushed_at_.end()) return true;  // released since the attempt
  const Clock::time_point flushed = it->second;
  if (flushed == Clock::time_point::min()) return false;  // never closed: it really is held
  // One deadline, from that flush: later closes of the same file do not extend it.
  return released_.wait_until(lock, flushed + kSettleWindow,
                              [&] { return flushed_at_.count(conflict) == 0; });
}

}  // namespace vfio_emu::cuse
