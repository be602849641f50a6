// VFIO_DEVICE_SET_IRQS and the interrupt state behind it. The order of checks and the errno of
// each follow drivers/vfio/vfio_main.c vfio_set_irqs_validate_and_prepare and
// drivers/vfio/pci/vfio_pci_intrs.c vfio_pci_set_irqs_ioctl (Linux 6.18).
#include "core/device_irqs.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <span>
#include <thread>
#include <unordered_map>

#include "core/device.h"
#include "core/command.h"
#include "core/emulator.h"
#include "core/iommufd/user_copy.h"
#include "core/log.h"
#include "core/reject.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::core {

using namespace uapi;

namespace {

// PCI config space (include/uapi/linux/pci_regs.h).
constexpr u32 kPciStatus = 0x06;
constexpr u8 kPciStatusCapList = 0x10;
constexpr u32 kPciCapabilityList = 0x34;
constexpr u32 kPciInterruptPin = 0x3d;
constexpr u8 kPciCapIdMsi = 0x05;
constexpr u8 kPciCapIdMsix = 0x11;
constexpr u16 kPciMsiFlagsQmask = 0x000e;   // Multiple Message Capable
constexpr u16 kPciMsixFlagsQsize = 0x07ff;  // table size - 1

// pci_find_capability on the emulated config space: the offset of capability `id`, or 0.
u32 find_capability(std::span<const u8> cfg, u8 id) {
  if (!(cfg[kPciStatus] & kPciStatusCapList)) return 0;
  u32 pos = cfg[kPciCapabilityList];
  for (int ttl = 48; ttl > 0 && pos >= 0x40; --ttl) {  // __pci_find_next_cap_ttl
    pos &= ~3u;
    if (pos + 1 >= cfg.size()) return 0;
    const u8 cap = cfg[pos];
    if (cap == 0xff) return 0;
    if (cap == id) return pos;
    pos = cfg[pos + 1];
  }
  return 0;
}

u16 config16(std::span<const u8> cfg, u32 pos) {
  u16 v = 0;
  if (pos + 2 > cfg.size()) return v;
  std::memcpy(&v, &cfg[pos], 2);
  return v;
}

// eventfd_signal(): adds 1 to the counter. A counter that cannot take it (2^64 - 2) is left
// alone, as the kernel saturates it, rather than block the daemon in write().
bool signal_eventfd(const UniqueFd& fd) {
  if (!fd) return false;
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) return false;
  const u64 one = 1;
  return ::write(fd.get(), &one, sizeof(one)) == sizeof(one);
}

std::string_view irq_index_name(u32 index) {
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX: return "INTx";
    case VFIO_PCI_MSI_IRQ_INDEX: return "MSI";
    case VFIO_PCI_MSIX_IRQ_INDEX: return "MSI-X";
    case VFIO_PCI_ERR_IRQ_INDEX: return "ERR";
    case VFIO_PCI_REQ_IRQ_INDEX: return "REQ";
    default: return "none";
  }
}

// Devices open now and their interrupt state: what raise_irq() finds a device's state through.
// The files that have the device open hold the state; an entry whose state is gone is stale.
std::mutex g_open_mu;
std::unordered_map<const Device*, std::weak_ptr<DeviceIrqs>> g_open;

}  // namespace

// ---- the INTx unmask irqfd (vfio_virqfd_enable) ------------------------------------------------

// A thread that waits for the user to signal the unmask eventfd, consumes the count and unmasks
// INTx, as the kernel's virqfd wake-up does.
class UnmaskIrqfd {
 public:
  UnmaskIrqfd(DeviceIrqs* owner, UniqueFd efd)
      : owner_(owner), efd_(std::move(efd)), stop_(::eventfd(0, EFD_CLOEXEC)) {
    thread_ = std::thread([this] { run(); });
  }
  ~UnmaskIrqfd() {
    const u64 one = 1;
    if (::write(stop_.get(), &one, sizeof(one)) != sizeof(one))
      logger("core")->error("unmask irqfd: cannot stop its thread");
    thread_.join();
  }
  UnmaskIrqfd(const UnmaskIrqfd&) = delete;
  UnmaskIrqfd& operator=(const UnmaskIrqfd&) = delete;

