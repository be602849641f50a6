// What an emulated device may do to the machine around it: DMA by IOVA (through whatever IOMMU
// the device is behind) and raising its interrupts. A device model (devices/<model>/) knows only
// these two interfaces; the core implements them for a real device (translation through the
// device's current IOMMU domain, the access into the mapping owner's memory, the fault log), and
// the unit tests with fakes.
#pragma once

#include "base/ints.h"
#include "base/result.h"

namespace vfio_emu::devices {

class DmaPort {
 public:
  virtual ~DmaPort() = default;
  // Copies `len` bytes at device address `iova` into `dst`. Errors: EFAULT if any byte does not
  // translate for reading (an IOMMU fault, which the port records; the device model reports it as
  // its hardware would); ENXIO if the device has no IOMMU domain to do DMA through. On an error
  // nothing is guaranteed about `dst`.
  virtual Status read(u64 iova, void* dst, u64 len) = 0;
  // Copies `len` bytes from `src` to device address `iova`. Errors: EFAULT (a byte does not
  // translate for writing; the bytes before it may have been written, as on hardware), ENXIO.
  virtual Status write(u64 iova, const void* src, u64 len) = 0;
};

class InterruptSink {
 public:
  virtual ~InterruptSink() = default;
  // The device signals its interrupt for MSI-X vector `vector`. The sink delivers it as the
  // PCI function would: that MSI-X vector when MSI-X is enabled (masking and the pending bit
  // applied), else INTx when INTx is in use (vector ignored: one pin, level-triggered).
  virtual void msix(u32 vector) = 0;
};

}  // namespace vfio_emu::devices
