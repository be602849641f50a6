// VFIO_DEVICE_FEATURE on a bound device: vfio_ioctl_device_feature's generic checks in Linux's
// order, the features a vfio-pci device without migration, DMA logging, SR-IOV or bus-master
// control answers ENOTTY for, and runtime low power (LOW_POWER_ENTRY, _WITH_WAKEUP, _EXIT) with
// vfio_check_feature's rules, the wake eventfd, and INTx masked while the device sleeps.
#include <sys/mman.h>

#include <cstring>
#include <vector>

#include "tests/unit/iommufd/device_irq_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;

namespace {

constexpr u32 kGet = VFIO_DEVICE_FEATURE_GET;
constexpr u32 kSet = VFIO_DEVICE_FEATURE_SET;
constexpr u32 kProbe = VFIO_DEVICE_FEATURE_PROBE;
constexpr u32 kEntry = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
constexpr u32 kEntryWakeup = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
constexpr u32 kExit = VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;

// VFIO_DEVICE_FEATURE with `data` after the header; argsz is the whole buffer unless given.
int feature(Harness& h, int dev, u32 flags, const std::vector<u8>& data = {}, u32 argsz = 0) {
  vfio_device_feature f{};
  f.flags = flags;
  std::vector<u8> buf = header_and_data(f, data, argsz);
  return h.fails(dev, VFIO_DEVICE_FEATURE, buf.data());
}

std::vector<u8> s32(std::int32_t v) { return fds({v}); }

DeviceIrqs::State state(Harness& h, int dev) { return irq_state(h, dev); }

int get_info(Harness& h, int dev) {
  vfio_device_info info{};
  info.argsz = sizeof(info);
  return h.fails(dev, VFIO_DEVICE_GET_INFO, &info);
}

}  // namespace

TEST_CASE("FEATURE: the generic checks, in Linux's order", "[feature]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  CHECK(h.fails(dev, VFIO_DEVICE_FEATURE, u64{0x10}) == EFAULT);
  // argsz, unknown flags, GET with SET: EINVAL, even for a feature that would be ENOTTY.
  CHECK(feature(h, dev, kGet | VFIO_DEVICE_FEATURE_MIGRATION, {}, 7) == EINVAL);
  CHECK(feature(h, dev, kGet | VFIO_DEVICE_FEATURE_MIGRATION | (1u << 19)) == EINVAL);
  CHECK(feature(h, dev, kSet | (1u << 31)) == EINVAL);
  CHECK(feature(h, dev, kGet | kSet | VFIO_DEVICE_FEATURE_MIGRATION) == EINVAL);
  CHECK(feature(h, dev, kGet | kSet | 0x1234) == EINVAL);
  // GET and SET together are fine with PROBE; then the feature decides.
  CHECK(feature(h, dev, kGet | kSet | kProbe | VFIO_DEVICE_FEATURE_MIGRATION) == ENOTTY);
  CHECK(feature(h, dev, kGet | kSet | kProbe | 0x1234) == ENOTTY);
}

TEST_CASE("FEATURE: what this device does not have is ENOTTY", "[feature]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  for (u32 id : {VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, VFIO_DEVICE_FEATURE_MIGRATION,
                 VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
                 VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
                 VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_BUS_MASTER,
                 VFIO_DEVICE_FEATURE_DMA_BUF, u32{0x100}, VFIO_DEVICE_FEATURE_MASK}) {
    INFO("feature " << id);
    // Whatever the operation and however little data: the feature check comes first.
    CHECK(feature(h, dev, kProbe | kSet | id) == ENOTTY);
    CHECK(feature(h, dev, kGet | id) == ENOTTY);
    CHECK(feature(h, dev, kSet | id) == ENOTTY);
    CHECK(feature(h, dev, id) == ENOTTY);
  }
  // MIG_PRECOPY_INFOv2 is vfio_main.c's own: EINVAL without pre-copy migration, before the
  // operation is checked (Linux 7.3).
  for (u32 ops : {kProbe | kSet, kGet, kSet, u32{0}})
    CHECK(feature(h, dev, ops | VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2) == EINVAL);
}

TEST_CASE("FEATURE LOW_POWER: vfio_check_feature's rules", "[feature][lowpower]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  for (u32 id : {kEntry, kEntryWakeup, kExit}) {
    INFO("feature " << id);
    CHECK(feature(h, dev, kGet | id) == EINVAL);          // SET only
    CHECK(feature(h, dev, kProbe | kGet | id) == EINVAL);
    CHECK(feature(h, dev, kProbe | kGet | kSet | id) == EINVAL);
    CHECK(feature(h, dev, id) == EINVAL);                 // neither GET nor SET
    CHECK(feature(h, dev, kProbe | kSet | id) == 0);      // supported
    CHECK(feature(h, dev, kProbe | id) == 0);
  }
  CHECK_FALSE(state(h, dev).low_power);  // a PROBE changes nothing
  // ENTRY_WITH_WAKEUP needs its 4 data bytes, after the PROBE check.
  CHECK(feature(h, dev, kSet | kEntryWakeup) == EINVAL);
  CHECK(feature(h, dev, kSet | kEntryWakeup, {0, 0, 0}) == EINVAL);
  CHECK(feature(h, dev, kProbe | kSet | kEntryWakeup, {}) == 0);
}

