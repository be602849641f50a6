#include "cuse/memory_trim.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>

#include "core/log.h"
#include "core/owner_memory.h"

namespace vfio_emu::cuse {

MemoryTrimmer::MemoryTrimmer(std::size_t threshold, int period_ms)
    : threshold_(threshold), period_ms_(period_ms) {
#if defined(__GLIBC__)
  // Fixed thresholds: glibc otherwise raises both after a large block is freed (up to a 64 MiB
  // trim threshold), and a thread arena's free top is only ever given back by free() itself.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
  // One arena per CPU rather than glibc's eight: threads still rarely share one (and the
  // per-thread tcache serves most of the hot path's small blocks without any arena lock), while
  // the mapping records freed by one thread are reused by the next instead of lying in an arena
  // whose thread has gone. Measured: RSS 2.5 s after a 1 GiB (262,144-mapping) run 22-62 MB with
  // eight per CPU, 11 MB with this, at the same ioctl rates.
  mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
#endif
  thread_ = std::thread([this] { run(); });
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool MemoryTrimmer::trim_if_grown(std::size_t threshold, std::size_t& baseline) {
#if defined(__GLIBC__)
  // mallinfo2 sums every arena; fordblks is their free bytes (chunks and the top).
  const std::size_t free_now = mallinfo2().fordblks;
  if (free_now <= baseline + threshold) {
    if (free_now < baseline) baseline = free_now;
    return false;
  }
  const int released = malloc_trim(0);
  baseline = mallinfo2().fordblks;
  logger("cuse")->debug("malloc_trim: arenas held {:#x} free bytes (threshold {:#x}): {}",
                              free_now, threshold, released ? "pages released" : "nothing released");
  return true;
#else
  (void)threshold;
  (void)baseline;
  return false;
#endif
}

void MemoryTrimmer::run() {
  std::size_t baseline = 0;
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(period_ms_), [this] { return stop_; })) {
    lock.unlock();
    trim_if_grown(threshold_, baseline);
    // The daemon's mappings of DMA owners' shared memory hold those pages: let go of the ones no
    // DMA used lately, and of exited owners' (core/owner_memory.h).
    core::owner_memory().drop_idle(2.0);
    lock.lock();
  }
}

}  // namespace vfio_emu::cuse
