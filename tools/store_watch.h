// Stores to a mapped BAR whose model wants them trapped reach it in program order, under
// `vfio-emu run`.
//
// A program's stores to a mapped BAR land in shared memory that the device model polls
// (devices/register_mirror.h). Two things polling cannot give:
//   - order against the program's next load: a driver that rings a doorbell and at once reads
//     the status the doorbell changes reads it before the model has seen the doorbell, where
//     PCIe ordering makes hardware take the posted write before it answers the read (Linux's
//     VFIO selftests do this after a channel reset: vfio_pci_driver_test's mix_and_match);
//   - a store of the value the register already shows (a driver writing back the
//     write-1-to-clear bits it read) is no change a scan can see.
// The watcher is a process of `run` that traces the program with ptrace (every process and
// thread it makes, across exec). Every mmap of a file stops in it (seccomp SECCOMP_RET_TRACE),
// where it makes the supervisor's checks (DeviceFdSupervisor::mmap_errno: Linux's errno for what
// the kernel cannot check). A shared writable mapping of a BAR whose model traps stores
// (DeviceModel::bar_stores_trapped, listed by the daemon's `list` as "trapped_bars") is made
// read-only instead: loads still read the shared memory directly, and each store faults. The
// watcher decodes the faulting instruction (tools/x86_store.h), hands the store to the daemon
// (control command `store`: a BAR write, as a pwrite of the region would be), moves the thread
// past the instruction and lets it run on without the signal. So every store reaches the model
// in program order before the program's next instruction, as MMIO writes reach hardware. A store
// the daemon refuses gets the signal Linux's vfio_pci_mmap_fault gives (SIGBUS, memory decoding
// off); an instruction the decoder does not know keeps its SIGSEGV, with a line on stderr.
//
// Address spaces are tracked per process: a fork keeps the read-only mapping (and the watcher
// its record), exec drops it, munmap is noticed at the next fault there (the mapping is checked
// in /proc/PID/map_files before a store is sent). mprotect is not watched: a program that makes
// the mapping writable again gets polled stores.
//
// Without ptrace (another tracer, no permission, `run --no-store-watch`) mmaps go to the
// supervisor as before and every store is polled.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vfio_emu::tools {

class DeviceFdSupervisor;

struct WatchedDevice {
  std::string bdf;   // the daemon's name for it (control command `store`)
  std::string cdev;  // its cdev under vfio/devices ("vfio4"): what MmapTarget::device names
  std::vector<std::uint32_t> trapped_bars;
};

// Forks the watcher process and attaches it to `program`, which must not run the program yet
// (it waits for a go from the caller, and installs install_device_fd_filter(true) only when this
// succeeded). `checks` is copied into the watcher with the rest of this process: call this while
// this process has one thread. Returns the watcher's pid, or -1 (the reason on stderr) if it
// could not attach; then nothing of it is left.
pid_t start_store_watch(pid_t program, const DeviceFdSupervisor& checks,
                        std::vector<WatchedDevice> devices, std::string control_socket);

}  // namespace vfio_emu::tools
