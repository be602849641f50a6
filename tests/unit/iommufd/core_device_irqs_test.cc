// VFIO_DEVICE_SET_IRQS on a bound device: vfio_set_irqs_validate_and_prepare's checks in
// Linux's order, then vfio_pci_set_irqs_ioctl's per-index actions (INTx MASK/UNMASK/TRIGGER,
// MSI/MSI-X TRIGGER, ERR/REQ TRIGGER), the eventfds the daemon keeps, raise_irq() of the emulated
// device (INTx automasking, pending INTx), the command register's INTx-disable bit, the unmask
// irqfd, and what RESET and the last close do to it all.
#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <dirent.h>
#include <thread>
#include <vector>

#include "core/uapi/vfio_emu.h"
#include "tests/unit/iommufd/device_irq_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;
using core::DeviceIrqs;
using core::raise_irq;

namespace {

core::Device& device(Harness& h, u32 cdev = 0) { return *h.emu.device_by_cdev(cdev); }

// Gives the device's config space a capability list: an MSI capability with 4 vectors, an MSI-X
// capability with 8, and (with `pcie`) a PCI Express capability. Done before BIND, as a device
// has its capabilities from power-on.
void add_capabilities(Harness& h, bool pcie = false) {
  core::Device& d = device(h);
  std::lock_guard lock(d.regions_mu);
  auto& c = d.config;
  c[0x06] |= 0x10;  // PCI_STATUS_CAP_LIST
  c[0x34] = 0x40;
  c[0x40] = 0x05;   // MSI
  c[0x41] = 0x50;
  c[0x42] = 0x04;   // Multiple Message Capable: 2^2
  c[0x50] = 0x11;   // MSI-X
  c[0x51] = pcie ? 0x60 : 0x00;
  c[0x52] = 0x07;   // table size 8
  if (pcie) {
    c[0x60] = 0x10;  // PCI Express
    c[0x61] = 0x00;
  }
}

u32 irq_info_count(Harness& h, int dev, u32 index) {
  vfio_irq_info q{sizeof(q), 0, index, 0};
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &q) == 0);
  return q.count;
}

// Eventfds open in this process (the test's, the harness's and the core's duplicates).
int open_eventfds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  while (dirent* e = readdir(d)) {
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    char target[64];
    const ssize_t len = readlink(path.c_str(), target, sizeof(target) - 1);
    if (len > 0 && std::string_view(target, len) == "anon_inode:[eventfd]") ++n;
  }
  closedir(d);
  return n;
}

// Waits up to 2 s for `pred` (the unmask irqfd works on its own thread).
template <class P>
bool eventually(P pred) {
  for (int i = 0; i < 200; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void write_command(Harness& h, int dev, u16 cmd) {
  REQUIRE(h.pwrite(dev, &cmd, 2, kConfig + 4) == 2);
}

}  // namespace

// ---- vfio_set_irqs_validate_and_prepare --------------------------------------------------------

TEST_CASE("SET_IRQS: the header checks, in Linux's order", "[irqs][validate]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  // copy_from_user of the 20-byte header.
  CHECK(h.fails(dev, VFIO_DEVICE_SET_IRQS, u64{0x10}) == EFAULT);
  // argsz, index, count overflow, unknown flags: EINVAL.
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1, {}, 19) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, VFIO_PCI_NUM_IRQS, 0, 1) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, 0xffffffff, 0, 1) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 0xffffffff) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 0xffffffff, 0) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger | (1u << 6), kIntx, 0, 1) == EINVAL);
  // start/count against the index's count: INTx and ERR have 1, MSI and MSI-X none here.
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 1, 0) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 2) == EINVAL);
  for (u32 index : {kMsi, kMsix}) {
    CHECK(set_irqs(h, dev, kNone | kTrigger, index, 0, 0) == EINVAL);
    CHECK(set_irqs(h, dev, kNone | kMask, index, 0, 0) == EINVAL);  // before ENOTTY
  }
  // The error IRQ of a conventional PCI device (Linux 7.x; 6.12 had it on PCIe only).
  CHECK(set_irqs(h, dev, kNone | kTrigger, kErr, 1, 0) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kErr, 0, 2) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kMask, kErr, 0, 1) == ENOTTY);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kErr, 0, 0) == EINVAL);  // no eventfd to disable
  // Exactly one DATA_ type.
  CHECK(set_irqs(h, dev, kTrigger, kIntx, 0, 1) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kBool | kTrigger, kIntx, 0, 1, {1}) == EINVAL);
  CHECK(set_irqs(h, dev, kBool | kEventfd | kTrigger, kIntx, 0, 1, fds({0})) == EINVAL);
  // The data must fit in argsz.
  CHECK(set_irqs(h, dev, kEventfd | kTrigger, kIntx, 0, 1, {}, 20) == EINVAL);
  CHECK(set_irqs(h, dev, kEventfd | kTrigger, kIntx, 0, 1, fds({-1}), 23) == EINVAL);
  CHECK(set_irqs(h, dev, kBool | kTrigger, kIntx, 0, 1, {}, 20) == EINVAL);
  // Nothing changed.
  CHECK(irq_state(h, dev).irq_type == VFIO_PCI_NUM_IRQS);
}

