// Locked-memory accounting per process (Linux: mm->locked_vm), for the pages VFIO would pin.
#pragma once

#include <sys/types.h>

#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/ints.h"
#include "base/result.h"

namespace vfio_emu::core {

class LockedMemory {
 public:
  // Charges `bytes` to `pid`. Errors: ENOMEM if that would exceed `limit` (bytes) and the
  // caller lacks CAP_IPC_LOCK.
  Status charge(pid_t pid, u64 bytes, u64 limit, bool cap_ipc_lock);
  void uncharge(pid_t pid, u64 bytes);
  u64 charged(pid_t pid) const;
  // Every key with a charge, in key order (for the tools).
  std::vector<std::pair<pid_t, u64>> charges() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<pid_t, u64> bytes_;
};

}  // namespace vfio_emu::core
