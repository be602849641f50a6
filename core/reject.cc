#include "core/reject.h"

#include <cerrno>

#include "core/dispatcher.h"
#include "core/log.h"

namespace vfio_emu::core {

std::string_view errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case ERANGE: return "ERANGE";
    case ENOTTY: return "ENOTTY";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EOVERFLOW: return "EOVERFLOW";
    case EBADFD: return "EBADFD";
    case EMSGSIZE: return "EMSGSIZE";
    case EADDRINUSE: return "EADDRINUSE";
    case ENOTCONN: return "ENOTCONN";
    case EAGAIN: return "EAGAIN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case kNeedRetry: return "RETRY";
    case kNeedDefer: return "DEFER";
    default: return "errno";
  }
}

Err reject_message(const IoctlCall& call, int e, const std::string& message) {
  if (!is_internal_code(e)) {
    logger("core")->info("{} pid {} {}: {}: {} ({})", call.node_name, call.caller.pid,
                         call.command != nullptr ? call.command->name : std::string_view("ioctl"),
                         message, errno_name(e), e);
  }
  return Err{e};
}

}  // namespace vfio_emu::core
