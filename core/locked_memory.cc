#include "core/locked_memory.h"

#include <algorithm>

namespace vfio_emu::core {

Status LockedMemory::charge(pid_t pid, u64 bytes, u64 limit, bool cap_ipc_lock) {
  std::lock_guard lock(mu_);
  u64& have = bytes_[pid];
  if (!cap_ipc_lock && (have + bytes < have || have + bytes > limit)) {
    if (have == 0) bytes_.erase(pid);
    return err(ENOMEM);
  }
  have += bytes;
  return {};
}

void LockedMemory::uncharge(pid_t pid, u64 bytes) {
  if (bytes == 0) return;
  std::lock_guard lock(mu_);
  auto it = bytes_.find(pid);
  if (it == bytes_.end()) return;
  it->second -= std::min(it->second, bytes);
  if (it->second == 0) bytes_.erase(it);
}

u64 LockedMemory::charged(pid_t pid) const {
  std::lock_guard lock(mu_);
  auto it = bytes_.find(pid);
  return it == bytes_.end() ? 0 : it->second;
}

std::vector<std::pair<pid_t, u64>> LockedMemory::charges() const {
  std::vector<std::pair<pid_t, u64>> all;
  {
    std::lock_guard lock(mu_);
    all.assign(bytes_.begin(), bytes_.end());
  }
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace vfio_emu::core
