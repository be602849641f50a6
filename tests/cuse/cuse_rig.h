// One vfio-emud serving CUSE nodes over socketpairs, with this test playing the kernel on each
// channel, and what the CUSE tests share: the argument-access mode under test, the rounds an
// ioctl should take in it, and caller memory with chosen protections.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/cuse/cuse_kernel.h"
#include "tests/cuse/emud_process.h"

namespace vfio_emu::test {

// Every node of the built-in machine (core/topology.h).
const std::vector<std::string>& all_nodes();

// --arg-access of this run: $CUSE_ARG_ACCESS (direct, retry or auto; meson runs the suite once
// per mode), direct if unset.
const std::string& arg_access();
bool retry_mode();  // whether the daemon answers a visible caller through FUSE_IOCTL_RETRY

// The rounds an ioctl takes in this run: 1 when the daemon reads the caller directly, else
// `retry_rounds`.
int rounds(int retry_rounds);

class CuseRig {
 public:
  struct Options {
    std::string access = arg_access();
    std::string prefix;             // --cuse-prefix, if not empty
    bool finish_init = true;        // wait for every CUSE_INIT reply before returning
    std::string log_level = "debug";
  };

  // Starts the daemon on one channel per node. As cuse_channel_open() does, CUSE_INIT is queued
  // on each channel before the daemon runs. REQUIREs that the daemon gets ready (and, with
  // finish_init, that every CUSE_INIT succeeds).
  explicit CuseRig(const std::vector<std::string>& nodes) : CuseRig(nodes, Options{}) {}
  CuseRig(const std::vector<std::string>& nodes, const Options& options);

  CuseKernel& operator[](const std::string& node);
  EmudProcess& daemon() { return *daemon_; }
  // DEVNAMEs by node, once finish_init() has run.
  const std::map<std::string, std::string>& devnames() const { return devnames_; }
  // Waits for every CUSE_INIT reply; REQUIREs success.
  void finish_init();
  // Closes every channel, as the kernel does when the daemon's channel files go away.
  void close_all();

 private:
  std::map<std::string, std::unique_ptr<CuseKernel>> kernels_;
  std::map<std::string, std::string> devnames_;
  std::unique_ptr<EmudProcess> daemon_;
};

// Anonymous pages of this process, the "caller memory" ioctl arguments point into.
class CallerPages {
 public:
  explicit CallerPages(std::size_t pages);
  ~CallerPages();
  CallerPages(const CallerPages&) = delete;
  CallerPages& operator=(const CallerPages&) = delete;

  std::uint8_t* page(std::size_t i) const { return base_ + i * kPage; }
  std::uint64_t addr(std::size_t i) const { return reinterpret_cast<std::uint64_t>(page(i)); }
  // mprotect of page i (PROT_NONE: unreadable; PROT_READ: readable but not writable).
  void protect(std::size_t i, int prot);
  static constexpr std::size_t kPage = 4096;

 private:
  std::uint8_t* base_;
  std::size_t pages_;
};

// A pipe: a real fd of ours that is no vfio-emu node.
struct Pipe {
  Pipe();
  ~Pipe();
  int fds[2];
};

}  // namespace vfio_emu::test
