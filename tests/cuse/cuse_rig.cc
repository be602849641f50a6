#include "tests/cuse/cuse_rig.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include <catch2/catch.hpp>

namespace vfio_emu::test {

const std::vector<std::string>& all_nodes() {
  static const std::vector<std::string> nodes{
      "vfio/vfio",          "vfio/1",             "vfio/2",             "vfio/3",
      "vfio/4",             "vfio/devices/vfio0", "vfio/devices/vfio1", "vfio/devices/vfio2",
      "vfio/devices/vfio3", "iommu"};
  return nodes;
}

const std::string& arg_access() {
  static const std::string mode = [] {
    const char* env = std::getenv("CUSE_ARG_ACCESS");
    return std::string(env != nullptr && env[0] != '\0' ? env : "direct");
  }();
  return mode;
}

bool retry_mode() { return arg_access() == "retry"; }

int rounds(int retry_rounds) { return retry_mode() ? retry_rounds : 1; }

// ---- CuseRig ---------------------------------------------------------------------------------

CuseRig::CuseRig(const std::vector<std::string>& nodes, const Options& options) {
  std::vector<std::string> args{"--arg-access", options.access, "--log-level", options.log_level};
  if (!options.prefix.empty()) {
    args.emplace_back("--cuse-prefix");
    args.push_back(options.prefix);
  }
  std::vector<int> theirs;
  for (const std::string& node : nodes) {
    int sv[2];
    // Both ends close-on-exec: the daemon gets its end explicitly, and must never hold ours, or
    // closing ours would not look like EOF to it.
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    auto kernel = std::make_unique<CuseKernel>(sv[0]);
    REQUIRE(kernel->send_init().ok());
    kernels_[node] = std::move(kernel);
    theirs.push_back(sv[1]);
    args.emplace_back("--cuse-fd");
    args.push_back(node + "=" + std::to_string(sv[1]));
  }
  auto started = EmudProcess::start(args, theirs);
  for (int fd : theirs) close(fd);
  INFO("starting " << EmudProcess::binary() << ": errno " << started.error());
  REQUIRE(started.ok());
  daemon_ = started.take();
  if (options.finish_init) finish_init();
}

CuseKernel& CuseRig::operator[](const std::string& node) {
  auto it = kernels_.find(node);
  if (it == kernels_.end()) throw std::out_of_range("no channel for node " + node);
  return *it->second;
}

void CuseRig::finish_init() {
  for (auto& [node, kernel] : kernels_) {
    auto devname = kernel->finish_init();
    INFO("CUSE_INIT of " << node << ": errno " << devname.error() << " "
                         << kernel->last_problem());
    REQUIRE(devname.ok());
    devnames_[node] = *devname;
  }
}

void CuseRig::close_all() {
  for (auto& [node, kernel] : kernels_) kernel->close();
}

// ---- CallerPages, Pipe -----------------------------------------------------------------------

CallerPages::CallerPages(std::size_t pages) : pages_(pages) {
  void* p = mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
  base_ = static_cast<std::uint8_t*>(p);
}

CallerPages::~CallerPages() { munmap(base_, pages_ * kPage); }

void CallerPages::protect(std::size_t i, int prot) {
  if (mprotect(page(i), kPage, prot) != 0) throw std::runtime_error("mprotect failed");
}

Pipe::Pipe() {
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
}

Pipe::~Pipe() {
  close(fds[0]);
  close(fds[1]);
}

}  // namespace vfio_emu::test