TEST_CASE("SET_IRQS: the data is read after the checks (EFAULT), before the action",
          "[irqs][validate]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  // The header at the end of a page, the data on the next page, which is not mapped.
  u8* pages = static_cast<u8*>(
      mmap(nullptr, 2 * K4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(pages != MAP_FAILED);
  REQUIRE(munmap(pages + K4, K4) == 0);
  auto* hdr = reinterpret_cast<vfio_irq_set*>(pages + K4 - sizeof(vfio_irq_set));
  *hdr = {24, kEventfd | kTrigger, kIntx, 0, 1};
  CHECK(h.fails(dev, VFIO_DEVICE_SET_IRQS, hdr) == EFAULT);
  *hdr = {24, kEventfd | kMask, kIntx, 0, 1};  // an action that would be ENOTTY
  CHECK(h.fails(dev, VFIO_DEVICE_SET_IRQS, hdr) == EFAULT);
  *hdr = {24, kEventfd | kTrigger, kIntx, 0, 2};  // the checks come first
  CHECK(h.fails(dev, VFIO_DEVICE_SET_IRQS, hdr) == EINVAL);
  *hdr = {20, kNone | kTrigger, kIntx, 0, 0};  // no data: nothing more to read
  CHECK(h.fails(dev, VFIO_DEVICE_SET_IRQS, hdr) == EINVAL);  // INTx is not enabled
  munmap(pages, K4);
}

TEST_CASE("SET_IRQS: actions an index does not have are ENOTTY", "[irqs][dispatch]") {
  Harness h;
  add_capabilities(h);
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  // No action, or two.
  CHECK(set_irqs(h, dev, kNone, kIntx, 0, 1) == ENOTTY);
  CHECK(set_irqs(h, dev, kNone | kMask | kUnmask, kIntx, 0, 1) == ENOTTY);
  CHECK(set_irqs(h, dev, kNone | kMask | kTrigger, kReq, 0, 1) == ENOTTY);
  // MSI and MSI-X cannot be masked; ERR and REQ only trigger.
  for (u32 index : {kMsi, kMsix}) {
    CHECK(set_irqs(h, dev, kNone | kMask, index, 0, 1) == ENOTTY);
    CHECK(set_irqs(h, dev, kNone | kUnmask, index, 0, 1) == ENOTTY);
  }
  CHECK(set_irqs(h, dev, kNone | kMask, kReq, 0, 1) == ENOTTY);
  CHECK(set_irqs(h, dev, kNone | kUnmask, kReq, 0, 1) == ENOTTY);
  // An INTx mask eventfd is not implemented in Linux either, once INTx is on.
  EventFd e;
  CHECK(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(e.fd())}, kMask) == EINVAL);
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {-1}) == 0);
  CHECK(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(e.fd())}, kMask) == ENOTTY);
}

