#include "core/reject.h"

#include <cerrno>
#include <memory>
#include <mutex>

#include "core/command.h"
#include "core/log.h"
#include "base/log_rate_limit.h"
#include "iommu/table_memory.h"

namespace vfio_emu::core {

std::string quoted(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  out += '"';
  return out;
}

std::string table_limit_note(int e) {
  const auto refused = iommu::TableBudget::take_refusal();
  if (e != ENOMEM || !refused) return {};
  return fmt::format(" (page tables: {:#x} bytes in use, a {:#x}-byte table would pass the limit "
                     "{:#x}, table_memory)", refused->used, refused->wanted, refused->limit);
}

namespace {

std::mutex limiter_mu;

std::shared_ptr<LogRateLimiter>& limiter_slot() {  // under limiter_mu
  // Never destroyed: rejections can be logged until the process exits.
  static auto* slot = new std::shared_ptr<LogRateLimiter>(std::make_shared<LogRateLimiter>());
  return *slot;
}

std::shared_ptr<LogRateLimiter> rejection_limiter() {
  std::lock_guard lock(limiter_mu);
  return limiter_slot();
}

}  // namespace

void configure_rejection_log_limit(const LogRateLimitConfig& config) {
  auto fresh = std::make_shared<LogRateLimiter>(config);
  std::lock_guard lock(limiter_mu);
  limiter_slot() = std::move(fresh);
}

bool rejection_log_allowed(spdlog::logger& log, pid_t pid) {
  if (!log.should_log(spdlog::level::info)) return false;
  const LogRateLimiter::Verdict v = rejection_limiter()->allow(pid);
  if (v.log && v.suppressed != 0)
    log.info("pid {}: {} rejection log line{} suppressed", pid, v.suppressed,
             v.suppressed == 1 ? "" : "s");
  return v.log;
}

Err reject_message(const IoctlCall& call, int e, const std::string& message) {
  auto log = logger("core");
  if (!is_internal_code(e) && rejection_log_allowed(*log, call.caller.pid)) {
    log->info("{} pid {} {}: {}: {} ({})", call.node_name, call.caller.pid,
              call.command != nullptr ? call.command->name : std::string_view("ioctl"), message,
              errno_name(e), e);
  }
  return Err{e};
}

}  // namespace vfio_emu::core
