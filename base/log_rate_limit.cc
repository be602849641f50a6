#include "base/log_rate_limit.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace vfio_emu {

double LogRateLimiter::steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

LogRateLimiter::LogRateLimiter(Config config, Clock now)
    : config_(config), now_(std::move(now)) {
  total_.tokens = config_.total_burst;
  total_.updated = now_();
}

void LogRateLimiter::refill(Bucket& b, double now, double burst, double per_second) {
  if (now > b.updated) b.tokens = std::min(burst, b.tokens + (now - b.updated) * per_second);
  b.updated = now;
}

LogRateLimiter::Verdict LogRateLimiter::allow(pid_t pid) {
  const double now = now_();
  std::lock_guard lock(mu_);
  auto it = callers_.find(pid);
  if (it == callers_.end()) {
    if (callers_.size() >= config_.max_callers && !lru_.empty()) {
      callers_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(pid);
    Caller c;
    c.bucket.tokens = config_.burst;
    c.bucket.updated = now;
    c.lru = lru_.begin();
    it = callers_.emplace(pid, c).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Caller& c = it->second;
  // The caller's own budget first: a caller over its rate does not use up the shared one.
  refill(total_, now, config_.total_burst, config_.total_per_second);
  refill(c.bucket, now, config_.burst, config_.per_second);
  if (c.bucket.tokens < 1 || total_.tokens < 1) {
    ++c.suppressed;
    return Verdict{};
  }
  c.bucket.tokens -= 1;
  total_.tokens -= 1;
  return Verdict{true, std::exchange(c.suppressed, 0)};
}

std::size_t LogRateLimiter::callers() const {
  std::lock_guard lock(mu_);
  return callers_.size();
}

}  // namespace vfio_emu
