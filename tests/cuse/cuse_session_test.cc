// The CUSE session of each node, driven through --cuse-fd with this test playing the kernel:
// CUSE_INIT and the DEVNAME, readiness, OPEN/RELEASE, READ/WRITE, the end of the daemon when its
// channels close (issue 4, "CUSE tests").
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <catch2/catch.hpp>

#include "core/uapi/vfio.h"
#include "tests/cuse/cuse_rig.h"

namespace vfio_emu::test {
namespace {

using namespace std::chrono_literals;

TEST_CASE("CUSE_INIT: each channel's DEVNAME is its node's name", "[init]") {
  CuseRig rig(all_nodes());
  for (const std::string& node : all_nodes()) {
    INFO(node);
    CHECK(rig.devnames().at(node) == node);
    // cuse_process_init_reply: max_read/max_write are at least a page.
    CHECK(rig[node].max_read() >= 4096);
    CHECK(rig[node].max_write() >= 4096);
  }
}

TEST_CASE("CUSE_INIT: --cuse-prefix goes in front of every DEVNAME", "[init]") {
  CuseRig::Options o;
  o.prefix = "vfio-emu-test/";
  CuseRig rig(all_nodes(), o);
  for (const std::string& node : all_nodes()) CHECK(rig.devnames().at(node) == "vfio-emu-test/" + node);
}

TEST_CASE("the daemon has answered CUSE_INIT before it says it is ready", "[init][ready]") {
  // With /dev/cuse the kernel queues CUSE_INIT as soon as the daemon opens the channel, and the
  // node appears in /dev only when the daemon answers it. "vfio-emud: ready" promises that every
  // node exists (issue 4, Readiness): a script that starts a program right after it must find
  // the nodes. So CUSE_INIT is queued here before the daemon starts, as the kernel would, and
  // the daemon is held at the moment it says "ready": its stderr is a pipe with room for less
  // than that line (a write of up to PIPE_BUF bytes is all or nothing), and --log-level off keeps
  // it from writing anything before. While it is held, the CUSE_INIT reply must be there.
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  CuseKernel kernel(sv[0]);
  REQUIRE(kernel.send_init().ok());
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  fcntl(p[1], F_SETPIPE_SZ, 4096);
  const int room = fcntl(p[1], F_GETPIPE_SZ);
  REQUIRE(room > 0);
  const std::string ready = "vfio-emud: ready\n";
  const std::string filler(static_cast<size_t>(room) - ready.size() + 1, '.');
  REQUIRE(write(p[1], filler.data(), filler.size()) == static_cast<ssize_t>(filler.size()));

  auto daemon = EmudProcess::launch({"--cuse-fd", "vfio/vfio=" + std::to_string(sv[1]),
                                     "--arg-access", arg_access(), "--log-level", "off"},
                                    {sv[1]}, p[1]);
  close(sv[1]);
  close(p[1]);
  REQUIRE(daemon.ok());
  const bool answered_before_ready = kernel.message_waiting(2s);

  // Let it go, and check that "ready" is indeed what it was held at.
  std::string out;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (out.find(ready) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{p[0], POLLIN, 0};
    if (poll(&pfd, 1, 100) != 1) continue;
    const ssize_t n = read(p[0], buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(p[0]);
  REQUIRE(out.size() >= filler.size());
  INFO("the daemon wrote to stderr: " << out.substr(filler.size()));
  REQUIRE(out.substr(filler.size(), ready.size()) == ready);
  INFO("no CUSE_INIT reply while the daemon was saying 'vfio-emud: ready': the nodes would not "
       "exist yet");
  CHECK(answered_before_ready);
  auto devname = kernel.finish_init();  // it does come, later
  CHECK(devname.ok());
}

TEST_CASE("OPEN and RELEASE: a group opens once at a time, a release frees it", "[open]") {
  CuseRig rig({"vfio/vfio", "vfio/1", "vfio/2", "iommu", "vfio/devices/vfio0"});
  CuseKernel& group = rig["vfio/1"];

  auto fh = group.open();
  REQUIRE(fh.ok());
  CHECK(group.open().error() == EBUSY);
  // Another group is independent.
  auto other = rig["vfio/2"].open();
  REQUIRE(other.ok());
  // RELEASE is synchronous for CUSE: the group is free when it returns.
  CHECK(group.release(*fh).ok());
  auto again = group.open();
  REQUIRE(again.ok());
  CHECK(group.release(*again).ok());
  CHECK(rig["vfio/2"].release(*other).ok());

  SECTION("containers, iommufds and cdevs open many times, each open its own file") {
    for (const char* node : {"vfio/vfio", "iommu", "vfio/devices/vfio0"}) {
      INFO(node);
      auto a = rig[node].open();
      auto b = rig[node].open();
      REQUIRE(a.ok());
      REQUIRE(b.ok());
      CHECK(*a != *b);
      CHECK(rig[node].release(*a).ok());
      CHECK(rig[node].release(*b).ok());
    }
  }
}

TEST_CASE("READ and WRITE reach the daemon (offset 0), and its errno comes back", "[rw]") {
  CuseRig rig({"vfio/vfio", "vfio/devices/vfio0"});
  for (const char* node : {"vfio/vfio", "vfio/devices/vfio0"}) {
    INFO(node);  // a container has no regions; a cdev has them only once bound
    auto fh = rig[node].open();
    REQUIRE(fh.ok());
    char buf[64] = {};
    CHECK(rig[node].read(*fh, buf, sizeof(buf)).error() == EINVAL);
    CHECK(rig[node].write(*fh, buf, sizeof(buf)).error() == EINVAL);
    CHECK(rig[node].release(*fh).ok());
  }
}

TEST_CASE("the daemon exits with status 0 once every channel is closed", "[exit]") {
  CuseRig rig({"vfio/vfio", "vfio/1", "iommu"});
  // Files left open when the channels go: the daemon must still end cleanly.
  auto group = rig["vfio/1"].open();
  REQUIRE(group.ok());
  auto ictx = rig["iommu"].open();
  REQUIRE(ictx.ok());

  SECTION("one channel closed: the others are still served") {
    rig["vfio/1"].close();
    std::this_thread::sleep_for(100ms);
    CHECK(rig.daemon().running());
    auto fh = rig["vfio/vfio"].open();
    REQUIRE(fh.ok());
    CHECK(rig["vfio/vfio"].ioctl(*fh, uapi::VFIO_GET_API_VERSION, uint64_t{0}).ret ==
          uapi::VFIO_API_VERSION);
  }
  rig.close_all();
  auto status = rig.daemon().wait_exit(5s);
  INFO("wait_exit: errno " << status.error());
  REQUIRE(status.ok());
  CHECK(*status == 0);
  CHECK(rig.daemon().log().find("every CUSE channel was closed") != std::string::npos);
}

TEST_CASE("SIGTERM stops the daemon cleanly while channels are open", "[exit]") {
  CuseRig rig({"vfio/vfio", "iommu"});
  auto fh = rig["iommu"].open();
  REQUIRE(fh.ok());
  rig.daemon().kill(SIGTERM);
  auto status = rig.daemon().wait_exit(5s);
  REQUIRE(status.ok());
  CHECK(*status == 0);
}

TEST_CASE("--cuse-fd naming no node: the daemon refuses to start", "[exit]") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  CuseKernel kernel(sv[0]);
  auto daemon = EmudProcess::launch({"--cuse-fd", "vfio/99=" + std::to_string(sv[1])}, {sv[1]});
  close(sv[1]);
  REQUIRE(daemon.ok());
  auto status = (*daemon)->wait_exit(5s);
  REQUIRE(status.ok());
  CHECK(*status != 0);
  CHECK((*daemon)->log().find("vfio-emud: ready") == std::string::npos);
  CHECK((*daemon)->log().find("vfio/99") != std::string::npos);
}

}  // namespace
}  // namespace vfio_emu::test