 private:
  void run() {
    pollfd p[2] = {{efd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    for (;;) {
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents != 0) return;
      if (p[0].revents & POLLIN) {
        // A read that cannot block: the eventfd's description is the caller's too, and someone
        // else may have emptied it since poll().
        u64 count = 0;
        iovec iov{&count, sizeof(count)};
        ssize_t n = ::preadv2(efd_.get(), &iov, 1, -1, RWF_NOWAIT);
        if (n < 0 && errno == EOPNOTSUPP)  // a kernel without RWF_NOWAIT for eventfds
          n = ::read(efd_.get(), &count, sizeof(count));
        if (n == sizeof(count)) {
          owner_->unmask_irqfd_fired(this);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          logger("core")->warn("unmask irqfd: reading the eventfd failed (errno {})", errno);
          return;
        }
      } else if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        return;
      }
    }
  }

  DeviceIrqs* owner_;
  UniqueFd efd_;
  UniqueFd stop_;
  std::thread thread_;
};

// ---- config space facts ------------------------------------------------------------------------

int msix_bar_locked(const Device& dev) {
  const u32 pos = find_capability(dev.config, kPciCapIdMsix);
  if (pos == 0 || pos + 8 > dev.config.size()) return -1;
  u32 table;
  std::memcpy(&table, &dev.config[pos + 4], 4);
  return static_cast<int>(table & 0x7);  // PCI_MSIX_TABLE_BIR
}

u32 irq_count(Device& dev, u32 index) {
  std::lock_guard lock(dev.regions_mu);
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      return dev.config[kPciInterruptPin] != 0 ? 1 : 0;
    case VFIO_PCI_MSI_IRQ_INDEX: {
      const u32 pos = find_capability(dev.config, kPciCapIdMsi);
      if (pos == 0) return 0;
      return 1u << ((config16(dev.config, pos + 2) & kPciMsiFlagsQmask) >> 1);
    }
    case VFIO_PCI_MSIX_IRQ_INDEX: {
      const u32 pos = find_capability(dev.config, kPciCapIdMsix);
      if (pos == 0) return 0;
      return (config16(dev.config, pos + 2) & kPciMsixFlagsQsize) + 1u;
    }
    case VFIO_PCI_ERR_IRQ_INDEX:  // every device since Linux 7.x (6.12: PCI Express only)
      return 1;
    case VFIO_PCI_REQ_IRQ_INDEX:
      return 1;
    default:
      return 0;
  }
}

Result<UniqueFd> fetch_eventfd(IoctlCall& call, int fd) {
  return call.fds->take_eventfd(fd);
}

// ---- DeviceIrqs --------------------------------------------------------------------------------

DeviceIrqs::DeviceIrqs(std::string bdf, bool virq_disabled)
    : bdf_(std::move(bdf)), irq_type_(VFIO_PCI_NUM_IRQS), virq_disabled_(virq_disabled) {}

DeviceIrqs::~DeviceIrqs() { close_device(); }

bool DeviceIrqs::is_intx() const { return irq_type_ == VFIO_PCI_INTX_IRQ_INDEX; }

bool DeviceIrqs::is_irq_none() const {
  return irq_type_ != VFIO_PCI_INTX_IRQ_INDEX && irq_type_ != VFIO_PCI_MSI_IRQ_INDEX &&
         irq_type_ != VFIO_PCI_MSIX_IRQ_INDEX;
}

Status DeviceIrqs::set_irqs(IoctlCall& call, u32 flags, u32 index, u32 start, u32 count,
                            const std::vector<u8>& data, std::vector<EventfdArg>& fds) {
  std::vector<std::unique_ptr<UnmaskIrqfd>> retired;  // stopped after mu_ is released
  std::lock_guard lock(mu_);
  Action action = nullptr;
  const u32 act = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      if (act == VFIO_IRQ_SET_ACTION_MASK) action = &DeviceIrqs::set_intx_mask;
      if (act == VFIO_IRQ_SET_ACTION_UNMASK) action = &DeviceIrqs::set_intx_unmask;
      if (act == VFIO_IRQ_SET_ACTION_TRIGGER) action = &DeviceIrqs::set_intx_trigger;
      break;
    case VFIO_PCI_MSI_IRQ_INDEX:
    case VFIO_PCI_MSIX_IRQ_INDEX:
      // MASK/UNMASK: "XXX Need masking support exported".
      if (act == VFIO_IRQ_SET_ACTION_TRIGGER) action = &DeviceIrqs::set_msi_trigger;
      break;
    case VFIO_PCI_ERR_IRQ_INDEX:
      if (act == VFIO_IRQ_SET_ACTION_TRIGGER) action = &DeviceIrqs::set_err_trigger;
      break;
    case VFIO_PCI_REQ_IRQ_INDEX:
      if (act == VFIO_IRQ_SET_ACTION_TRIGGER) action = &DeviceIrqs::set_req_trigger;
      break;
  }
  Status st = action == nullptr
                  ? Status{reject(call, ENOTTY, "{} index {:#x} has no action {:#x}",
                                  irq_index_name(index), index, act)}
                  : (this->*action)(call, index, start, count, flags, data, fds);
  retired.swap(retired_);
  return st;
}