// ---- INTx --------------------------------------------------------------------------------------

TEST_CASE("SET_IRQS INTx: an eventfd trigger, loopback with DATA_NONE/DATA_BOOL, disable",
          "[irqs][intx]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  EventFd e;
  const int base = open_eventfds();
  // Before INTx is enabled there is nothing to trigger, mask or unmask.
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kMask, kIntx, 0, 1) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 0) == EINVAL);  // no disable either
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(e.fd())}) == 0);
  auto s = irq_state(h, dev);
  CHECK(s.irq_type == kIntx);
  CHECK(s.triggers == 1);
  CHECK_FALSE(s.intx_masked);
  CHECK(open_eventfds() == base + 2);  // the harness's "caller" copy and the core's
  // The loopback: DATA_NONE signals, DATA_BOOL signals for true only.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(e.take() == 1);
  REQUIRE(set_irqs(h, dev, kBool | kTrigger, kIntx, 0, 1, {1}) == 0);
  REQUIRE(set_irqs(h, dev, kBool | kTrigger, kIntx, 0, 1, {0}) == 0);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(e.take() == 2);
  // Disable: DATA_NONE with count 0. The core's duplicate is closed.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 0) == 0);
  s = irq_state(h, dev);
  CHECK(s.irq_type == VFIO_PCI_NUM_IRQS);
  CHECK(s.triggers == 0);
  CHECK(open_eventfds() == base + 1);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == EINVAL);
  CHECK(e.take() == 0);
}

TEST_CASE("SET_IRQS INTx: eventfd errors, negative fds, and replacing the trigger",
          "[irqs][intx]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  EventFd a, b;
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  CHECK(set_eventfd(h, dev, kIntx, 0, {9999}) == EBADF);                   // not an open fd
  CHECK(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(pipefd[0])}) == EINVAL);  // not an eventfd
  CHECK(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd()}) == EINVAL);
  CHECK(set_eventfd(h, dev, kIntx, 0, {fd}) == EINVAL);  // the iommufd node
  CHECK(irq_state(h, dev).irq_type == VFIO_PCI_NUM_IRQS);
  // The state checks come before the fd: with count 2 it is EINVAL whatever the fds are.
  CHECK(set_irqs(h, dev, kEventfd | kTrigger, kIntx, 0, 2, fds({9999, 9999})) == EINVAL);
  // A negative fd enables INTx without a trigger; the loopback then signals nothing.
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {-1}) == 0);
  CHECK(irq_state(h, dev).irq_type == kIntx);
  CHECK(irq_state(h, dev).triggers == 0);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  // Set a trigger, then replace it: only the new one is signalled.
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(a.fd())}) == 0);
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(b.fd())}) == 0);
  CHECK(irq_state(h, dev).triggers == 1);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(a.take() == 0);
  CHECK(b.take() == 1);
  // A bad fd while INTx is on leaves the trigger as it was.
  CHECK(set_eventfd(h, dev, kIntx, 0, {9999}) == EBADF);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(b.take() == 1);
  // -5 removes it, INTx stays on.
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {-5}) == 0);
  CHECK(irq_state(h, dev).irq_type == kIntx);
  CHECK(irq_state(h, dev).triggers == 0);
  close(pipefd[0]);
  close(pipefd[1]);
}

