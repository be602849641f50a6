#include "cuse/open_files.h"

namespace vfio_emu::cuse {

void OpenFiles::opened(const core::File& f) {
  std::lock_guard lock(mu_);
  open_[f.id()] = false;
}

void OpenFiles::flushed(const core::File& f) {
  std::lock_guard lock(mu_);
  auto it = open_.find(f.id());
  if (it != open_.end()) it->second = true;
}

void OpenFiles::released(const core::File& f) {
  {
    std::lock_guard lock(mu_);
    open_.erase(f.id());
  }
  released_.notify_all();
}

bool OpenFiles::wait_release_after_flush(u64 id, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  auto it = open_.find(id);
  if (it == open_.end()) return true;
  if (!it->second) return false;  // nobody closed it: genuinely busy
  return released_.wait_for(lock, timeout, [&] { return open_.count(id) == 0; });
}

}  // namespace vfio_emu::cuse
