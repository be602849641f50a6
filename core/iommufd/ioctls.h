// The iommufd ioctl handlers, one namespace per file that defines them; core/commands.cc puts
// them in the command table.
#pragma once

#include "core/command.h"

namespace vfio_emu::core {

namespace iommufd_ioctl {  // core/iommufd/main.cc
IoctlHandler destroy, option;
}
namespace ioas_ioctl {  // core/iommufd/ioas.cc
IoctlHandler ioas_alloc, ioas_allow_iovas, ioas_copy, ioas_iova_ranges, ioas_map, ioas_unmap,
    ioas_map_file, ioas_change_process;
}
namespace hwpt_ioctl {  // core/iommufd/hw_pagetable.cc
IoctlHandler hwpt_alloc, hwpt_set_dirty_tracking, hwpt_get_dirty_bitmap, hwpt_invalidate,
    fault_queue_alloc;
}
namespace idev_ioctl {  // core/iommufd/device.cc
IoctlHandler get_hw_info;
}
namespace viommu_ioctl {  // core/iommufd/viommu.cc
IoctlHandler viommu_alloc, vdevice_alloc, veventq_alloc, hw_queue_alloc;
}
namespace compat_ioctl {  // core/iommufd/vfio_compat.cc
IoctlHandler vfio_ioas, compat_get_api_version, compat_check_extension, compat_set_iommu,
    compat_get_info, compat_map_dma, compat_unmap_dma;
}

}  // namespace vfio_emu::core