TEST_CASE("raise_irq INTx: automasked on fire, pending while masked, delivered on unmask",
          "[irqs][intx][raise]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  EventFd e;
  CHECK_FALSE(raise_irq(d, kIntx));  // INTx not enabled: nobody listens
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(e.fd())}) == 0);
  CHECK(raise_irq(d, kIntx));
  CHECK(e.take() == 1);
  CHECK(irq_state(h, dev).intx_masked);
  // Masked: the second one waits.
  CHECK_FALSE(raise_irq(d, kIntx));
  CHECK(e.take() == 0);
  CHECK(irq_state(h, dev).intx_pending);
  // Unmask with DATA_BOOL false does nothing; with DATA_NONE the pending one is sent and INTx
  // stays masked (the line was still asserted); the next unmask unmasks.
  REQUIRE(set_irqs(h, dev, kBool | kUnmask, kIntx, 0, 1, {0}) == 0);
  CHECK(e.take() == 0);
  REQUIRE(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == 0);
  CHECK(e.take() == 1);
  CHECK(irq_state(h, dev).intx_masked);
  CHECK_FALSE(irq_state(h, dev).intx_pending);
  REQUIRE(set_irqs(h, dev, kBool | kUnmask, kIntx, 0, 1, {1}) == 0);
  CHECK_FALSE(irq_state(h, dev).intx_masked);
  CHECK(raise_irq(d, kIntx));
  CHECK(e.take() == 1);
  // The user masks: the device's interrupt waits again.
  REQUIRE(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == 0);
  REQUIRE(set_irqs(h, dev, kBool | kMask, kIntx, 0, 1, {0}) == 0);
  CHECK_FALSE(irq_state(h, dev).intx_masked);
  REQUIRE(set_irqs(h, dev, kNone | kMask, kIntx, 0, 1) == 0);
  CHECK_FALSE(raise_irq(d, kIntx));
  // The loopback ignores the mask, as Linux's vfio_send_intx_eventfd does.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(e.take() == 1);
  REQUIRE(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == 0);
  CHECK(e.take() == 1);  // the pending one
  CHECK_FALSE(raise_irq(d, kIntx, 1));  // INTx has one vector
}

TEST_CASE("INTx: the command register's INTx-disable bit masks and unmasks", "[irqs][intx]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  EventFd e;
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(e.fd())}) == 0);
  write_command(h, dev, 0x0400);  // PCI_COMMAND_INTX_DISABLE
  auto s = irq_state(h, dev);
  CHECK(s.virq_disabled);
  CHECK(s.intx_masked);
  CHECK_FALSE(raise_irq(d, kIntx));
  // Nothing reaches the user while it is disabled, not even the loopback or an unmask.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  REQUIRE(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == 0);
  CHECK(e.take() == 0);
  // Clearing it unmasks, and the interrupt that waited is sent.
  write_command(h, dev, 0x0006);
  CHECK_FALSE(irq_state(h, dev).virq_disabled);
  CHECK(e.take() == 1);
  // A one-byte write of the high byte counts too; other registers do not.
  const u8 hi = 0x04;
  REQUIRE(h.pwrite(dev, &hi, 1, kConfig + 5) == 1);
  CHECK(irq_state(h, dev).virq_disabled);
  const u8 line = 0x0b;
  REQUIRE(h.pwrite(dev, &line, 1, kConfig + 0x3c) == 1);
  CHECK(irq_state(h, dev).virq_disabled);
  // INTx enabled while the bit is set starts masked.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 0) == 0);
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(e.fd())}) == 0);
  CHECK(irq_state(h, dev).intx_masked);
}

