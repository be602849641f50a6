// Copies to and from the caller for the iommufd module and the device cdev, each failure with its
// log line (an EFAULT is a failure like any other; the CUSE retry signal passes silently).
#pragma once

#include <algorithm>
#include <cstddef>

#include "core/context.h"
#include "core/reject.h"

namespace vfio_emu::core {

// copy_from_user. Errors: EFAULT, kNeedRetry.
inline Status copy_from_user(IoctlCall& call, u64 addr, void* dst, std::size_t len) {
  Status st = call.mem->read(addr, dst, len);
  if (!st) return reject(call, st.error(), "reading {:#x} bytes at {:#x}", len, addr);
  return st;
}

// copy_to_user. Errors: EFAULT.
inline Status copy_to_user(IoctlCall& call, u64 addr, const void* src, std::size_t len) {
  Status st = call.mem->write(addr, src, len);
  if (!st) return reject(call, st.error(), "writing {:#x} bytes at {:#x}", len, addr);
  return st;
}

// For handlers that change nothing (information ioctls): announce, then write. Re-running them
// under the CUSE retry protocol is harmless, so the announcement may come this late.
inline Status reply_to_user(IoctlCall& call, u64 addr, const void* src, std::size_t len) {
  TRY(call.mem->will_write(addr, len));
  return copy_to_user(call, addr, src, len);
}

// iommufd_ucmd_respond with the log line.
inline Status respond(IoctlCall& call, std::size_t ksize) {
  return copy_to_user(call, call.arg, call.ucmd.data(),
                      std::min<std::size_t>(call.user_size, ksize));
}

}  // namespace vfio_emu::core
