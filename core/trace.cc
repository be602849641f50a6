#include "core/trace.h"

namespace vfio_emu::core {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace vfio_emu::core
