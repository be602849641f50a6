// Placeholder until the sPAPR backend lands: no container can use sPAPR yet.
#include "core/spapr.h"

#include "core/dispatcher.h"

namespace vfio_emu::core {

std::unique_ptr<IommuDriver> make_spapr_driver(Emulator&, Container&, u32) { return nullptr; }
long spapr_check_extension_unset(u32) { return 0; }
std::span<const Command> spapr_commands() { return {}; }

}  // namespace vfio_emu::core
