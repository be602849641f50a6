// The trace and fault records as `trace` and `faults` send them.
#pragma once

#include "core/emulator.h"
#include "core/inspect/format.h"

namespace vfio_emu::core::inspect {

Json trace_record(const TraceRecord& r);
Json fault_record(const FaultRecord& r);

}  // namespace vfio_emu::core::inspect
