// The rate limit of rejection log lines (base/log_rate_limit.h, core/reject.h): a token bucket per
// caller and one for all callers, the count of suppressed lines reported when the caller may log
// again, a bounded table of callers; and what a flood of rejected ioctls writes to the log.
#include <spdlog/sinks/ostream_sink.h>

#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "base/log_rate_limit.h"
#include "core/reject.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;
using vfio_emu::LogRateLimitConfig;
using vfio_emu::LogRateLimiter;

namespace {

struct FakeClock {
  double now = 1000;
  LogRateLimiter::Clock fn() {
    return [this] { return now; };
  }
};

LogRateLimitConfig config(double burst, double per_second, double total_burst,
                          double total_per_second, std::size_t max_callers) {
  LogRateLimitConfig c;
  c.burst = burst;
  c.per_second = per_second;
  c.total_burst = total_burst;
  c.total_per_second = total_per_second;
  c.max_callers = max_callers;
  return c;
}

// How many of `n` lines of `pid` may be logged now.
int allowed(LogRateLimiter& l, pid_t pid, int n, u64* suppressed_reported = nullptr) {
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    auto v = l.allow(pid);
    if (v.log) {
      ++ok;
      if (suppressed_reported) *suppressed_reported += v.suppressed;
    }
  }
  return ok;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("log rate limit: a burst, then the steady rate, per caller", "[log_rate_limit]") {
  FakeClock clock;
  LogRateLimiter l(config(10, 2, 1000, 1000, 16), clock.fn());
  CHECK(allowed(l, 100, 50) == 10);
  CHECK(allowed(l, 200, 50) == 10);  // another caller has its own bucket
  clock.now += 1;
  CHECK(allowed(l, 100, 50) == 2);
  clock.now += 0.25;
  CHECK(allowed(l, 100, 50) == 0);  // half a line
  clock.now += 0.25;
  CHECK(allowed(l, 100, 50) == 1);
  clock.now += 3600;
  CHECK(allowed(l, 100, 50) == 10);  // never more than the burst
}

TEST_CASE("log rate limit: suppressed lines are reported once, with the next line logged",
          "[log_rate_limit]") {
  FakeClock clock;
  LogRateLimiter l(config(3, 1, 1000, 1000, 16), clock.fn());
  u64 reported = 0;
  CHECK(allowed(l, 7, 3, &reported) == 3);
  CHECK(reported == 0);
  for (int i = 0; i < 40; ++i) CHECK_FALSE(l.allow(7).log);
  clock.now += 1;
  auto v = l.allow(7);
  CHECK(v.log);
  CHECK(v.suppressed == 40);
  clock.now += 1;
  v = l.allow(7);
  CHECK(v.log);
  CHECK(v.suppressed == 0);  // reported once only
}

TEST_CASE("log rate limit: all callers together have a bucket too", "[log_rate_limit]") {
  FakeClock clock;
  LogRateLimiter l(config(10, 2, 25, 5, 1024), clock.fn());
  int ok = 0;
  for (pid_t pid = 1; pid <= 100; ++pid) ok += allowed(l, pid, 10);
  CHECK(ok == 25);  // a fork loop does not multiply the rate
  clock.now += 1;
  ok = 0;
  for (pid_t pid = 1; pid <= 100; ++pid) ok += allowed(l, pid, 10);
  CHECK(ok == 5);
  // A caller suppressed by the shared bucket still has its lines counted: pid 100 had none
  // logged in either round.
  clock.now += 10;
  auto v = l.allow(100);
  CHECK(v.log);
  CHECK(v.suppressed == 20);
}

TEST_CASE("log rate limit: the table of callers is bounded, least recently seen forgotten",
          "[log_rate_limit]") {
  FakeClock clock;
  LogRateLimiter l(config(1, 0.001, 1e9, 1e9, 4), clock.fn());
  for (pid_t pid = 1; pid <= 4; ++pid) CHECK(allowed(l, pid, 2) == 1);
  CHECK(l.callers() == 4);
  CHECK(allowed(l, 1, 1) == 0);  // 1 is now the most recently seen
  CHECK(allowed(l, 5, 1) == 1);  // 2 is forgotten to make room
  CHECK(l.callers() == 4);
  CHECK(allowed(l, 1, 1) == 0);  // still remembered: its bucket is empty
  CHECK(allowed(l, 2, 1) == 1);  // forgotten: a fresh bucket
  for (pid_t pid = 100; pid < 1100; ++pid) l.allow(pid);
  CHECK(l.callers() == 4);
}

TEST_CASE("log rate limit: a flood of rejected ioctls logs a burst, then the suppressed count",
          "[log_rate_limit][reject]") {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_pattern("%v");
  auto log = logger("core");
  const std::vector<spdlog::sink_ptr> saved = log->sinks();
  log->sinks() = {sink};
  set_log_level(spdlog::level::info);
  core::configure_rejection_log_limit(config(10, 2, 100, 20, 1024));

  Harness h;
  const int fd = h.open("iommu");
  constexpr int kCalls = 2000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) CHECK(destroy(h, fd, 9) == ENOENT);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                          .count();
  sink->flush();
  const size_t lines = count(out.str(), "IOMMU_DESTROY: no object 0x9: ENOENT");
  INFO(out.str());
  CHECK(lines >= 10);
  CHECK(lines <= 10 + static_cast<size_t>(2 * took) + 1);  // the burst, then 2 per second

  // Once the caller may log again, the count of what was dropped comes first. (On a slow
  // machine a line may have been allowed during the flood already, with the count until then.)
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  CHECK(destroy(h, fd, 9) == ENOENT);
  sink->flush();
  const std::string text = out.str();
  const std::regex report("pid " + std::to_string(getpid()) +
                          ": ([0-9]+) rejection log lines? suppressed");
  u64 reported = 0;
  size_t last_report = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), report);
       it != std::sregex_iterator(); ++it) {
    reported += std::stoull((*it)[1].str());
    last_report = static_cast<size_t>(it->position());
  }
  CHECK(reported == kCalls - lines);
  CHECK(last_report != 0);
  CHECK(last_report < text.rfind("IOMMU_DESTROY: no object 0x9"));
  CHECK(count(text, "IOMMU_DESTROY: no object 0x9: ENOENT") == lines + 1);

  // The debug line of every ioctl is opt-in and not limited.
  set_log_level(spdlog::level::debug);
  out.str("");
  for (int i = 0; i < 100; ++i) CHECK(destroy(h, fd, 9) == ENOENT);
  sink->flush();
  CHECK(count(out.str(), "IOMMU_DESTROY id=0x9: ENOENT (2)") == 100);

  set_log_level(spdlog::level::warn);
  log->sinks() = saved;
  core::configure_rejection_log_limit({});
}
