// The DMA of an emulated device (devices/dma_port.h), as the IOMMU makes it: every access is
// translated by walking the device's current IOMMU domain (its group's type1 container domain, or
// the HWPT its cdev is attached to) with the domain's real page-table format (VT-d second-level
// tables, or the sPAPR TCE table of a POWER PHB) and permission bits,
// and lands in the memory of the process that owns the mapping, at the address the mapping was
// made from (process_vm_readv/writev), which may be another process than the device's user.
//
// A byte that does not translate is an IOMMU fault: recorded in the emulator's fault log (device,
// domain, unit, IOVA, access, reason, the VT-d fault reason code), logged once with the operands
// in hex, and the access stops there; nothing is read or written for it or after it.
//
// Every access (one read() or write()) is a record in the emulator's trace, as an ioctl is.
//
// Unmap during DMA: the access holds the lock of the mapping's owner (the container's, or the
// IOAS's) while it translates and copies a batch of pages (at most 2 MiB, one
// process_vm_readv/writev), so an UNMAP_DMA / IOAS_UNMAP that returns has
// waited for every access to the pages it removed; later accesses fault. This is what a device
// sees behind a real IOMMU after the IOTLB invalidation that ends an unmap.
#pragma once

#include "core/objects.h"
#include "devices/dma_port.h"

namespace vfio_emu::core {

class DeviceDma final : public devices::DmaPort {
 public:
  DeviceDma(Emulator& emu, Device& device) : emu_(emu), device_(device) {}

  // devices::DmaPort. Errors: EFAULT (an IOMMU fault, or the owner's memory is gone), ENXIO (the
  // device is behind no IOMMU domain: not in a container with an IOMMU set, not attached), EIO
  // (an sPAPR group whose EEH PE has its DMA stopped).
  Status read(u64 iova, void* dst, u64 len) override;
  Status write(u64 iova, const void* src, u64 len) override;

 private:
  Status access(u64 iova, u8* buf, u64 len, iommu::Access access);
  // One translated batch: the IOVA's page and those after it that translate to the same owner,
  // at most kMaxBatch bytes in kMaxIovecs runs. *owner and *address: where the first byte went
  // (set once translated).
  static constexpr u64 kMaxBatch = 2 << 20;
  static constexpr int kMaxIovecs = 64;
  Result<u64> access_page(u64 iova, u8* buf, u64 len, iommu::Access access, pid_t* owner,
                          u64* address);
  // The access in the emulator's trace: device, IOVA range, owner and address, result.
  void trace(u64 iova, u64 len, iommu::Access access, pid_t owner, u64 address, int error);
  void record_fault(const DmaTranslation& t, u64 iova, iommu::Access access);

  Emulator& emu_;
  Device& device_;
};

// The IOMMU domain `device`'s DMA goes through now (its group's container domain, or the HWPT its
// iommufd device is attached to), or null (none: no DMA possible). What Linux's intel-iommu
// debugfs shows the page table of.
std::shared_ptr<HwDomain> current_domain(Emulator& emu, Device& device);

// The VT-d fault reason code of a second-level translation fault (VT-d spec 7.1.3, as QEMU's
// intel_iommu reports them): 4h address beyond the domain's width, 5h write without permission
// (also not present), 6h read without permission (also not present).
u8 vtd_fault_code(iommu::FaultReason reason, iommu::Access access);

}  // namespace vfio_emu::core
