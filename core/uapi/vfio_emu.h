// The emulator's private ioctls, served next to the Linux VFIO and iommufd ioctls.
#pragma once

#include <cstdint>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::uapi {

// VFIO_EMU_IDENTIFY - _IO(';', 0x7f), no argument.
//
// Returns, as the ioctl's return value, a non-negative int that names the open file within the
// daemon. The daemon's fd resolver issues it on an fd it fetched from a caller (pidfd_getfd), after
// checking that the file is one of our nodes, to learn which open instance the fd is: the kernel
// routes the ioctl back to the daemon with that file's handle (DESIGN.md, core::FdResolver).
//
// Why 0x3B7F is free:
// - VFIO numbers are VFIO_BASE + n = 0x64..0x79 in Linux 6.18 and are allocated upward;
//   Documentation/userspace-api/ioctl/ioctl-number.rst reserves ';' 0x64-0x7F for vfio.h, and 0x7f
//   is the end of that block, as far from the next VFIO number as the block allows.
// - iommufd numbers start at IOMMUFD_CMD_BASE = 0x80.
// - The VFS answers no ';' ioctl itself (FIONREAD, FIOCLEX, ... are 'T', 'f', 'X' numbers), so the
//   request reaches the daemon through both CUSE and FUSE files.
// - _IO carries no size, so FUSE's restricted ioctl mode passes it without moving any data and
//   CUSE needs no retry round trip.
// If Linux ever assigns 0x7f, the static_asserts below and tests/abi fail and a new number is due.
constexpr std::uint32_t VFIO_EMU_IDENTIFY_NR = 0x7f;
constexpr std::uint32_t VFIO_EMU_IDENTIFY = (VFIO_TYPE << 8) | VFIO_EMU_IDENTIFY_NR;  // 0x3B7F

// VFIO_EMU_GROUP_DEVICE - _IO(';', 0x7e), on a group node; arg: pointer to a device name, as for
// VFIO_GROUP_GET_DEVICE_FD. Returns the N of the device's cdev, /dev/vfio/devices/vfioN.
// Errors: EFAULT, EINVAL (name longer than a page), ENODEV (no such device in the group).
//
// VFIO_EMU_DEVICE_USE_GROUP - _IO(';', 0x7d), on a device (cdev) node; arg: a group fd, by value.
// Makes this open device file what VFIO_GROUP_GET_DEVICE_FD would have returned: a device fd
// obtained through its group, using the group's container (or, for a group set to an iommufd,
// bound to it and attached to its compat IOAS). Errors: EBADF (not an fd), EBADFD (not a group
// node), EINVAL (another group; the group has no container or no IOMMU set; this file is bound
// or already used through a group; the device is bound through another cdev), EIO (bad state).
//
// Together they let the seccomp supervisor of `vfio-emu run` answer GET_DEVICE_FD, which a
// daemon cannot: it cannot create a file descriptor in its caller. Same number block as
// VFIO_EMU_IDENTIFY, same reasoning.
constexpr std::uint32_t VFIO_EMU_GROUP_DEVICE = (VFIO_TYPE << 8) | 0x7e;       // 0x3B7E
constexpr std::uint32_t VFIO_EMU_DEVICE_USE_GROUP = (VFIO_TYPE << 8) | 0x7d;   // 0x3B7D
static_assert((VFIO_EMU_GROUP_DEVICE & 0xff) > VFIO_LAST_IOCTL_NR);
static_assert((VFIO_EMU_DEVICE_USE_GROUP & 0xff) > VFIO_LAST_IOCTL_NR);

static_assert(VFIO_EMU_IDENTIFY_NR > VFIO_LAST_IOCTL_NR, "collides with a VFIO ioctl");
static_assert(VFIO_EMU_IDENTIFY_NR < IOMMUFD_CMD_BASE, "collides with an iommufd ioctl");
static_assert(VFIO_EMU_IDENTIFY == 0x3B7F);

}  // namespace vfio_emu::uapi