// ---- INTx --------------------------------------------------------------------------------------

void DeviceIrqs::intx_enable(UniqueFd trigger) {
  // The masked state starts as the INTx-disable bit says (vfio_intx_enable).
  intx_masked_ = virq_disabled_;
  intx_pending_ = false;
  intx_trigger_ = std::move(trigger);
  irq_type_ = VFIO_PCI_INTX_IRQ_INDEX;
}

void DeviceIrqs::intx_disable() {
  if (intx_unmask_irqfd_) retired_.push_back(std::move(intx_unmask_irqfd_));
  intx_trigger_.reset();
  intx_masked_ = false;
  intx_pending_ = false;
  irq_type_ = VFIO_PCI_NUM_IRQS;
}

// vfio_send_intx_eventfd.
bool DeviceIrqs::intx_send() { return is_intx() && !virq_disabled_ && signal_eventfd(intx_trigger_); }

// __vfio_pci_intx_mask: true if the masked state changed.
bool DeviceIrqs::intx_mask() {
  if (!is_intx() || intx_masked_) return false;
  intx_masked_ = true;
  return true;
}

// vfio_pci_intx_unmask_handler: true if a pending interrupt is to be sent instead (INTx then
// stays masked, as pci_check_and_unmask_intx leaves an asserted line masked).
bool DeviceIrqs::intx_unmask_handler() {
  if (!is_intx() || !intx_masked_ || virq_disabled_) return false;
  if (intx_pending_) {
    intx_pending_ = false;
    return true;
  }
  intx_masked_ = false;
  return false;
}

void DeviceIrqs::intx_unmask() {
  if (intx_unmask_handler()) intx_send();
}

// What INTx MASK and UNMASK need: INTx enabled, and its one interrupt named.
Status DeviceIrqs::intx_check(IoctlCall& call, std::string_view action, u32 start, u32 count) {
  if (!is_intx() || start != 0 || count != 1)
    return reject(call, EINVAL, "INTx {}: INTx is {} (start {:#x} count {:#x})", action,
                  is_intx() ? "enabled" : "not enabled", start, count);
  return {};
}

Status DeviceIrqs::set_intx_mask(IoctlCall& call, u32, u32 start, u32 count, u32 flags,
                                 const std::vector<u8>& data, std::vector<EventfdArg>&) {
  TRY(intx_check(call, "mask", start, count));
  if (flags & VFIO_IRQ_SET_DATA_NONE) {
    intx_mask();
  } else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (data[0]) intx_mask();
  } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    return reject(call, ENOTTY, "INTx mask by eventfd is not implemented (as in Linux)");
  }
  return {};
}

Status DeviceIrqs::set_intx_unmask(IoctlCall& call, u32, u32 start, u32 count, u32 flags,
                                   const std::vector<u8>& data, std::vector<EventfdArg>& fds) {
  TRY(intx_check(call, "unmask", start, count));
  if (flags & VFIO_IRQ_SET_DATA_NONE) {
    intx_unmask();
  } else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (data[0]) intx_unmask();
  } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    EventfdArg& arg = fds[0];
    if (arg.fd < 0) {  // vfio_virqfd_disable
      if (intx_unmask_irqfd_) retired_.push_back(std::move(intx_unmask_irqfd_));
      return {};
    }
    if (!arg.file)
      return reject(call, arg.file.error(), "INTx unmask irqfd: fd {:#x} is {}", arg.fd,
                    arg.file.error() == EBADF ? "not an open fd" : "not an eventfd");
    if (intx_unmask_irqfd_)
      return reject(call, EBUSY, "INTx unmask irqfd: one is already set");
    intx_unmask_irqfd_ = std::make_unique<UnmaskIrqfd>(this, arg.file.take());
  }
  return {};
}

