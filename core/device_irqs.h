// Interrupts of an open vfio-pci device, as drivers/vfio/pci/vfio_pci_intrs.c and vfio_pci_core.c
// (Linux 6.18) keep them: which of INTx, MSI and MSI-X is enabled, the trigger eventfd of each
// vector, INTx masking (by SET_IRQS, by the command register's INTx-disable bit, and automatically
// when INTx fires), the INTx unmask irqfd, the error and request eventfds. VFIO_DEVICE_SET_IRQS
// changes them; raise_irq() is how an emulated device signals them.
//
// Runtime low power (VFIO_DEVICE_FEATURE_LOW_POWER_*) is kept here too: what it does that can be
// seen from user space is interrupt-like (INTx is masked while the device is suspended, and the
// wake eventfd is signalled when an access wakes the device up).
//
// The eventfds are the daemon's own duplicates of the caller's (FdResolver::take_eventfd), closed
// when an interrupt is disabled or replaced and when the device is closed.
//
// Locks: a device's interrupt lock (DeviceIrqs::mu_) comes after Emulator::mu and
// Device::regions_mu (core/objects.h); nothing is taken while it is held. Signalling an eventfd
// never blocks.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/context.h"
#include "core/unique_fd.h"
#include "devices/dma_port.h"

namespace vfio_emu::core {

class Device;
class Emulator;
class File;
class UnmaskIrqfd;

// vfio_pci_get_irq_count: how many interrupts `index` has, from the device's config space. INTx:
// 1 if the interrupt pin is set; MSI: 2^(Multiple Message Capable) of an MSI capability; MSI-X:
// the table size of an MSI-X capability; ERR: 1 for a PCI Express device; REQ: always 1; anything
// else 0. Takes Device::regions_mu.
u32 irq_count(Device& dev, u32 index);
// The BAR holding the MSI-X table (the capability's BIR), or -1 without MSI-X. Device::regions_mu
// held.
int msix_bar_locked(const Device& dev);


// What eventfd_ctx_fdget() does with the caller's `fd`, done before any lock is taken (on FUSE a
// request for our own nodes may be on its way): the daemon's own duplicate of it. Errors: EBADF
// (not an open fd of the caller, or its fds are out of reach), EINVAL (not an eventfd). Nothing is
// logged: the handler reports the error where Linux's order of checks reaches it.
Result<UniqueFd> fetch_eventfd(IoctlCall& call, int fd);

// One s32 of VFIO_IRQ_SET_DATA_EVENTFD's data, with its eventfd fetched up front (fd >= 0 only).
struct EventfdArg {
  int fd = -1;
  Result<UniqueFd> file = Err{EBADF};
};

class DeviceIrqs {
 public:
  // `bdf` names the device in log lines; `virq_disabled` is the INTx-disable bit of its command
  // register when it is opened.
  DeviceIrqs(std::string bdf, bool virq_disabled);
  ~DeviceIrqs();
  DeviceIrqs(const DeviceIrqs&) = delete;
  DeviceIrqs& operator=(const DeviceIrqs&) = delete;

  // vfio_pci_set_irqs_ioctl, for a request vfio_set_irqs_validate_and_prepare has accepted:
  // `data` holds count bools or (in `fds`) count eventfds. Errors, per index and action:
  // ENOTTY (an action the index does not have: MASK/UNMASK of MSI and MSI-X, anything but TRIGGER
  // of ERR and REQ, ERR of a conventional PCI device, an EVENTFD for INTx MASK); EINVAL (INTx
  // MASK/UNMASK while INTx is not enabled; INTx TRIGGER or MSI while another index is enabled;
  // start/count outside what is enabled; BOOL or EVENTFD with count 0 for ERR/REQ; DATA_NONE for
  // an ERR/REQ without an eventfd; an MSI vector past the vectors enabled); ERANGE (MSI enabled
  // with 0 vectors); EBUSY (an INTx unmask irqfd is already set); EBADF, EINVAL (an eventfd that
  // is not an open fd of the caller, or not an eventfd).
  Status set_irqs(IoctlCall& call, u32 flags, u32 index, u32 start, u32 count,
                  const std::vector<u8>& data, std::vector<EventfdArg>& fds);

