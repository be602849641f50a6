#include "tools/resource_mmap_check.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>

namespace vfio_emu::tools {

int resource_mmap_errno(std::uint64_t bar_size, std::uint64_t len, int prot, int flags,
                        std::uint64_t offset, int open_flags, std::uint64_t page_size) {
  // The kernel's own failures that come first: a zero length, an unaligned offset, a length
  // no address space holds (ENOMEM), an offset that overflows (EOVERFLOW), an unknown type.
  if (len == 0 || offset % page_size != 0 || len > (std::uint64_t{1} << 47)) return 0;
  const std::uint64_t pages = len / page_size + (len % page_size != 0);
  // file_mmap_ok: a regular file's mapping ends by MAX_LFS_FILESIZE.
  constexpr std::uint64_t kMaxLfsFileSize = std::uint64_t{INT64_MAX};
  if (pages * page_size > kMaxLfsFileSize || offset > kMaxLfsFileSize - pages * page_size) return 0;
  const int type = flags & MAP_TYPE;
  if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE && type != MAP_PRIVATE) return 0;
  // do_mmap's EACCES (every file mapping reads; a shared writable one writes): the kernel checks
  // the FUSE file's mode itself, before the file's mmap.
  const int mode = open_flags & O_ACCMODE;
  if (mode == O_WRONLY) return 0;
  if ((type == MAP_SHARED || type == MAP_SHARED_VALIDATE) && (prot & PROT_WRITE) && mode != O_RDWR)
    return 0;
  // pci_mmap_fits(PCI_MMAP_SYSFS): start < size && start + nr <= size, in pages.
  if (bar_size == 0) return EINVAL;
  const std::uint64_t size = (bar_size - 1) / page_size + 1;
  const std::uint64_t start = offset / page_size;
  if (start >= size || pages > size - start) return EINVAL;
  return 0;
}

int device_mmap_errno(bool region_info, std::uint64_t region_size, bool region_mmap,
                      std::uint64_t len, int flags, std::uint64_t offset, std::uint64_t page_size) {
  // do_mmap's own failures come first, and stay the kernel's.
  if (len == 0 || offset % page_size != 0 || len > (std::uint64_t{1} << 47)) return 0;
  const int type = flags & MAP_TYPE;
  if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE && type != MAP_PRIVATE) return 0;
  // vfio_device_fops_mmap: access not granted (not bound, not from the group).
  if (!region_info) return EINVAL;
  // vfio_pci_core_mmap, in its order: the index (9 regions, no device-specific ones), VM_SHARED,
  // config/ROM/VGA, bar_mmap_supported, the length within the page-aligned BAR.
  constexpr std::uint32_t kNumRegions = 9, kRomIndex = 6;
  const std::uint32_t index = device_region_index(offset);
  if (index >= kNumRegions) return EINVAL;
  if (type == MAP_PRIVATE) return EINVAL;
  if (index >= kRomIndex) return EINVAL;
  if (!region_mmap) return 0;
  const std::uint64_t phys_len = (region_size + page_size - 1) / page_size * page_size;
  const std::uint64_t req_start = offset & ((std::uint64_t{1} << 40) - 1);
  const std::uint64_t req_len = (len + page_size - 1) / page_size * page_size;
  if (req_start > phys_len || req_len > phys_len - req_start) return EINVAL;
  return 0;
}

}  // namespace vfio_emu::tools