TEST_CASE("FEATURE LOW_POWER_ENTRY and EXIT", "[feature][lowpower]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  REQUIRE(feature(h, dev, kSet | kEntry) == 0);
  CHECK(state(h, dev).low_power);
  // Accesses wake the device for their duration only: low power stays engaged.
  REQUIRE(get_info(h, dev) == 0);
  CHECK(state(h, dev).low_power);
  CHECK(feature(h, dev, kSet | kEntry) == EINVAL);
  REQUIRE(feature(h, dev, kSet | kExit) == 0);
  CHECK_FALSE(state(h, dev).low_power);
  REQUIRE(feature(h, dev, kSet | kExit) == 0);  // exit when not engaged is fine
  REQUIRE(feature(h, dev, kSet | kEntry) == 0);
  CHECK(state(h, dev).low_power);
}

TEST_CASE("FEATURE LOW_POWER_ENTRY_WITH_WAKEUP: the eventfd, and the access that wakes",
          "[feature][lowpower]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  EventFd wake;
  const int wake_fd = h.foreign_fd(wake.fd());
  // The data is read after the size checks: an unreadable one is EFAULT.
  u8* pages = static_cast<u8*>(
      mmap(nullptr, 2 * K4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(pages != MAP_FAILED);
  REQUIRE(munmap(pages + K4, K4) == 0);
  auto* f = reinterpret_cast<vfio_device_feature*>(pages + K4 - sizeof(vfio_device_feature));
  *f = {12, kSet | kEntryWakeup};
  CHECK(h.fails(dev, VFIO_DEVICE_FEATURE, f) == EFAULT);
  munmap(pages, K4);
  CHECK(feature(h, dev, kSet | kEntryWakeup, s32(-1)) == EINVAL);
  CHECK(feature(h, dev, kSet | kEntryWakeup, s32(9999)) == EBADF);
  CHECK(feature(h, dev, kSet | kEntryWakeup, s32(h.foreign_fd())) == EINVAL);
  CHECK_FALSE(state(h, dev).low_power);
  REQUIRE(feature(h, dev, kSet | kEntryWakeup, s32(wake_fd)) == 0);
  CHECK(state(h, dev).low_power);
  CHECK(wake.take() == 0);
  // The next access wakes the device: the eventfd is signalled and low power is over.
  REQUIRE(get_info(h, dev) == 0);
  CHECK(wake.take() == 1);
  CHECK_FALSE(state(h, dev).low_power);
  CHECK(state(h, dev).triggers == 0);
  REQUIRE(get_info(h, dev) == 0);
  CHECK(wake.take() == 0);
  // A config space read wakes it too.
  REQUIRE(feature(h, dev, kSet | kEntryWakeup, s32(wake_fd)) == 0);
  u32 id = 0;
  REQUIRE(h.pread(dev, &id, 4, kConfig) == 4);
  CHECK(wake.take() == 1);
  // Engaged without a wake eventfd, the fd is checked before "already engaged".
  REQUIRE(feature(h, dev, kSet | kEntry) == 0);
  CHECK(feature(h, dev, kSet | kEntryWakeup, s32(9999)) == EBADF);
  CHECK(feature(h, dev, kSet | kEntryWakeup, s32(wake_fd)) == EINVAL);
  REQUIRE(feature(h, dev, kSet | kExit) == 0);
  // A second entry with a wake eventfd: the ioctl itself wakes the device first.
  REQUIRE(feature(h, dev, kSet | kEntryWakeup, s32(wake_fd)) == 0);
  REQUIRE(feature(h, dev, kSet | kEntryWakeup, s32(wake_fd)) == 0);
  CHECK(wake.take() == 1);
  CHECK(state(h, dev).low_power);
  // Closing the device leaves low power without signalling.
  auto irqs = static_cast<core::DeviceFile&>(*h.file(dev)).irqs;
  REQUIRE(h.close(dev) == 0);
  CHECK_FALSE(irqs->state().low_power);
  CHECK(irqs->state().triggers == 0);
  CHECK(wake.take() == 0);
}

TEST_CASE("FEATURE LOW_POWER: INTx is masked while the device sleeps", "[feature][lowpower]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  core::Device& d = *h.emu.device_by_cdev(0);
  EventFd intx;
  REQUIRE(set_eventfd(h, dev, kIntx, 0, {h.foreign_fd(intx.fd())}) == 0);
  REQUIRE(feature(h, dev, kSet | kEntry) == 0);
  CHECK(state(h, dev).intx_masked);
  CHECK_FALSE(core::raise_irq(d, kIntx));
  // An access resumes the device: INTx is unmasked and what waited is sent; afterwards the
  // device sleeps again.
  REQUIRE(get_info(h, dev) == 0);
  CHECK(intx.take() == 1);
  CHECK(state(h, dev).intx_masked);
  // The interrupt sent on resume left INTx masked, as any sent INTx does, and leaving low power
  // does not unmask it: the user does, once it has served it.
  REQUIRE(feature(h, dev, kSet | kExit) == 0);
  CHECK(state(h, dev).intx_masked);
  REQUIRE(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == 0);
  CHECK_FALSE(state(h, dev).intx_masked);
  CHECK(core::raise_irq(d, kIntx));
  CHECK(intx.take() == 1);
  // Entering low power with INTx unmasked masks it; leaving unmasks it again.
  REQUIRE(set_irqs(h, dev, kNone | kUnmask, kIntx, 0, 1) == 0);
  REQUIRE(feature(h, dev, kSet | kEntry) == 0);
  CHECK(state(h, dev).intx_masked);
  REQUIRE(feature(h, dev, kSet | kExit) == 0);
  CHECK_FALSE(state(h, dev).intx_masked);
}
