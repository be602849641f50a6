// VFIO sPAPR TCE IOMMU backend (VFIO_SPAPR_TCE_IOMMU = v1, VFIO_SPAPR_TCE_v2_IOMMU = v2), as
// Linux's drivers/vfio/vfio_iommu_spapr_tce.c, on the simulated TCE tables, plus VFIO_EEH_PE_OP.
#pragma once

#include <memory>

#include "core/objects.h"

namespace vfio_emu::core {

// `type` is VFIO_SPAPR_TCE_IOMMU or VFIO_SPAPR_TCE_v2_IOMMU.
std::unique_ptr<IommuDriver> make_spapr_driver(Emulator& emu, Container& container, u32 type);

// CHECK_EXTENSION answers of the sPAPR driver before any container has it (iommu_data NULL).
long spapr_check_extension_unset(u32 ext);

}  // namespace vfio_emu::core