TEST_CASE("INTx unmask irqfd: signalling it unmasks INTx", "[irqs][intx][irqfd]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  EventFd trigger, unmask, other;
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(trigger.fd())}) == 0);
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(unmask.fd())}, kUnmask) == 0);
  CHECK(irq_state(h, dev).unmask_irqfd);
  // fd errors come before EBUSY.
  CHECK(set_eventfd(h, dev, kIntx, 0, {9999}, kUnmask) == EBADF);
  CHECK(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd()}, kUnmask) == EINVAL);
  CHECK(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(other.fd())}, kUnmask) == EBUSY);
  CHECK(raise_irq(d, kIntx));
  CHECK(trigger.take() == 1);
  CHECK(irq_state(h, dev).intx_masked);
  unmask.signal();
  CHECK(eventually([&] { return !irq_state(h, dev).intx_masked; }));
  CHECK(unmask.take() == 0);  // consumed by the irqfd
  // An interrupt that arrives while masked is sent when the irqfd unmasks.
  CHECK(raise_irq(d, kIntx));
  CHECK(trigger.take() == 1);
  CHECK_FALSE(raise_irq(d, kIntx));
  unmask.signal();
  CHECK(eventually([&] { return trigger.take() == 1; }));
  // fd -1 removes the irqfd; then signalling it does nothing.
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {-1}, kUnmask) == 0);
  CHECK_FALSE(irq_state(h, dev).unmask_irqfd);
  unmask.signal();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(irq_state(h, dev).intx_masked);
  CHECK(unmask.take() == 1);
  // Disabling INTx removes the irqfd too.
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(unmask.fd())}, kUnmask) == 0);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 0) == 0);
  CHECK_FALSE(irq_state(h, dev).unmask_irqfd);
}

// ---- MSI / MSI-X -------------------------------------------------------------------------------

TEST_CASE("MSI and MSI-X counts come from the config space capabilities", "[irqs][msi]") {
  Harness h;
  int fd = -1;
  const int plain = bound_device(h, "vfio/devices/vfio1", &fd);
  CHECK(irq_info_count(h, plain, kMsi) == 0);
  CHECK(irq_info_count(h, plain, kMsix) == 0);
  add_capabilities(h, true);
  int fd2 = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd2);
  CHECK(irq_info_count(h, dev, kIntx) == 1);
  CHECK(irq_info_count(h, dev, kMsi) == 4);
  CHECK(irq_info_count(h, dev, kMsix) == 8);
  CHECK(irq_info_count(h, dev, kErr) == 1);  // a PCI Express device has the error IRQ
  CHECK(irq_info_count(h, dev, kReq) == 1);
}

TEST_CASE("SET_IRQS MSI: enable vectors, loopback, raise, disable", "[irqs][msi]") {
  Harness h;
  add_capabilities(h);
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  EventFd v0, v1;
  CHECK(set_eventfd(h, dev, kMsi, 0, {1, 2, 3, 4, 5}) == EINVAL);  // 4 vectors
  // Triggers need MSI enabled first.
  CHECK(set_irqs(h, dev, kNone | kTrigger, kMsi, 0, 1) == EINVAL);
  REQUIRE(set_eventfd(h, dev, kMsi, 0, {h.foreign_fd(v0.fd()), h.foreign_fd(v1.fd())}) == 0);
  auto s = irq_state(h, dev);
  CHECK(s.irq_type == kMsi);
  CHECK(s.vectors == 2);
  CHECK(s.triggers == 2);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kMsi, 0, 2) == 0);
  CHECK(v0.take() == 1);
  CHECK(v1.take() == 1);
  REQUIRE(set_irqs(h, dev, kBool | kTrigger, kMsi, 0, 2, {0, 1}) == 0);
  CHECK(v0.take() == 0);
  CHECK(v1.take() == 1);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kMsi, 2, 2) == 0);  // no eventfds there: nothing
  CHECK(raise_irq(d, kMsi, 1));
  CHECK(v1.take() == 1);
  CHECK_FALSE(raise_irq(d, kMsi, 2));
  CHECK_FALSE(raise_irq(d, kMsix, 0));
  CHECK_FALSE(raise_irq(d, kIntx));
  // INTx and MSI-X cannot come while MSI is on.
  CHECK(set_eventfd(h, dev, kIntx, 0, {-1}) == EINVAL);
  CHECK(set_eventfd(h, dev, kIntx, 0, {9999}) == EINVAL);  // the state before the fd
  CHECK(set_eventfd(h, dev, kMsix, 0, {-1}) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kMsix, 0, 0) == EINVAL);
  // Vectors past the two enabled are EINVAL for MSI; -1 for one of them is fine.
  CHECK(set_eventfd(h, dev, kMsi, 2, {h.foreign_fd(v0.fd())}) == EINVAL);
  REQUIRE(set_eventfd(h, dev, kMsi, 3, {-1}) == 0);
  // Vector 1 off, then back with the other eventfd.
  REQUIRE(set_eventfd(h, dev, kMsi, 1, {-1}) == 0);
  CHECK(irq_state(h, dev).triggers == 1);
  REQUIRE(set_eventfd(h, dev, kMsi, 1, {h.foreign_fd(v0.fd())}) == 0);
  CHECK(raise_irq(d, kMsi, 1));
  CHECK(v0.take() == 1);
  // Disable.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kMsi, 0, 0) == 0);
  s = irq_state(h, dev);
  CHECK(s.irq_type == VFIO_PCI_NUM_IRQS);
  CHECK(s.triggers == 0);
  CHECK_FALSE(raise_irq(d, kMsi, 0));
}

