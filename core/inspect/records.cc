#include "core/inspect/records.h"

#include <fmt/core.h>

#include "base/errno_name.h"

namespace vfio_emu::core::inspect {

Json trace_record(const TraceRecord& r) {
  Json j{{"seq", r.seq},       {"time", r.time},          {"pid", r.pid},
         {"tid", r.tid},       {"node", r.node.str()},          {"command", r.command.empty() ? fmt::format("ioctl {:#x}", r.cmd) : std::string(r.command)},
         {"cmd", hex(r.cmd)},  {"arg", hex(r.arg)},       {"detail", r.detail.str()}};
  if (r.result >= 0) {
    j["result"] = r.result;
  } else {
    j["result"] = -1;
    j["errno"] = std::string(errno_name(static_cast<int>(-r.result)));
  }
  return j;
}

Json fault_record(const FaultRecord& r) {
  return {{"seq", r.seq},
          {"time", r.time},
          {"device", r.device},
          {"domain", r.domain},
          {"unit", r.unit},
          {"iova", hex(r.iova)},
          {"access", r.access == iommu::Access::kRead ? "read" : "write"},
          {"reason", std::string(iommu::fault_reason_name(r.reason))},
          {"level", r.level},
          {"hw_code", hex(r.hw_code)}};
}

}  // namespace vfio_emu::core::inspect