  // The device raises interrupt `vector` of `index` (vfio_intx_handler, vfio_msihandler,
  // vfio_pci_core_request). INTx is level-like: when it is enabled and not masked it masks itself
  // and signals the trigger; while masked it stays pending and is signalled on the next unmask.
  // MSI/MSI-X vectors are signalled when their index is enabled and the vector has an eventfd; ERR
  // and REQ when their eventfd is set. Returns true if an eventfd was signalled.
  bool raise(u32 index, u32 vector);

  // The INTx-disable bit of the command register as the user just wrote it
  // (vfio_basic_config_write): masks INTx when it is set, unmasks it when it is cleared.
  void set_virq_disabled(bool disabled);

  // VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY(_WITH_WAKEUP): the device is suspended after the ioctl
  // (vfio_pci_runtime_pm_entry). Errors: EINVAL if low power is already engaged.
  Status low_power_entry(IoctlCall& call, UniqueFd wake);
  // VFIO_DEVICE_FEATURE_LOW_POWER_EXIT (vfio_pci_runtime_pm_exit).
  void low_power_exit();
  // Runtime PM around every access of the user (vfio_device_pm_runtime_get/put): a suspended
  // device resumes, which signals the wake eventfd and leaves low power if one was given, and
  // unmasks INTx if the suspend masked it; with low power engaged it is suspended again after.
  void runtime_get();
  void runtime_put();

  // The last close of the device (vfio_pci_core_disable, vfio_pci_core_close_device): low power
  // left, INTx/MSI/MSI-X disabled, the error and request eventfds released. Afterwards nothing
  // is signalled any more.
  void close_device();

  // For tests and the tools.
  struct State {
    u32 irq_type;          // VFIO_PCI_*_IRQ_INDEX, or VFIO_PCI_NUM_IRQS for none
    u32 vectors;           // MSI/MSI-X vectors enabled
    u32 triggers;          // eventfds held (INTx, MSI/MSI-X, ERR, REQ, wake)
    bool intx_masked;
    bool intx_pending;
    bool virq_disabled;
    bool unmask_irqfd;
    bool low_power;
    bool closed;
  };
  State state();

  // Called by the unmask irqfd's thread when the user signals it.
  void unmask_irqfd_fired(const UnmaskIrqfd* irqfd);

 private:
  using Action = Status (DeviceIrqs::*)(IoctlCall&, u32 index, u32 start, u32 count, u32 flags,
                                        const std::vector<u8>& data, std::vector<EventfdArg>& fds);
  bool is_intx() const;
  bool is_irq_none() const;

  Status intx_check(IoctlCall& call, std::string_view action, u32 start, u32 count);
  Status set_intx_mask(IoctlCall&, u32, u32, u32, u32, const std::vector<u8>&,
                       std::vector<EventfdArg>&);
  Status set_intx_unmask(IoctlCall&, u32, u32, u32, u32, const std::vector<u8>&,
                         std::vector<EventfdArg>&);
  Status set_intx_trigger(IoctlCall&, u32, u32, u32, u32, const std::vector<u8>&,
                          std::vector<EventfdArg>&);
  Status set_msi_trigger(IoctlCall&, u32, u32, u32, u32, const std::vector<u8>&,
                         std::vector<EventfdArg>&);
  Status set_err_trigger(IoctlCall&, u32, u32, u32, u32, const std::vector<u8>&,
                         std::vector<EventfdArg>&);
  Status set_req_trigger(IoctlCall&, u32, u32, u32, u32, const std::vector<u8>&,
                         std::vector<EventfdArg>&);
  Status set_trigger_single(IoctlCall& call, UniqueFd* trigger, u32 count, u32 flags,
                            const std::vector<u8>& data, std::vector<EventfdArg>& fds);

