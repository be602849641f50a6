// Failing an ioctl the way the project wants it: the errno Linux returns, plus one log line that
// names the node, the caller, the command and the operands in hex.
//
//   if (map.size == 0) return reject(call, EINVAL, "size {:#x} is zero", map.size);
#pragma once

#include <fmt/core.h>
#include <spdlog/logger.h>
#include <sys/types.h>

#include <iterator>
#include <new>
#include <string>
#include <string_view>

#include "base/errno_name.h"
#include "base/log_rate_limit.h"
#include "core/context.h"
#include "core/table_limit_note.h"

namespace vfio_emu::core {

// Bytes a caller passed (a device name), for a log line or a trace detail: in double quotes,
// every byte that is not printable ASCII (and the quote and backslash) as \xNN. A caller must
// not be able to write lines into the log, nor invalid UTF-8 into the control protocol's JSON.
std::string quoted(std::string_view bytes);

// Logs "<node> pid <pid> <command>: <message>: <ERRNO>" at info level (rate-limited per caller,
// see rejection_log_allowed) and returns Err{e}.
Err reject_message(const IoctlCall& call, int e, const std::string& message);

// Whether `log` may log a line, at info level, about a call of `pid` that failed: every caller
// can provoke such lines at will, so they are rate-limited per caller (base/log_rate_limit.h; a
// burst of 10, then 2 per second; 20 per second for all callers together). When lines of this
// caller were suppressed before, it first logs "pid <pid>: <N> rejection log lines suppressed".
// Lines at debug level (every ioctl) are opt-in and not limited.
bool rejection_log_allowed(spdlog::logger& log, pid_t pid);

// Replaces the rate limit of rejection lines (and forgets every caller's count).
void configure_rejection_log_limit(const LogRateLimitConfig& config);

template <class... A>
Err reject(const IoctlCall& call, int e, fmt::format_string<A...> f, A&&... args) {
  return reject_message(call, e, fmt::format(f, std::forward<A>(args)...));
}

// Appends what the call produced (" -> iova=0x1000") to call.detail, for the trace, once the
// call has changed state: an allocation failure here loses the text, never the call's result.
template <class... A>
void note_result(IoctlCall& call, fmt::format_string<A...> f, A&&... args) noexcept {
  try {
    fmt::format_to(std::back_inserter(call.detail), f, std::forward<A>(args)...);
  } catch (const std::bad_alloc&) {
  }
}

}  // namespace vfio_emu::core
