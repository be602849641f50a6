// `list`: the emulator's objects as the tools show them.
#pragma once

#include "core/emulator.h"
#include "core/inspect/format.h"

namespace vfio_emu::core::inspect {

// Units, groups, devices, containers, iommufd contexts with their IOASes, HWPTs and devices,
// domains, and who holds what (open files with the pid that opened them).
Json list(Emulator& emu);

// One row of the "domains" listing (also in `stats`): which container, IOAS or domain a HwDomain
// serves, and its table's size. Takes the domain's owner lock.
Json domain_summary(const HwDomain& d);

}  // namespace vfio_emu::core::inspect