Status DeviceIrqs::set_intx_trigger(IoctlCall& call, u32, u32 start, u32 count, u32 flags,
                                    const std::vector<u8>& data, std::vector<EventfdArg>& fds) {
  if (is_intx() && count == 0 && (flags & VFIO_IRQ_SET_DATA_NONE)) {
    intx_disable();
    return {};
  }
  if (!(is_intx() || is_irq_none()) || start != 0 || count != 1)
    return reject(call, EINVAL, "INTx trigger: {} is enabled (start {:#x} count {:#x})",
                  irq_index_name(irq_type_), start, count);
  if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    EventfdArg& arg = fds[0];
    UniqueFd trigger;
    if (arg.fd >= 0) {
      if (!arg.file)
        return reject(call, arg.file.error(), "INTx trigger: fd {:#x} is {}", arg.fd,
                      arg.file.error() == EBADF ? "not an open fd" : "not an eventfd");
      trigger = arg.file.take();
    }
    // A negative fd enables INTx without a trigger, or removes the trigger.
    if (is_intx())
      intx_trigger_ = std::move(trigger);
    else
      intx_enable(std::move(trigger));
    return {};
  }
  if (!is_intx()) return reject(call, EINVAL, "INTx trigger: INTx is not enabled");
  if (flags & VFIO_IRQ_SET_DATA_NONE) {
    intx_send();
  } else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (data[0]) intx_send();
  }
  return {};
}

// ---- MSI / MSI-X -------------------------------------------------------------------------------

Status DeviceIrqs::msi_enable(IoctlCall& call, u32 nvec, u32 index) {
  // pci_alloc_irq_vectors(pdev, 1, nvec): the emulated device always gets what it asks for,
  // except nothing at all.
  if (nvec == 0)
    return reject(call, ERANGE, "{}: enabling 0 vectors", irq_index_name(index));
  msi_vectors_ = nvec;
  irq_type_ = index;
  return {};
}

// vfio_msi_set_vector_signal: `arg` null or a negative fd only disables the vector.
Status DeviceIrqs::msi_set_vector_signal(IoctlCall& call, u32 vector, EventfdArg* arg,
                                         bool msix) {
  msi_triggers_.erase(vector);
  if (arg == nullptr || arg->fd < 0) return {};
  // vfio_msi_alloc_irq: MSI vectors are those allocated at enable; MSI-X vectors past them are
  // allocated on demand (dynamic MSI-X, as on x86 hosts).
  if (!msix && vector >= msi_vectors_)
    return reject(call, EINVAL, "MSI vector {:#x}: only {:#x} vectors are enabled", vector,
                  msi_vectors_);
  if (!arg->file)
    return reject(call, arg->file.error(), "{} vector {:#x}: fd {:#x} is {}",
                  msix ? "MSI-X" : "MSI", vector, arg->fd,
                  arg->file.error() == EBADF ? "not an open fd" : "not an eventfd");
  msi_triggers_[vector] = arg->file.take();
  return {};
}

// vfio_msi_set_block: on an error every vector from `start` up to the failing one is disabled.
Status DeviceIrqs::msi_set_block(IoctlCall& call, u32 start, u32 count,
                                 std::vector<EventfdArg>* fds, bool msix) {
  Status st;
  u32 j = start;
  for (u32 i = 0; i < count && st; ++i, ++j)
    st = msi_set_vector_signal(call, j, fds != nullptr ? &(*fds)[i] : nullptr, msix);
  if (!st)
    for (u32 i = start; i < j; ++i) msi_triggers_.erase(i);
  return st;
}

void DeviceIrqs::msi_disable() {
  msi_triggers_.clear();
  msi_vectors_ = 0;
  irq_type_ = VFIO_PCI_NUM_IRQS;
}

