// Placeholder until `vfio-emu run` lands: the subcommand exists and says so.
#include "tools/run_command.h"

#include <cstdio>

namespace vfio_emu::tools {

void add_run_command(CLI::App& app, int* exit_code) {
  auto* run = app.add_subcommand("run", "run a program against the emulator (not available yet)");
  run->allow_extras();
  run->callback([exit_code] {
    std::fprintf(stderr, "vfio-emu run: not available in this build yet\n");
    *exit_code = 2;
  });
}

}  // namespace vfio_emu::tools