  // INTx, under mu_.
  void intx_enable(UniqueFd trigger);
  void intx_disable();
  bool intx_send();
  bool intx_mask();
  bool intx_unmask_handler();
  void intx_unmask();
  // MSI / MSI-X, under mu_.
  Status msi_enable(IoctlCall& call, u32 nvec, u32 index);
  Status msi_set_vector_signal(IoctlCall& call, u32 vector, EventfdArg* arg, bool msix);
  Status msi_set_block(IoctlCall& call, u32 start, u32 count, std::vector<EventfdArg>* fds,
                       bool msix);
  void msi_disable();
  void pm_exit();

  const std::string bdf_;
  std::mutex mu_;  // Linux's igate and irqlock in one; the last lock of the order (objects.h)
  u32 irq_type_;
  UniqueFd intx_trigger_;
  bool intx_masked_ = false;
  bool intx_pending_ = false;
  bool virq_disabled_;
  std::unique_ptr<UnmaskIrqfd> intx_unmask_irqfd_;
  u32 msi_vectors_ = 0;
  std::map<u32, UniqueFd> msi_triggers_;
  UniqueFd err_trigger_;
  UniqueFd req_trigger_;
  bool pm_engaged_ = false;
  bool suspended_ = false;
  bool pm_intx_masked_ = false;
  UniqueFd pm_wake_;
  bool closed_ = false;
  // Irqfds taken out under mu_ and stopped after it is released (their thread takes mu_).
  std::vector<std::unique_ptr<UnmaskIrqfd>> retired_;
};

// Runtime PM held for the length of one user access (vfio_device_pm_runtime_get/put); `irqs`
// may be null (a file not granted access: nothing to wake).
class AwakeScope {
 public:
  explicit AwakeScope(DeviceIrqs* irqs) : irqs_(irqs) {
    if (irqs_ != nullptr) irqs_->runtime_get();
  }
  ~AwakeScope() {
    if (irqs_ != nullptr) irqs_->runtime_put();
  }
  AwakeScope(const AwakeScope&) = delete;
  AwakeScope& operator=(const AwakeScope&) = delete;

 private:
  DeviceIrqs* irqs_;
};

// The interrupt state of `dev` for a file that has just been granted access to it: the state of
// the device's current opening if another file has it open (the group path), a fresh one
// otherwise (vfio_df_open's first open). Under Emulator::mu.
std::shared_ptr<DeviceIrqs> open_device_irqs(Device& dev);

// The emulated device `dev` raises interrupt `vector` of `index` (VFIO_PCI_*_IRQ_INDEX); see
// DeviceIrqs::raise. A device that is not open raises nothing. Returns true if an eventfd was
// signalled. Safe from any thread; takes no lock of the core but the device's interrupt lock.
bool raise_irq(const Device& dev, u32 index, u32 vector = 0);

// A device model's interrupts (devices/dma_port.h): raise_irq on VFIO_PCI_MSIX_IRQ_INDEX when the
// device is in MSI-X mode, else on VFIO_PCI_INTX_IRQ_INDEX when it is in INTx mode (as a
// function without MSI-X enabled asserts its pin; Linux's ioat driver falls back to INTx).
class FunctionInterruptSink final : public devices::InterruptSink {
 public:
  explicit FunctionInterruptSink(const Device& dev) : dev_(dev) {}
  void msix(u32 vector) override;

 private:
  const Device& dev_;
};

// VFIO_DEVICE_SET_IRQS (vfio_pci_ioctl_set_irqs): the struct, vfio_set_irqs_validate_and_prepare's
// checks (EINVAL), the data (EFAULT), then DeviceIrqs::set_irqs.
Result<long> set_irqs_ioctl(Emulator& emu, File& file, IoctlCall& call);

}  // namespace vfio_emu::core