Status DeviceIrqs::set_msi_trigger(IoctlCall& call, u32 index, u32 start, u32 count, u32 flags,
                                   const std::vector<u8>& data, std::vector<EventfdArg>& fds) {
  const bool msix = index == VFIO_PCI_MSIX_IRQ_INDEX;
  if (irq_type_ == index && count == 0 && (flags & VFIO_IRQ_SET_DATA_NONE)) {
    msi_disable();
    return {};
  }
  if (!(irq_type_ == index || is_irq_none()))
    return reject(call, EINVAL, "{} trigger: {} is enabled", irq_index_name(index),
                  irq_index_name(irq_type_));
  if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    if (irq_type_ == index) return msi_set_block(call, start, count, &fds, msix);
    TRY(msi_enable(call, start + count, index));
    Status st = msi_set_block(call, start, count, &fds, msix);
    if (!st) msi_disable();
    return st;
  }
  if (irq_type_ != index)
    return reject(call, EINVAL, "{} trigger: {} is not enabled", irq_index_name(index),
                  irq_index_name(index));
  for (u32 i = start; i < start + count; ++i) {
    auto it = msi_triggers_.find(i);
    if (it == msi_triggers_.end()) continue;
    if ((flags & VFIO_IRQ_SET_DATA_NONE) ||
        ((flags & VFIO_IRQ_SET_DATA_BOOL) && data[i - start] != 0))
      signal_eventfd(it->second);
  }
  return {};
}

// ---- ERR / REQ ---------------------------------------------------------------------------------

// vfio_pci_set_ctx_trigger_single. DATA_NONE and DATA_BOOL are the loopback test.
Status DeviceIrqs::set_trigger_single(IoctlCall& call, UniqueFd* trigger, u32 count, u32 flags,
                                      const std::vector<u8>& data, std::vector<EventfdArg>& fds) {
  if (flags & VFIO_IRQ_SET_DATA_NONE) {
    if (*trigger) {
      if (count != 0)
        signal_eventfd(*trigger);
      else
        trigger->reset();
      return {};
    }
  } else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (count == 0) return reject(call, EINVAL, "DATA_BOOL with count 0");
    if (data[0] && *trigger) signal_eventfd(*trigger);
    return {};
  } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    if (count == 0) return reject(call, EINVAL, "DATA_EVENTFD with count 0");
    EventfdArg& arg = fds[0];
    if (arg.fd == -1) {
      trigger->reset();
    } else if (arg.fd >= 0) {
      if (!arg.file)
        return reject(call, arg.file.error(), "fd {:#x} is {}", arg.fd,
                      arg.file.error() == EBADF ? "not an open fd" : "not an eventfd");
      *trigger = arg.file.take();
    }
    return {};
  }
  return reject(call, EINVAL, "DATA_NONE (count {:#x}) but no eventfd is set", count);
}

Status DeviceIrqs::set_err_trigger(IoctlCall& call, u32 index, u32 start, u32 count, u32 flags,
                                   const std::vector<u8>& data, std::vector<EventfdArg>& fds) {
  if (index != VFIO_PCI_ERR_IRQ_INDEX || start != 0 || count > 1)
    return reject(call, EINVAL, "ERR: start {:#x} count {:#x}", start, count);
  return set_trigger_single(call, &err_trigger_, count, flags, data, fds);
}

Status DeviceIrqs::set_req_trigger(IoctlCall& call, u32 index, u32 start, u32 count, u32 flags,
                                   const std::vector<u8>& data, std::vector<EventfdArg>& fds) {
  if (index != VFIO_PCI_REQ_IRQ_INDEX || start != 0 || count > 1)
    return reject(call, EINVAL, "REQ: start {:#x} count {:#x}", start, count);
  return set_trigger_single(call, &req_trigger_, count, flags, data, fds);
}

// ---- what the device and the config space do ---------------------------------------------------

bool DeviceIrqs::raise(u32 index, u32 vector) {
  std::lock_guard lock(mu_);
  if (closed_) return false;
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      if (!is_intx() || vector != 0) return false;
      if (intx_masked_) {  // vfio_intx_handler: not ours while masked; the line stays asserted
        intx_pending_ = true;
        return false;
      }
      intx_masked_ = true;  // automasked
      return intx_send();
    case VFIO_PCI_MSI_IRQ_INDEX:
    case VFIO_PCI_MSIX_IRQ_INDEX: {
      if (irq_type_ != index) return false;
      auto it = msi_triggers_.find(vector);
      return it != msi_triggers_.end() && signal_eventfd(it->second);
    }
    case VFIO_PCI_ERR_IRQ_INDEX:
      return vector == 0 && signal_eventfd(err_trigger_);
    case VFIO_PCI_REQ_IRQ_INDEX:
      return vector == 0 && signal_eventfd(req_trigger_);
    default:
      return false;
  }
}

