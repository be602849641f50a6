// Helpers for the VFIO_DEVICE_SET_IRQS and VFIO_DEVICE_FEATURE tests: an eventfd of the test
// process, SET_IRQS with its data built from a list, and the device's interrupt state.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>
#include <iterator>
#include <vector>

#include "core/device_irqs.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

namespace vfio_emu::test {

using core::DeviceIrqs;

constexpr u32 kIntx = VFIO_PCI_INTX_IRQ_INDEX;
constexpr u32 kMsi = VFIO_PCI_MSI_IRQ_INDEX;
constexpr u32 kMsix = VFIO_PCI_MSIX_IRQ_INDEX;
constexpr u32 kErr = VFIO_PCI_ERR_IRQ_INDEX;
constexpr u32 kReq = VFIO_PCI_REQ_IRQ_INDEX;
constexpr u32 kNone = VFIO_IRQ_SET_DATA_NONE;
constexpr u32 kBool = VFIO_IRQ_SET_DATA_BOOL;
constexpr u32 kEventfd = VFIO_IRQ_SET_DATA_EVENTFD;
constexpr u32 kMask = VFIO_IRQ_SET_ACTION_MASK;
constexpr u32 kUnmask = VFIO_IRQ_SET_ACTION_UNMASK;
constexpr u32 kTrigger = VFIO_IRQ_SET_ACTION_TRIGGER;
constexpr u64 kConfig = u64{VFIO_PCI_CONFIG_REGION_INDEX} << 40;

// An eventfd of the test process (the caller), non-blocking so that an empty one reads as 0.
class EventFd {
 public:
  EventFd() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) { REQUIRE(fd_ >= 0); }
  ~EventFd() { close(fd_); }
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;
  int fd() const { return fd_; }
  // The count, reset to 0 (0 if nothing was signalled).
  u64 take() {
    u64 v = 0;
    return read(fd_, &v, sizeof(v)) == sizeof(v) ? v : 0;
  }
  void signal() {
    const u64 one = 1;
    REQUIRE(write(fd_, &one, sizeof(one)) == sizeof(one));
  }

 private:
  int fd_;
};

// A variable-size ioctl argument: `hdr` (argsz first) then `data`; argsz is the whole buffer
// unless `argsz` is given.
template <class Header>
std::vector<u8> header_and_data(Header hdr, const std::vector<u8>& data, u32 argsz) {
  std::vector<u8> buf(sizeof(Header) + data.size());
  hdr.argsz = argsz != 0 ? argsz : static_cast<u32>(buf.size());
  std::memcpy(buf.data(), &hdr, sizeof(hdr));
  if (!data.empty()) std::memcpy(buf.data() + sizeof(hdr), data.data(), data.size());
  return buf;
}

// VFIO_DEVICE_SET_IRQS with `data` after the header; argsz is the whole buffer unless given.
inline int set_irqs(Harness& h, int dev, u32 flags, u32 index, u32 start, u32 count,
                    const std::vector<u8>& data = {}, u32 argsz = 0) {
  vfio_irq_set hdr{};
  hdr.flags = flags;
  hdr.index = index;
  hdr.start = start;
  hdr.count = count;
  std::vector<u8> buf = header_and_data(hdr, data, argsz);
  return h.fails(dev, VFIO_DEVICE_SET_IRQS, buf.data());
}

inline std::vector<u8> fds(std::initializer_list<std::int32_t> list) {
  std::vector<u8> out(list.size() * 4);
  std::memcpy(out.data(), std::data(list), out.size());
  return out;
}

inline int set_eventfd(Harness& h, int dev, u32 index, u32 start,
                       std::initializer_list<std::int32_t> l, u32 action = kTrigger) {
  return set_irqs(h, dev, kEventfd | action, index, start, static_cast<u32>(l.size()), fds(l));
}

inline DeviceIrqs::State irq_state(Harness& h, int dev) {
  auto& df = static_cast<core::DeviceFile&>(*h.file(dev));
  REQUIRE(df.irqs != nullptr);
  return df.irqs->state();
}

}  // namespace vfio_emu::test
