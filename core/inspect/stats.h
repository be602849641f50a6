// `stats`: table sizes per unit and domain, calls and errors per command, locked memory.
#pragma once

#include "core/emulator.h"
#include "core/inspect/format.h"

namespace vfio_emu::core::inspect {

// Per unit and domain: entries, tables, table memory; per command: calls and errors.
Json stats(Emulator& emu);

}  // namespace vfio_emu::core::inspect
