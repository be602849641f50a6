// A PCI function's model: what the device is, as opposed to what VFIO does with it. A model owns
// its config space contents (and which bits software may change), its BARs and what accesses to
// them do, and its reset. core/ keeps the VFIO side (regions, binds, interrupts) and reaches the
// model only through this interface; each model has a folder of its own (devices/testdev/, ...).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/ints.h"
#include "base/result.h"
#include "devices/bar_window.h"
#include "devices/dma_port.h"

namespace vfio_emu::devices {

// The name of the spdlog logger models log through when it is registered (the daemon registers it
// before connecting them; otherwise spdlog's default logger).
inline constexpr const char* kDevicesLogger = "devices";

// The ids the topology gives a function (a model may use them or have its own).
struct PciIds {
  u16 vendor = 0;
  u16 device = 0;
  u32 class_code = 0;
};

class DeviceModel {
 public:
  virtual ~DeviceModel() = default;
  virtual std::string_view name() const = 0;  // the topology's `model`

  // Config space: 256 bytes (conventional PCI) or 4096 (PCI Express extended config space).
  virtual u32 config_size() const = 0;
  // The power-on contents of config space and the bits software may change (both
  // config_size() bytes).
  virtual void power_on_config(std::span<u8> config, std::span<u8> write_mask) const = 0;

  // BAR `bar` (0-5): its size in bytes, 0 if the function has no such BAR.
  virtual u64 bar_size(u32 bar) const = 0;
  // Whether BAR `bar` is I/O space (IORESOURCE_IO) rather than memory: vfio-pci never maps it,
  // and PCI_COMMAND_MEMORY does not gate its accesses.
  virtual bool bar_is_io(u32 bar) const {
    (void)bar;
    return false;
  }
  // A read or write of the program at `offset` in BAR `bar` (inside it: the caller cuts
  // accesses at the BAR's end), as pread/pwrite of the region carry it.
  virtual void bar_read(u32 bar, u64 offset, u8* out, u64 len) = 0;
  virtual void bar_write(u32 bar, u64 offset, const u8* in, u64 len) = 0;

  // Whether a program may map BAR `bar` (VFIO_REGION_INFO_FLAG_MMAP where the transport can map).
  virtual bool bar_mappable(u32 bar) const {
    (void)bar;
    return false;
  }
  // Gives the model the shared memory programs map for BAR `bar` (devices/bar_window.h), or
  // takes it away (null). From then on the model keeps the window coherent with the BAR: what a
  // program stores there reaches the model, and what the model changes shows there. The window
  // outlives the attachment.
  virtual void attach_window(u32 bar, BarWindow* window) {
    (void)bar, (void)window;
  }

  // What the model is doing, in one line for the tools (`vfio-emu list`); empty: nothing to say.
  virtual std::string state() { return {}; }

  // The program entered the daemon for this device (an ioctl, a pread or pwrite of a region):
  // what it stored through a mapping before takes effect before the call is served, as a
  // posted MMIO write reaches a device before the driver's next access to it does.
  virtual void settle() {}

  // Whether a program's stores to a mapping of BAR `bar` must reach the model as register writes,
  // in program order and before its next access, which polling the window cannot give: a
  // driver that rings a doorbell and at once reads the status it changes, a store of the value
  // the window already shows (writing back write-1-to-clear bits). Under `vfio-emu run` such a
  // BAR is mapped read-only and every store to it traps and becomes a bar_write
  // (tools/store_watch.h); loads stay direct.
  virtual bool bar_stores_trapped(u32 bar) const {
    (void)bar;
    return false;
  }

  // Whether the function has a reset method Linux's pci_try_reset_function can use (FLR, a PM
  // reset, ...): vfio-pci's reset_works, so VFIO_DEVICE_FLAGS_RESET and VFIO_DEVICE_RESET.
  virtual bool has_function_reset() const { return true; }

  // Function-level reset (and power-on, and a bus reset): BAR contents and internal state to their power-on
  // values. Config space is reset by the caller, from power_on_config(). A model that does DMA
  // waits here for an access in flight; the caller holds none of the locks DMA takes.
  virtual void reset() = 0;

  // Gives the model its way to the machine (the device's DMA and interrupts), or takes it away
  // (both null: every engine stops, and no DMA or interrupt happens after the call). A passive
  // model ignores it. The port and sink outlive the connection.
  virtual void connect(DmaPort* dma, InterruptSink* irq) {
    (void)dma, (void)irq;
  }
};

// The model named `name` for a function with `ids`. Errors: EINVAL for an unknown name.
Result<std::unique_ptr<DeviceModel>> make_device_model(std::string_view name, const PciIds& ids);

// The names make_device_model knows, for messages.
std::string known_models();

}  // namespace vfio_emu::devices