TEST_CASE("SET_IRQS MSI: a failing vector undoes the block", "[irqs][msi]") {
  Harness h;
  add_capabilities(h);
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  EventFd a, b;
  const int fa = h.foreign_fd(a.fd());
  const int fb = h.foreign_fd(b.fd());
  // Enabling with a bad fd in the block: MSI is not left enabled.
  CHECK(set_eventfd(h, dev, kMsi, 0, {fa, 9999, fb}) == EBADF);
  CHECK(irq_state(h, dev).irq_type == VFIO_PCI_NUM_IRQS);
  CHECK(irq_state(h, dev).triggers == 0);
  CHECK(set_eventfd(h, dev, kMsi, 0, {fa, h.foreign_fd()}) == EINVAL);
  CHECK(irq_state(h, dev).irq_type == VFIO_PCI_NUM_IRQS);
  // Enabled with 0 vectors: pci_alloc_irq_vectors' ERANGE.
  CHECK(set_irqs(h, dev, kEventfd | kTrigger, kMsi, 0, 0) == ERANGE);
  // With MSI on, a failure disables the vectors from start to the failing one, even those
  // that were set before; MSI stays on.
  REQUIRE(set_eventfd(h, dev, kMsi, 0, {fa, fb, -1, fa}) == 0);
  CHECK(irq_state(h, dev).triggers == 3);
  CHECK(set_eventfd(h, dev, kMsi, 1, {fb, 9999}) == EBADF);
  auto s = irq_state(h, dev);
  CHECK(s.irq_type == kMsi);
  CHECK(s.triggers == 2);  // vectors 0 and 3
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kMsi, 0, 4) == 0);
  CHECK(a.take() == 2);
  CHECK(b.take() == 0);
}

TEST_CASE("SET_IRQS MSI-X: vectors past those enabled are added on demand", "[irqs][msi]") {
  Harness h;
  add_capabilities(h);
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  EventFd a, b;
  REQUIRE(set_eventfd(h, dev, kMsix, 0, {h.foreign_fd(a.fd())}) == 0);
  CHECK(irq_state(h, dev).vectors == 1);
  REQUIRE(set_eventfd(h, dev, kMsix, 7, {h.foreign_fd(b.fd())}) == 0);
  CHECK(raise_irq(d, kMsix, 7));
  CHECK(b.take() == 1);
  CHECK(set_eventfd(h, dev, kMsix, 8, {-1}) == EINVAL);  // 8 vectors
  // start + count wraps around to 0: the overflow check catches it.
  CHECK(set_irqs(h, dev, kNone | kTrigger, kMsix, 2, 0xfffffffe) == EINVAL);
  CHECK(set_eventfd(h, dev, kMsi, 0, {-1}) == EINVAL);   // MSI-X is on
  // A start > 0 with count 0 enables MSI-X without a trigger.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kMsix, 0, 0) == 0);
  REQUIRE(set_irqs(h, dev, kEventfd | kTrigger, kMsix, 2, 0) == 0);
  CHECK(irq_state(h, dev).irq_type == kMsix);
  CHECK(irq_state(h, dev).vectors == 2);
}

