// The checks Linux makes on an mmap of a PCI BAR's sysfs resource file (drivers/pci/pci-sysfs.c
// pci_mmap_resource -> pci_mmap_fits), which the kernel cannot make under `vfio-emu run`: there
// the file is the daemon's FUSE file whose mapping goes straight to the BAR memory (FUSE
// passthrough, cuse/fuse_passthrough.h) without asking anyone, so a mapping past the BAR would
// map. `run`'s seccomp supervisor (tools/device_fd_supervisor.h) sees every mmap of a file by the
// program and answers those that Linux refuses with Linux's errno; the rest go to the kernel.
#pragma once

#include <cstdint>

namespace vfio_emu::tools {

// The errno Linux gives mmap(len, prot, flags, fd, offset) of a resource file of `bar_size`
// bytes opened with `open_flags` (O_ACCMODE bits) when it is the failure the kernel cannot see
// here, EINVAL for pages that are not all within the BAR's (pci_mmap_fits); 0 when the kernel is
// to run the call. Everything do_mmap refuses before the file's mmap is left to the kernel, which
// answers as Linux: a zero length, an unaligned offset (EINVAL), a length no address space holds
// (ENOMEM), an offset that overflows (EOVERFLOW), an unknown mapping type, and the file's mode
// (EACCES for an fd not open for reading, or a shared writable mapping of one not open for
// writing).
int resource_mmap_errno(std::uint64_t bar_size, std::uint64_t len, int prot, int flags,
                        std::uint64_t offset, int open_flags, std::uint64_t page_size);

// The same for a VFIO device file (vfio_device_fops_mmap -> vfio_pci_core_mmap), whose BAR
// regions the daemon maps by passthrough too. `region_info` is what VFIO_DEVICE_GET_REGION_INFO
// answers for the region the offset names (offset >> 40): false if the call failed, which it does
// for a file that is not bound (access not granted: EINVAL first). Returns EINVAL for what Linux
// refuses: no access, a region past the ROM (config space, ROM, VGA: index >= 6), a private
// mapping, pages past the BAR's page-aligned size; 0 otherwise, and for a BAR the region info
// does not call mappable (the daemon's own answer stands: ENODEV without passthrough).
int device_mmap_errno(bool region_info, std::uint64_t region_size, bool region_mmap,
                      std::uint64_t len, int flags, std::uint64_t offset, std::uint64_t page_size);
// The region an offset of a device file names (VFIO_PCI_OFFSET_SHIFT).
inline std::uint32_t device_region_index(std::uint64_t offset) {
  return static_cast<std::uint32_t>(offset >> 40);
}

}  // namespace vfio_emu::tools
