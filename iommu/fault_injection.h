// Fault injection: make the N-th failure point reached by this thread fail, as Linux's
// /proc/self/task/<tid>/fail-nth does. Tests sweep N = 1, 2, ... until the point is no longer
// reached, checking after every injected failure that nothing leaked and nothing half-changed.
//
// Failure points call should_fail() (table allocations today; more points as the emulator grows).
#pragma once

namespace vfio_emu::iommu::fault_injection {

// Arms the N-th failure point of this thread (1-based). 0 disarms.
void fail_nth(unsigned n);

// True once the armed failure has fired (or nothing was armed): the sweep is over when a run
// leaves an armed counter unconsumed.
bool consumed();

// Called at each failure point; true means "fail here".
bool should_fail();

}  // namespace vfio_emu::iommu::fault_injection
