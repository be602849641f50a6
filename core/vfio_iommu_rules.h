// Rules of the VFIO IOMMU uAPI (vfio_iommu_type1_*) that more than one backend applies: the type1
// driver (core/type1.cc), the sPAPR driver's MAP/UNMAP (core/spapr.cc) and iommufd's VFIO
// container emulation (core/iommufd/vfio_compat.cc).
#pragma once

#include "core/context.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::core {

// VFIO_IOMMU_MAP_DMA's argument as every backend starts it, from the struct the dispatcher (or a
// handler's read_argsz_struct) left in call.ucmd: its operands go to the call's detail, then a
// flag outside `known` is EINVAL. (Out parameters: the unmap struct ends in a flexible array.)
Status dma_map_argument(IoctlCall& call, u32 known, uapi::vfio_iommu_type1_dma_map* map);
// Likewise for VFIO_IOMMU_UNMAP_DMA.
Status dma_unmap_argument(IoctlCall& call, u32 known, uapi::vfio_iommu_type1_dma_unmap* unmap);

// VFIO_DMA_MAP_FLAG_READ/WRITE as IOMMU permissions.
Prot dma_map_prot(u32 flags);

// vfio_iommu_type1_check_extension: what CHECK_EXTENSION answers for a type1 container, also
// before SET_IOMMU (both false then). `update_vaddr`: VFIO_UPDATE_VADDR can be done (no
// emulated group); `dma_cc`: every domain enforces cache coherency.
long type1_check_extension(u32 ext, bool update_vaddr, bool dma_cc);

// The IOMMU page sizes type1 reports for domains that support `domain_sizes` together: sizes
// below the CPU page collapse into it (vfio_update_pgsize_bitmap).
u64 type1_pgsize_bitmap(u64 domain_sizes);

}  // namespace vfio_emu::core
