// Which process a calling thread belongs to: the daemon learns a caller's thread id from each
// request, and needs its thread-group id (the "process" that owns mappings and limits).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace vfio_emu::cuse {

// tid -> tgid. Entries hold a pidfd of the thread, so a reused tid is never mistaken for the
// thread it replaced. The pidfds count against the daemon's RLIMIT_NOFILE, which the daemon needs
// for its real work (fetching callers' fds), so: an entry lasts only as long as its thread (the
// ExitWatcher drops it, and closes its pidfd, when the thread exits: nothing is kept for dead
// callers); the cache holds at most a quarter of the limit (callers beyond are answered without
// being cached); the daemon's own threads are answered without being cached.
class ThreadGroups {
 public:
  // `max_entries` 0: a quarter of RLIMIT_NOFILE's soft limit (at least 16, at most 4096).
  explicit ThreadGroups(size_t max_entries = 0);
  // The thread-group id of `tid`, or 0 if the thread is gone or not visible.
  pid_t tgid_of(pid_t tid);
  size_t size() const;
  size_t max_entries() const { return max_entries_; }

 private:
  struct Entry {
    int pidfd;  // the ExitWatcher's: closed by it after the entry is dropped
    pid_t tgid;
  };
  // Shared with the watcher's callbacks, which may run after this object is gone.
  struct Cache {
    mutable std::mutex mu;
    std::unordered_map<pid_t, Entry> entries;
  };
  const size_t max_entries_;
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace vfio_emu::cuse
