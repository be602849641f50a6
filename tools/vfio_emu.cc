// vfio-emu: what a running vfio-emud has mapped, what its IOMMU tables hold, and why an address
// does not translate; and `run`, which starts a program against the emulator.
//
//   vfio-emu [--control SOCKET] [--json] [--timeout SECONDS] <command> [options]
//
// It talks to the daemon over its control socket only (tools/control-protocol.md, which also
// lists the exit codes).
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "tools/exit_codes.h"
#include "tools/inspect_commands.h"
#include "tools/run_command.h"

using namespace vfio_emu::tools;

int main(int argc, char** argv) {
  // A reader that goes away (`vfio-emu trace -f | head`) is an EPIPE to handle, not a death.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"vfio-emu: inspect a running vfio-emud (mappings, page tables, translations, "
               "trace) and run programs against it"};
  app.fallthrough();  // global options may also follow the subcommand
  app.require_subcommand(1);
  GlobalOptions global;
  app.add_option("--control", global.control,
                 "the daemon's control socket ($VFIO_EMU_CONTROL, else " +
                     std::string(kDefaultControlSocket) + ")")
      ->envname("VFIO_EMU_CONTROL");
  app.add_flag("--json", global.json, "print the daemon's result as JSON (stable field names)");
  app.add_option("--timeout", global.timeout_s, "seconds to wait for the daemon (default 5)")
      ->check(CLI::Validator(
          [](std::string& s) {
            char* end = nullptr;
            const double v = std::strtod(s.c_str(), &end);
            return end != s.c_str() && *end == '\0' && v > 0 && v <= 86400
                       ? std::string()
                       : "'" + s + "' is not a number of seconds above 0";
          },
          ""))
      ->type_name("SECONDS");

  int exit_code = kExitOk;
  InspectCommands inspect(app, global, &exit_code);
  add_run_command(app, &exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "vfio-emu: %s (see vfio-emu --help)\n", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vfio-emu: %s\n", e.what());
    return kExitProtocol;
  }
  return exit_code;
}
