// A rate limit for log lines that callers can provoke at will: every rejected ioctl or open logs a
// line at the default level, so without a limit one unprivileged program writes megabytes of log
// per second.
//
// Each caller (pid) has a token bucket, as the kernel's printk_ratelimit gives each call site
// 10 lines per 5 s: a burst of lines, then a steady rate. All callers together also share one
// bucket, so that many processes (a fork loop) cannot multiply the rate. A suppressed line is
// counted against its caller, and the count is reported with the caller's next line that may be
// logged ("callbacks suppressed" in the kernel). The table of callers is bounded: beyond
// max_callers, the caller seen least recently is forgotten, with its count.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <unordered_map>

namespace vfio_emu {

struct LogRateLimitConfig {
  double burst = 10;               // lines one caller may log at once
  double per_second = 2;           // and then per second (printk_ratelimit: 10 per 5 s)
  double total_burst = 100;        // all callers together
  double total_per_second = 20;
  std::size_t max_callers = 1024;  // callers remembered
};

class LogRateLimiter {
 public:
  using Config = LogRateLimitConfig;
  // Monotonic time in seconds.
  using Clock = std::function<double()>;
  static double steady_seconds();

  explicit LogRateLimiter(Config config = {}, Clock now = steady_seconds);

  struct Verdict {
    bool log = false;  // the line may be logged now
    // Lines of this caller suppressed since its last logged line (non-zero only when `log`):
    // report them first.
    std::uint64_t suppressed = 0;
  };
  Verdict allow(pid_t caller);

  // Callers remembered now (for tests).
  std::size_t callers() const;

 private:
  struct Bucket {
    double tokens = 0;
    double updated = 0;  // time of the last refill
  };
  struct Caller {
    Bucket bucket;
    std::uint64_t suppressed = 0;
    std::list<pid_t>::iterator lru;
  };
  static void refill(Bucket& b, double now, double burst, double per_second);

  const Config config_;
  const Clock now_;
  mutable std::mutex mu_;
  Bucket total_;
  std::unordered_map<pid_t, Caller> callers_;
  std::list<pid_t> lru_;  // most recently seen first
};

}  // namespace vfio_emu