void DeviceIrqs::set_virq_disabled(bool disabled) {
  std::lock_guard lock(mu_);
  if (disabled && !virq_disabled_) {
    virq_disabled_ = true;
    intx_mask();
  } else if (!disabled && virq_disabled_) {
    virq_disabled_ = false;
    intx_unmask();
  }
}

void DeviceIrqs::unmask_irqfd_fired(const UnmaskIrqfd* irqfd) {
  std::lock_guard lock(mu_);
  if (intx_unmask_irqfd_.get() != irqfd) return;  // disabled meanwhile
  intx_unmask();
}

// ---- runtime low power -------------------------------------------------------------------------

Status DeviceIrqs::low_power_entry(IoctlCall& call, UniqueFd wake) {
  std::lock_guard lock(mu_);
  if (pm_engaged_) return reject(call, EINVAL, "device {}: low power is already engaged", bdf_);
  pm_engaged_ = true;
  pm_wake_ = std::move(wake);
  return {};
}

void DeviceIrqs::pm_exit() {
  pm_engaged_ = false;
  pm_wake_.reset();
}

void DeviceIrqs::low_power_exit() {
  std::lock_guard lock(mu_);
  pm_exit();
}

void DeviceIrqs::runtime_get() {
  std::lock_guard lock(mu_);
  if (!suspended_) return;
  suspended_ = false;
  // vfio_pci_core_runtime_resume.
  if (pm_wake_) {
    signal_eventfd(pm_wake_);
    pm_exit();
  }
  if (pm_intx_masked_) {
    pm_intx_masked_ = false;
    intx_unmask();
  }
}

void DeviceIrqs::runtime_put() {
  std::lock_guard lock(mu_);
  if (!pm_engaged_ || suspended_ || closed_) return;
  // vfio_pci_core_runtime_suspend: INTx is masked while the device sleeps.
  suspended_ = true;
  pm_intx_masked_ = is_intx() && intx_mask();
}

// ---- open and close ----------------------------------------------------------------------------

void DeviceIrqs::close_device() {
  std::vector<std::unique_ptr<UnmaskIrqfd>> retired;  // stopped after mu_ is released
  std::lock_guard lock(mu_);
  pm_exit();
  suspended_ = false;
  pm_intx_masked_ = false;
  // vfio_pci_set_irqs_ioctl(DATA_NONE | ACTION_TRIGGER, irq_type, 0, 0).
  if (is_intx()) intx_disable();
  if (irq_type_ == VFIO_PCI_MSI_IRQ_INDEX || irq_type_ == VFIO_PCI_MSIX_IRQ_INDEX) msi_disable();
  virq_disabled_ = false;
  err_trigger_.reset();
  req_trigger_.reset();
  closed_ = true;
  retired.swap(retired_);
}

DeviceIrqs::State DeviceIrqs::state() {
  std::lock_guard lock(mu_);
  State s{};
  s.irq_type = irq_type_;
  s.vectors = msi_vectors_;
  s.triggers = static_cast<u32>(msi_triggers_.size()) + (intx_trigger_ ? 1 : 0) +
               (err_trigger_ ? 1 : 0) + (req_trigger_ ? 1 : 0) + (pm_wake_ ? 1 : 0);
  s.intx_masked = intx_masked_;
  s.intx_pending = intx_pending_;
  s.virq_disabled = virq_disabled_;
  s.unmask_irqfd = intx_unmask_irqfd_ != nullptr;
  s.low_power = pm_engaged_;
  s.closed = closed_;
  return s;
}

std::shared_ptr<DeviceIrqs> open_device_irqs(Device& dev) {
  std::lock_guard lock(g_open_mu);
  std::weak_ptr<DeviceIrqs>& slot = g_open[&dev];
  // A state that is still referenced (raise_irq in flight, a test) but closed is not reused.
  if (auto open = slot.lock(); open && !open->state().closed) return open;
  bool virq_disabled;
  {
    std::lock_guard regions(dev.regions_mu);
    virq_disabled = (dev.config[0x05] & 0x04) != 0;  // PCI_COMMAND_INTX_DISABLE
  }
  auto fresh = std::make_shared<DeviceIrqs>(dev.spec().bdf, virq_disabled);
  slot = fresh;
  return fresh;
}

