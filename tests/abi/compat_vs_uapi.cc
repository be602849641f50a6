// Compile-time check that examples/include/vfio_emu_compat.h, the header of the C examples,
// defines the same ABI as core/uapi/: every number equal, every struct the same size with every
// member at the same offset with the same size.
//
// The compat header takes everything else from the host's <linux/vfio.h>, which
// abi_static_assert.cc checks against core/uapi/; this file covers what the compat header adds:
// the device cdev (when the host's header lacks it) and iommufd. Its own iommufd definitions are
// forced even on hosts that have <linux/iommufd.h>, so they are what gets checked.
#include <cstddef>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "tests/abi/abi_checks.h"

namespace ours = vfio_emu::uapi;

namespace snapshot {
VFIO_EMU_VFIO_DEVICE_CDEV_CONSTANTS(VFIO_EMU_SNAPSHOT_CONSTANT)
VFIO_EMU_IOMMUFD_CONSTANTS(VFIO_EMU_SNAPSHOT_CONSTANT)
}  // namespace snapshot

#define VFIO_EMU_COMPAT_NO_SYSTEM_IOMMUFD
#include "vfio_emu_compat.h"

static_assert(VFIO_EMU_COMPAT_DEFINES_IOMMUFD == 1, "the compat header's own iommufd definitions must be the ones checked");

VFIO_EMU_IOMMUFD_CONSTANTS(VFIO_EMU_EXPECT_SAME_CONSTANT)
VFIO_EMU_UAPI_IOMMUFD_STRUCTS(VFIO_EMU_EXPECT_SAME_STRUCT)

#if VFIO_EMU_COMPAT_DEFINES_DEVICE_CDEV
// The host's header is older than 6.6 (Debian 12: 6.1) and the compat header's definitions are used.
VFIO_EMU_VFIO_DEVICE_CDEV_CONSTANTS(VFIO_EMU_EXPECT_SAME_CONSTANT)
VFIO_EMU_UAPI_VFIO_STRUCTS_AFTER_LINUX_6_1(VFIO_EMU_EXPECT_SAME_STRUCT)
#else
// The host's header has the cdev ioctls, in whichever version it is: the numbers and the members
// every version has must match; the later members come with the flag that announces them.
VFIO_EMU_EXPECT_SAME_CONSTANT(VFIO_DEVICE_BIND_IOMMUFD)
VFIO_EMU_EXPECT_SAME_CONSTANT(VFIO_DEVICE_ATTACH_IOMMUFD_PT)
VFIO_EMU_EXPECT_SAME_CONSTANT(VFIO_DEVICE_DETACH_IOMMUFD_PT)
VFIO_EMU_EXPECT_SAME_MEMBERS(vfio_device_bind_iommufd, argsz, flags, iommufd, out_devid)
VFIO_EMU_EXPECT_SAME_MEMBERS(vfio_device_attach_iommufd_pt, argsz, flags, pt_id)
VFIO_EMU_EXPECT_SAME_MEMBERS(vfio_device_detach_iommufd_pt, argsz, flags)
#ifdef VFIO_DEVICE_BIND_FLAG_TOKEN
VFIO_EMU_EXPECT_SAME_CONSTANT(VFIO_DEVICE_BIND_FLAG_TOKEN)
VFIO_EMU_EXPECT_SAME_STRUCT(vfio_device_bind_iommufd, token_uuid_ptr)
#endif
#ifdef VFIO_DEVICE_ATTACH_PASID
VFIO_EMU_EXPECT_SAME_CONSTANT(VFIO_DEVICE_ATTACH_PASID)
VFIO_EMU_EXPECT_SAME_STRUCT(vfio_device_attach_iommufd_pt, pasid)
#endif
#ifdef VFIO_DEVICE_DETACH_PASID
VFIO_EMU_EXPECT_SAME_CONSTANT(VFIO_DEVICE_DETACH_PASID)
VFIO_EMU_EXPECT_SAME_STRUCT(vfio_device_detach_iommufd_pt, pasid)
#endif
#endif
