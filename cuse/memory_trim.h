// Gives freed heap back to the kernel while the daemon idles, and sets glibc's malloc up for a
// daemon whose heap swings by 100 MB (fixed trim/mmap thresholds, one arena per CPU; see the
// constructor).
//
// The transports serve requests on several threads, and glibc spreads them over arenas.
// Memory freed in an arena (the records of 262,144 mappings after one UNMAP_DMA of all of them)
// stays in that arena: the daemon's RSS would keep its high-water mark for good. Once a second
// this thread asks glibc how much free memory the arenas hold and, when that has grown by more
// than a threshold since the last trim, has the free pages returned (malloc_trim releases whole
// free pages, also inside chunks). Trimmed memory still counts as free to malloc, so the growth
// is measured from what the last trim left; a daemon that frees little never pays for a trim.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

namespace vfio_emu::cuse {

class MemoryTrimmer {
 public:
  // Trims when the arenas' free bytes have grown by more than `threshold` since the last trim,
  // checked every `period_ms`.
  explicit MemoryTrimmer(std::size_t threshold = std::size_t{8} << 20, int period_ms = 1000);
  ~MemoryTrimmer();  // stops the thread
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  // One check, as the thread does it. `baseline` is the arenas' free bytes after the last trim
  // (updated here; it follows the free bytes down when memory is reused). Returns true if it
  // trimmed (never, if this C library cannot tell).
  static bool trim_if_grown(std::size_t threshold, std::size_t& baseline);

 private:
  void run();

  const std::size_t threshold_;
  const int period_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace vfio_emu::cuse
