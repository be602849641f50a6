// The exit codes of `vfio-emu`, one per way a command can end (tools/control-protocol.md,
// "Exit codes"). Scripts rely on them: they never change meaning.
#pragma once

namespace vfio_emu::tools {

enum ExitCode : int {
  kExitOk = 0,
  kExitDifferences = 1,  // `check` found a page table that differs from the record
  kExitUsage = 2,        // bad arguments (also: the daemon rejected them, EINVAL)
  kExitNotRunning = 3,   // no daemon: the socket is missing, refuses connections, or went away
  kExitPermission = 4,   // the control socket exists but this user may not connect to it
  kExitUnknownId = 5,    // the daemon knows no such container, IOAS or domain (ENOENT)
  kExitProtocol = 6,     // timeout, a reply that is not the protocol, or any other daemon error
};

}  // namespace vfio_emu::tools