// ---- ERR / REQ ---------------------------------------------------------------------------------

TEST_CASE("SET_IRQS REQ: the request eventfd", "[irqs][req]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  EventFd e;
  // DATA_NONE without an eventfd set, and BOOL/EVENTFD with count 0, are EINVAL.
  CHECK(set_irqs(h, dev, kNone | kTrigger, kReq, 0, 1) == EINVAL);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kReq, 0, 0) == EINVAL);
  CHECK(set_irqs(h, dev, kBool | kTrigger, kReq, 0, 0) == EINVAL);
  CHECK(set_irqs(h, dev, kEventfd | kTrigger, kReq, 0, 0) == EINVAL);
  CHECK(set_eventfd(h, dev, kReq, 0, {9999}) == EBADF);
  CHECK(set_eventfd(h, dev, kReq, 0, {h.foreign_fd()}) == EINVAL);
  REQUIRE(set_irqs(h, dev, kBool | kTrigger, kReq, 0, 1, {1}) == 0);  // no eventfd: nothing
  REQUIRE(set_eventfd(h, dev, kReq, 0, {h.foreign_fd(e.fd())}) == 0);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kReq, 0, 1) == 0);
  REQUIRE(set_irqs(h, dev, kBool | kTrigger, kReq, 0, 1, {1}) == 0);
  REQUIRE(set_irqs(h, dev, kBool | kTrigger, kReq, 0, 1, {0}) == 0);
  CHECK(e.take() == 2);
  CHECK(raise_irq(d, kReq));
  CHECK(e.take() == 1);
  // fd < -1 leaves it, -1 removes it; DATA_NONE with count 0 removes it too.
  REQUIRE(set_eventfd(h, dev, kReq, 0, {-2}) == 0);
  CHECK(irq_state(h, dev).triggers == 1);
  REQUIRE(set_eventfd(h, dev, kReq, 0, {-1}) == 0);
  CHECK(irq_state(h, dev).triggers == 0);
  CHECK_FALSE(raise_irq(d, kReq));
  REQUIRE(set_eventfd(h, dev, kReq, 0, {h.foreign_fd(e.fd())}) == 0);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kReq, 0, 0) == 0);
  CHECK(irq_state(h, dev).triggers == 0);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kReq, 0, 1) == EINVAL);
  // REQ does not care which of INTx/MSI is on.
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {-1}) == 0);
  REQUIRE(set_eventfd(h, dev, kReq, 0, {h.foreign_fd(e.fd())}) == 0);
}

TEST_CASE("SET_IRQS ERR: only a PCI Express device has it", "[irqs][err]") {
  Harness h;
  add_capabilities(h, true);
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  EventFd e;
  CHECK(set_irqs(h, dev, kNone | kMask, kErr, 0, 1) == ENOTTY);
  CHECK(set_irqs(h, dev, kNone | kTrigger, kErr, 0, 1) == EINVAL);  // no eventfd yet
  REQUIRE(set_eventfd(h, dev, kErr, 0, {h.foreign_fd(e.fd())}) == 0);
  CHECK(raise_irq(device(h), kErr));
  CHECK(e.take() == 1);
}

// ---- RESET and close ---------------------------------------------------------------------------

