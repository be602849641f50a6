// The inspection subcommands of `vfio-emu` (issue 5): status, list, maps, pt, translate, stats,
// faults, trace, check. Each turns its arguments into one control request
// (tools/control-protocol.md), and prints the result as text or, with --json, as the daemon's
// result object.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace vfio_emu::tools {

// Where the daemon listens unless --control or $VFIO_EMU_CONTROL says otherwise (the default of
// vfio-emud --control).
inline constexpr const char* kDefaultControlSocket = "/run/vfio-emu/control.sock";

struct GlobalOptions {
  std::string control = kDefaultControlSocket;
  bool json = false;
  double timeout_s = 5;
};

// Registers the subcommands on `app`. When one runs, *exit_code receives its exit code
// (tools/exit_codes.h). `global` and `this` must outlive app.parse().
class InspectCommands {
 public:
  InspectCommands(CLI::App& app, const GlobalOptions& global, int* exit_code);

 private:
  struct Args {
    std::string container, ioas, domain, pid;  // maps filters / pt and translate domain
    std::string iova;                          // pt --iova A[..B]; translate IOVA
    bool write = false;
    bool follow = false;
    std::string since, max;
  };

  void add_domain_option(CLI::App& sub);  // --domain ID, required
  void add_maps(CLI::App& app);
  void add_pt(CLI::App& app);
  void add_translate(CLI::App& app);
  void add_log(CLI::App& app, const char* name, const char* help);

  const GlobalOptions& global_;
  int* exit_code_;
  Args args_;
};

}  // namespace vfio_emu::tools