bool raise_irq(const Device& dev, u32 index, u32 vector) {
  std::shared_ptr<DeviceIrqs> irqs;
  {
    std::lock_guard lock(g_open_mu);
    auto it = g_open.find(&dev);
    if (it == g_open.end()) return false;
    irqs = it->second.lock();
    if (!irqs) {
      g_open.erase(it);
      return false;
    }
  }
  return irqs->raise(index, vector);
}

// ---- VFIO_DEVICE_SET_IRQS ----------------------------------------------------------------------

Result<long> set_irqs_ioctl(Emulator&, File& file, IoctlCall& call) {
  DeviceFile& df = static_cast<DeviceFile&>(file);
  Device& dev = *df.device;
  constexpr u32 minsz = offsetof(vfio_irq_set, count) + 4;  // 20
  const auto hdr = call.ucmd_as<vfio_irq_set>();  // argsz >= minsz (ArgRule::kArgsz)
  call.detail = fmt::format("argsz={:#x} flags={:#x} index={:#x} start={:#x} count={:#x}",
                            hdr.argsz, hdr.flags, hdr.index, hdr.start, hdr.count);
  const u32 max = irq_count(dev, hdr.index);

  // vfio_set_irqs_validate_and_prepare.
  if (hdr.index >= VFIO_PCI_NUM_IRQS ||
      hdr.count >= std::numeric_limits<u32>::max() - hdr.start ||
      (hdr.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)))
    return reject(call, EINVAL, "argsz {:#x} flags {:#x} index {:#x} start {:#x} count {:#x}",
                  hdr.argsz, hdr.flags, hdr.index, hdr.start, hdr.count);
  if (hdr.start >= max || hdr.start + hdr.count > max)
    return reject(call, EINVAL, "{} has {:#x} interrupts: start {:#x} count {:#x}",
                  irq_index_name(hdr.index), max, hdr.start, hdr.count);
  u64 size;
  switch (hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE: size = 0; break;
    case VFIO_IRQ_SET_DATA_BOOL: size = sizeof(u8); break;
    case VFIO_IRQ_SET_DATA_EVENTFD: size = sizeof(std::int32_t); break;
    default:
      return reject(call, EINVAL, "flags {:#x}: not exactly one DATA_ type", hdr.flags);
  }
  const u64 data_size = size * hdr.count;
  if (size != 0 && u64{hdr.argsz} - minsz < data_size)
    return reject(call, EINVAL, "argsz {:#x} leaves room for {:#x} of the {:#x} data bytes",
                  hdr.argsz, u64{hdr.argsz} - minsz, data_size);

  std::vector<u8> data(data_size);
  TRY(copy_from_user(call, call.arg + minsz, data.data(), data.size()));
  // The eventfds, fetched now, before any lock; their errors are reported where Linux's
  // eventfd_ctx_fdget reports them.
  std::vector<EventfdArg> fds;
  if (hdr.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    fds.resize(hdr.count);
    for (u32 i = 0; i < hdr.count; ++i) {
      std::memcpy(&fds[i].fd, &data[u64{i} * sizeof(std::int32_t)], sizeof(std::int32_t));
      if (fds[i].fd >= 0) fds[i].file = fetch_eventfd(call, fds[i].fd);
    }
    call.detail += fmt::format(" fd[0]={}", hdr.count != 0 ? fds[0].fd : -1);
  }
  if (!df.irqs) return reject(call, EINVAL, "device {} is not open", dev.spec().bdf);
  TRY(df.irqs->set_irqs(call, hdr.flags, hdr.index, hdr.start, hdr.count, data, fds));
  return 0;
}

void FunctionInterruptSink::msix(u32 vector) {
  // Each raise checks the device's interrupt type under its lock: at most one of them delivers.
  if (!raise_irq(dev_, VFIO_PCI_MSIX_IRQ_INDEX, vector)) raise_irq(dev_, VFIO_PCI_INTX_IRQ_INDEX, 0);
}

}  // namespace vfio_emu::core
