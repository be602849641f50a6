// A device's DMA into shared memory of the mapping's owner, by one memcpy instead of a system call.
//
// process_vm_readv/writev (core/device_dma.h) pins every page it copies, and a device copy takes
// two of them (into the model's buffer and out of it): a fraction of memcpy's speed. Memory a
// program maps shared from a file (a memfd, hugetlbfs or a tmpfs file as DPDK and SPDK use, or
// MAP_SHARED|MAP_ANONYMOUS, which is a shmem file) can be mapped by the daemon too: it opens the
// owner's mapping through /proc/PID/map_files (root: CAP_SYS_ADMIN) and maps the same file pages.
// Private memory (malloc, MAP_PRIVATE) has no such file: it keeps process_vm_readv/writev.
//
// Before each use the owner's mapping at the address is asked again (PROCMAP_QUERY): the same
// file at the same offset, shared, and readable (writable for a DMA write); anything else (it was
// unmapped, remapped, made read-only, the process exec'd or exited) falls back to the system
// calls, which then answer as before. Kernels without PROCMAP_QUERY (before 6.11) never take this
// path.
//
// Costs: one PROCMAP_QUERY per access on a kept /proc/PID/maps (opened once per process, kept
// with a pidfd so that a reused pid is never asked through the old file); a range found private
// is remembered for a second, so private memory pays the question about once a second per
// mapping (a mapping that became shared meanwhile is copied the slow way, which is still right).
// Bounds: at most kMaxEntries mappings, kMaxProcesses processes and kMaxPrivate private ranges
// are kept (least recently used goes first); a mapping in use by a copy stays until it ends, and
// one no copy used for 2 s is let go (drop_idle), so a freed buffer is not held longer.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>

#include "base/ints.h"

namespace vfio_emu::core {

class OwnerMemory {
 public:
  // The daemon's view of one owner mapping; unmapped when the last user drops it.
  struct View {
    u8* base = nullptr;  // the daemon's address of the owner's vma_start
    u64 start = 0, end = 0, offset = 0;
    dev_t dev = 0;
    u64 ino = 0;
    pid_t pid = 0;
    bool writable = false;
    double last_used = 0;  // steady-clock seconds
    ~View();
  };

  // Where [addr, addr + len) of `pid` can be reached directly (for a write if `write`), as
  // *out (the view, kept alive) and the daemon's address of `addr`; null if it cannot.
  u8* resolve(pid_t pid, u64 addr, u64 len, bool write, std::shared_ptr<View>* out);

  // Lets go of the views no access used for `seconds`, and of everything of processes that have
  // exited: a view keeps the owner's pages (a freed or exited owner's too). The daemon calls it
  // about once a second (cuse/memory_trim.h).
  void drop_idle(double seconds);

  // Bytes copied directly so far (the tools and tests).
  u64 direct_bytes() const;
  void count_direct(u64 n);

 private:
  static constexpr std::size_t kMaxEntries = 16, kMaxProcesses = 16, kMaxPrivate = 64;
  struct Process {
    pid_t pid = 0;
    int pidfd = -1;
    int maps = -1;
  };
  struct Private {
    pid_t pid = 0;
    u64 start = 0, end = 0;
    double until = 0;  // seconds, steady clock
  };
  // The maps file of `pid` (under mu_), -1 if it cannot be had.
  int maps_of_locked(pid_t pid);
  void drop_process_locked(std::list<Process>::iterator it);

  mutable std::mutex mu_;
  std::list<std::shared_ptr<View>> views_;  // most recently used first
  std::list<Process> processes_;            // most recently used first
  std::list<Private> private_;              // most recently found first
  u64 direct_bytes_ = 0;
};

// The process-wide instance DeviceDma uses.
OwnerMemory& owner_memory();

}  // namespace vfio_emu::core
