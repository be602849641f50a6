#include "cuse/thread_groups.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "cuse/caller_process.h"
#include "cuse/exit_watcher.h"

namespace vfio_emu::cuse {
namespace {

size_t default_max_entries() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return 4096;
  return std::clamp<size_t>(static_cast<size_t>(lim.rlim_cur) / 4, 16, 4096);
}

}  // namespace

ThreadGroups::ThreadGroups(size_t max_entries)
    : max_entries_(max_entries != 0 ? max_entries : default_max_entries()) {}

size_t ThreadGroups::size() const {
  std::lock_guard lock(cache_->mu);
  return cache_->entries.size();
}

pid_t ThreadGroups::tgid_of(pid_t tid) {
  if (tid <= 0) return 0;
  {
    std::lock_guard lock(cache_->mu);
    auto it = cache_->entries.find(tid);
    if (it != cache_->entries.end()) {
      // Dead but not yet dropped by the watcher (it closes the pidfd): a reused tid.
      if (pidfd_alive(it->second.pidfd)) return it->second.tgid;
      cache_->entries.erase(it);
    }
  }
  // The daemon's own threads (its identify ioctls, its closes of the fds it fetched) are not
  // cached: the cache is for clients, and would hold a pidfd for each of the daemon's threads.
  char own_task[64];
  std::snprintf(own_task, sizeof(own_task), "/proc/self/task/%d", tid);
  if (access(own_task, F_OK) == 0) return getpid();
  // The pidfd first, the lookup second, the liveness check last: if the tid was reused in
  // between, the pidfd (of the old thread) is dead and nothing is cached.
  const int pidfd = pidfd_open_thread(tid);
  if (pidfd < 0) return 0;
  const pid_t tgid = thread_group_of(tid);
  if (tgid == 0 || !pidfd_alive(pidfd)) {
    close(pidfd);
    return 0;
  }
  {
    std::lock_guard lock(cache_->mu);
    // Full of live callers: this one is answered, not cached (it is looked up again next time).
    if (cache_->entries.size() >= max_entries_) {
      close(pidfd);
      return tgid;
    }
    if (!cache_->entries.emplace(tid, Entry{pidfd, tgid}).second) {
      close(pidfd);  // another request of the thread cached it meanwhile
      return tgid;
    }
  }
  // Dropped as soon as the thread exits. The pidfd is compared: by then the tid may have been
  // cached again, for a new thread.
  std::weak_ptr<Cache> weak = cache_;
  if (!ExitWatcher::instance().watch(pidfd, [weak, tid, pidfd] {
        if (auto cache = weak.lock()) {
          std::lock_guard lock(cache->mu);
          auto it = cache->entries.find(tid);
          if (it != cache->entries.end() && it->second.pidfd == pidfd) cache->entries.erase(it);
        }
      })) {
    // Not watched: not kept either.
    std::lock_guard lock(cache_->mu);
    auto it = cache_->entries.find(tid);
    if (it != cache_->entries.end() && it->second.pidfd == pidfd) cache_->entries.erase(it);
    close(pidfd);
  }
  return tgid;
}

}  // namespace vfio_emu::cuse
