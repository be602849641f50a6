// `vfio-emu run`: runs a program in a private mount namespace where /dev/vfio, /dev/iommu and the
// VFIO sysfs entries come from the emulator (issue 6). The CLI registers it through this hook.
#pragma once

#include <CLI/CLI.hpp>

namespace vfio_emu::tools {

// Adds the `run` subcommand to `app`; when it runs, *exit_code receives the program's status.
void add_run_command(CLI::App& app, int* exit_code);

}  // namespace vfio_emu::tools