TEST_CASE("SET_IRQS: RESET keeps the interrupts, the last close tears them down",
          "[irqs][close]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  EventFd intx, req, unmask;
  const int base = open_eventfds();
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(intx.fd())}) == 0);
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(unmask.fd())}, kUnmask) == 0);
  REQUIRE(set_eventfd(h, dev, kReq, 0, {h.foreign_fd(req.fd())}) == 0);
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_RESET) == 0);
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(intx.take() == 1);
  auto irqs = static_cast<core::DeviceFile&>(*h.file(dev)).irqs;
  // 3 harness copies, 3 core copies, and the unmask irqfd's own stop eventfd.
  CHECK(open_eventfds() == base + 7);
  REQUIRE(h.close(dev) == 0);
  auto s = irqs->state();
  CHECK(s.closed);
  CHECK(s.irq_type == VFIO_PCI_NUM_IRQS);
  CHECK(s.triggers == 0);
  CHECK_FALSE(s.unmask_irqfd);
  CHECK(open_eventfds() == base + 3);
  CHECK_FALSE(raise_irq(d, kIntx));
  CHECK_FALSE(raise_irq(d, kReq));
  CHECK(req.take() == 0);
  // Opened again, the device starts with nothing enabled.
  const int again = h.open("vfio/devices/vfio0");
  REQUIRE(bind(h, again, fd) == 0);
  CHECK(irq_state(h, again).irq_type == VFIO_PCI_NUM_IRQS);
  CHECK_FALSE(irq_state(h, again).closed);
  CHECK(set_irqs(h, again, kNone | kTrigger, kReq, 0, 1) == EINVAL);
}

TEST_CASE("SET_IRQS: device fds obtained through the group share the device's interrupts",
          "[irqs][close][grouppath]") {
  Harness h;
  const int g = h.open("vfio/1");
  const int c = h.open("vfio/vfio");
  REQUIRE(h.ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  auto open_through_group = [&] {
    const int dev = h.open("vfio/devices/vfio0");
    REQUIRE(h.ioctl(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == 0);
    return dev;
  };
  const int d1 = open_through_group();
  const int d2 = open_through_group();
  EventFd e;
  REQUIRE(set_eventfd(h, d1, kIntx, 0, {h.foreign_fd(e.fd())}) == 0);
  REQUIRE(set_irqs(h, d2, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(e.take() == 1);
  // Closing one keeps the device open; closing the last closes it.
  REQUIRE(h.close(d1) == 0);
  REQUIRE(set_irqs(h, d2, kNone | kTrigger, kIntx, 0, 1) == 0);
  CHECK(e.take() == 1);
  CHECK(raise_irq(device(h), kIntx));
  CHECK(e.take() == 1);
  REQUIRE(h.close(d2) == 0);
  CHECK_FALSE(raise_irq(device(h), kIntx));
}

TEST_CASE("a device model's interrupt: MSI-X when enabled, else INTx", "[irqs][model]") {
  // core::FunctionInterruptSink: what the I/OAT engine raises reaches the program through the
  // interrupt type the function is in, as a PCI function without MSI-X enabled asserts its pin
  // (Linux's ioat driver falls back to INTx).
  Harness h;
  add_capabilities(h);
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = device(h);
  core::FunctionInterruptSink sink(d);
  EventFd intx, msix;
  sink.msix(0);  // nothing enabled: nobody hears it
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(intx.fd())}) == 0);
  sink.msix(0);
  CHECK(intx.take() == 1);
  CHECK(irq_state(h, dev).intx_masked);  // automasked until the program unmasks
  sink.msix(3);  // the vector means nothing to INTx: one pin, and it is masked
  CHECK(intx.take() == 0);
  CHECK(irq_state(h, dev).intx_pending);
  REQUIRE(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == 0);
  CHECK(intx.take() == 1);
  // MSI-X on (INTx off with it): the vector's eventfd, never INTx.
  REQUIRE(set_irqs(h, dev, kNone | kTrigger, kIntx, 0, 0) == 0);
  REQUIRE(set_eventfd(h, dev, kMsix, 0, {h.foreign_fd(msix.fd())}) == 0);
  sink.msix(0);
  CHECK(msix.take() == 1);
  sink.msix(1);  // a vector without an eventfd: lost, as an MSI-X message to nowhere
  CHECK(msix.take() == 0);
  CHECK(intx.take() == 0);
}
