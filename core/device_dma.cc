#include "core/device_dma.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>

#include "core/device.h"
#include "core/emulator.h"
#include "core/iommufd/iommufd.h"
#include "core/log.h"
#include "core/owner_memory.h"
#include "core/reject.h"
#include "core/trace.h"

namespace vfio_emu::core {

u8 vtd_fault_code(iommu::FaultReason reason, iommu::Access access) {
  switch (reason) {
    case iommu::FaultReason::kNone: return 0;
    case iommu::FaultReason::kOutOfAperture: return 0x4;
    case iommu::FaultReason::kNotPresent:
    case iommu::FaultReason::kNoPermission: break;
  }
  return access == iommu::Access::kWrite ? 0x5 : 0x6;
}

Status DeviceDma::read(u64 iova, void* dst, u64 len) {
  return access(iova, static_cast<u8*>(dst), len, iommu::Access::kRead);
}

Status DeviceDma::write(u64 iova, const void* src, u64 len) {
  // The buffer is only read from on this path.
  return access(iova, static_cast<u8*>(const_cast<void*>(src)), len, iommu::Access::kWrite);
}

Status DeviceDma::access(u64 iova, u8* buf, u64 len, iommu::Access access) {
  if (len != 0 && iova + (len - 1) < iova) {
    // Wraps the 64-bit space: the part past 2^64-1 cannot translate.
    DmaTranslation none;
    none.walk.fault = iommu::FaultReason::kOutOfAperture;
    record_fault(none, 0, access);
    trace(iova, len, access, 0, 0, EFAULT);
    return Err{EFAULT};
  }
  pid_t owner = 0;
  u64 address = 0;
  for (u64 at = iova, left = len; left != 0;) {
    pid_t page_owner = 0;
    u64 page_address = 0;
    auto done = access_page(at, buf, left, access, &page_owner, &page_address);
    if (at == iova) owner = page_owner, address = page_address;
    if (!done) {
      trace(iova, len, access, owner, address, done.error());
      return Err{done.error()};
    }
    at += *done;
    buf += *done;
    left -= *done;
  }
  trace(iova, len, access, owner, address, 0);
  return {};
}

void DeviceDma::trace(u64 iova, u64 len, iommu::Access access, pid_t owner, u64 address,
                      int error) {
  try {
    TraceRecord r;
    r.time = now_seconds();
    r.pid = owner;
    r.node.assign(device_.spec().bdf);
    r.command = access == iommu::Access::kWrite ? "DMA_WRITE" : "DMA_READ";
    r.arg = iova;
    r.detail.assign(owner != 0 ? fmt::format("iova={:#x} len={:#x} owner={} addr={:#x}", iova, len,
                                             owner, address)
                               : fmt::format("iova={:#x} len={:#x}", iova, len));
    r.result = -error;
    emu_.trace().record(r);
  } catch (const std::bad_alloc&) {
    // The access stands; only its trace record is lost.
  }
}

namespace {

// Where the device's DMA to `iova` goes now: its bound cdev's or its group's iommufd device, or
// its group's container. Which one is read under Emulator::mu; the owner's lock (the
// container's, taken before Emulator::mu is let go, so a detach waits for the access; or the
// IOAS's) is left held in *owner_lock.
Result<DmaTranslation> translate_for(Emulator& emu, Device& device, u64 iova,
                                     iommu::Access access,
                                     std::unique_lock<std::mutex>* owner_lock) {
  std::shared_ptr<IommufdCtx> ictx;
  u32 devid = 0;
  Result<DmaTranslation> r = Err{ENXIO};
  {
    std::lock_guard emu_lock(emu.mu);
    Group& g = device.group();
    ictx = device_iommufd(device, &devid);
    if (!ictx && g.container) {
      *owner_lock = std::unique_lock(g.container->mu);
      if (g.container->driver) r = g.container->driver->dma_translate(g, iova, access);
    }
  }
  if (ictx) r = iommufd_dma_translate(*ictx, devid, iova, access, owner_lock);
  return r;
}

}  // namespace

std::shared_ptr<HwDomain> current_domain(Emulator& emu, Device& device) {
  std::unique_lock<std::mutex> owner_lock;
  // Any IOVA names the domain: a walk that faults still says which domain it walked.
  auto r = translate_for(emu, device, 0, iommu::Access::kRead, &owner_lock);
  return r ? r->domain : nullptr;
}

Result<u64> DeviceDma::access_page(u64 iova, u8* buf, u64 len, iommu::Access access,
                                   pid_t* owner, u64* address) {
  // Emulator::mu is not held while the owner's memory is touched: that may wait on a page fault
  // of a slow filesystem; the owner's lock is held until the bytes are copied (see the header).
  std::unique_lock<std::mutex> owner_lock;
  Result<DmaTranslation> r = translate_for(emu_, device_, iova, access, &owner_lock);
  if (!r) {
    auto log = logger("core.dma");
    if (rejection_log_allowed(*log, 0))
      log->info("device {} DMA {} iova {:#x} len {:#x}: {}: {}", device_.spec().bdf,
                access == iommu::Access::kWrite ? "write" : "read", iova, len,
                r.error() == ENXIO  ? "the device is behind no IOMMU domain"
                : r.error() == EIO ? "its EEH PE has DMA stopped"
                                   : "no mapping",
                errno_name(r.error()));
    return Err{r.error()};
  }
  const DmaTranslation& t = *r;
  if (!t.walk.ok()) {
    record_fault(t, iova, access);
    return Err{EFAULT};
  }
  *owner = t.owner;
  *address = t.address;
  const u64 page = t.walk.page_size != 0 ? t.walk.page_size : 4096;
  u64 n = std::min(len, page - (iova & (page - 1)));
  // The pages after the first, under the same lock, as long as they translate to the same owner:
  // one copy for all (runs of contiguous addresses in one iovec). A page that does not translate
  // ends the batch; the next call finds its fault. Bounded, so an unmap waits at most one batch.
  iovec remote[kMaxIovecs];
  int count = 1;
  remote[0] = iovec{reinterpret_cast<void*>(t.address), n};
  while (n < len && n < kMaxBatch && t.more) {
    auto next = t.more(iova + n);
    if (!next || !next->walk.ok() || next->owner != t.owner) break;
    const u64 next_page = next->walk.page_size != 0 ? next->walk.page_size : 4096;
    const u64 m = std::min(len - n, next_page - ((iova + n) & (next_page - 1)));
    iovec& last = remote[count - 1];
    if (reinterpret_cast<u64>(last.iov_base) + last.iov_len == next->address) {
      last.iov_len += m;
    } else {
      if (count == kMaxIovecs) break;
      remote[count++] = iovec{reinterpret_cast<void*>(next->address), m};
    }
    n += m;
  }
  // Shared memory of the owner: one memcpy through the daemon's own mapping of the same file
  // (core/owner_memory.h); anything else, or any run that cannot, the system calls.
  {
    OwnerMemory& om = owner_memory();
    const bool write = access == iommu::Access::kWrite;
    std::shared_ptr<OwnerMemory::View> views[kMaxIovecs];
    u8* direct[kMaxIovecs];
    bool all = true;
    for (int i = 0; i < count && all; ++i)
      all = (direct[i] = om.resolve(t.owner, reinterpret_cast<u64>(remote[i].iov_base),
                                    remote[i].iov_len, write, &views[i])) != nullptr;
    if (all) {
      u8* at = buf;
      for (int i = 0; i < count; ++i) {
        if (write)
          std::memcpy(direct[i], at, remote[i].iov_len);
        else
          std::memcpy(at, direct[i], remote[i].iov_len);
        at += remote[i].iov_len;
      }
      om.count_direct(n);
      return n;
    }
  }
  const iovec local{buf, n};
  const ssize_t got = access == iommu::Access::kWrite
                          ? process_vm_writev(t.owner, &local, 1, remote, count, 0)
                          : process_vm_readv(t.owner, &local, 1, remote, count, 0);
  if (got != static_cast<ssize_t>(n)) {
    // Linux would have the pages pinned; here the owner unmapped them or is gone.
    auto log = logger("core.dma");
    if (rejection_log_allowed(*log, t.owner))
      log->info("device {} DMA {} iova {:#x} len {:#x}: the owner pid {} has no memory at {:#x} "
                "any more: EFAULT", device_.spec().bdf,
                access == iommu::Access::kWrite ? "write" : "read", iova, n, t.owner, t.address);
    return Err{EFAULT};
  }
  return n;
}

void DeviceDma::record_fault(const DmaTranslation& t, u64 iova, iommu::Access access) {
  FaultRecord f;
  f.time = now_seconds();
  f.device = device_.spec().bdf;
  f.iova = iova;
  f.access = access;
  f.reason = t.walk.fault;
  f.level = t.walk.fault_level;
  if (t.domain) {
    f.domain = t.domain->id;
    f.unit = t.domain->unit->name();
    if (t.domain->unit->model() == iommu::Model::kVtd) f.hw_code = vtd_fault_code(f.reason, access);
  }
  emu_.faults().record(f);
  auto log = logger("core.dma");
  if (rejection_log_allowed(*log, 0))
    log->info("device {} DMA {} iova {:#x}: IOMMU fault: {} at level {} (domain {}, {}, "
              "reason {:#x})", f.device, access == iommu::Access::kWrite ? "write" : "read", iova,
              iommu::fault_reason_name(f.reason), f.level, f.domain, f.unit, f.hw_code);
}

}  // namespace vfio_emu::core
