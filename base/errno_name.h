// Names of errnos for log lines and the tools.
#pragma once

#include <string_view>

namespace vfio_emu {

// "EINVAL", "ENOENT", ..., "RETRY"/"DEFER" for the internal codes of base/result.h, or "errno"
// for anything unusual.
std::string_view errno_name(int e);

}  // namespace vfio_emu
