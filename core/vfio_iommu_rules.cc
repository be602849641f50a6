#include "core/vfio_iommu_rules.h"

#include "core/reject.h"

namespace vfio_emu::core {

using namespace uapi;

Status dma_map_argument(IoctlCall& call, u32 known, vfio_iommu_type1_dma_map* out) {
  const auto& map = *out = call.ucmd_as<vfio_iommu_type1_dma_map>();
  call.detail = fmt::format("flags={:#x} vaddr={:#x} iova={:#x} size={:#x}", map.flags, map.vaddr,
                            map.iova, map.size);
  if (map.flags & ~known)
    return reject(call, EINVAL, "flags {:#x}: unknown bits {:#x}", map.flags, map.flags & ~known);
  return {};
}

Status dma_unmap_argument(IoctlCall& call, u32 known, vfio_iommu_type1_dma_unmap* out) {
  const auto& unmap = *out = call.ucmd_as<vfio_iommu_type1_dma_unmap>();
  call.detail = fmt::format("flags={:#x} iova={:#x} size={:#x}", unmap.flags, unmap.iova,
                            unmap.size);
  if (unmap.flags & ~known)
    return reject(call, EINVAL, "flags {:#x}: unknown bits {:#x}", unmap.flags,
                  unmap.flags & ~known);
  return {};
}

Prot dma_map_prot(u32 flags) {
  Prot p = 0;
  if (flags & VFIO_DMA_MAP_FLAG_READ) p |= iommu::kProtRead;
  if (flags & VFIO_DMA_MAP_FLAG_WRITE) p |= iommu::kProtWrite;
  return p;
}

long type1_check_extension(u32 ext, bool update_vaddr, bool dma_cc) {
  switch (ext) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_UPDATE_VADDR:
      return update_vaddr ? 1 : 0;
    case VFIO_DMA_CC_IOMMU:
      return dma_cc ? 1 : 0;
    default:
      return 0;  // nesting is gone
  }
}

u64 type1_pgsize_bitmap(u64 domain_sizes) {
  constexpr u64 kPageSize = 4096;
  constexpr u64 kPageMask = ~(kPageSize - 1);
  if (domain_sizes & ~kPageMask) {
    domain_sizes &= kPageMask;
    domain_sizes |= kPageSize;
  }
  return domain_sizes;
}

}  // namespace vfio_emu::core
