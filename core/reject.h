// Failing an ioctl the way the project wants it: the errno Linux returns, plus one log line that
// names the node, the caller, the command and the operands in hex.
//
//   if (map.size == 0) return reject(call, EINVAL, "size {:#x} is zero", map.size);
#pragma once

#include <fmt/core.h>

#include <iterator>
#include <new>
#include <string>
#include <string_view>

#include "core/context.h"

namespace vfio_emu::core {

// "EINVAL", "ENOENT", ... (or the number for anything unusual).
std::string_view errno_name(int e);

// Logs "<node> pid <pid> <command>: <message>: <ERRNO>" at info level and returns Err{e}.
Err reject_message(const IoctlCall& call, int e, const std::string& message);

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
