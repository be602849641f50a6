// What one daemon lets its clients take, beyond what Linux itself bounds with the caller's
// RLIMIT_MEMLOCK: Linux charges page tables, iommufd objects and mapping records to the caller's
// memory cgroup and counts open files against file-max; a user-space daemon has no such account,
// so it caps each of them itself. The defaults are far above what a real program needs (a VMM
// with a few devices uses a handful of objects and at most tens of thousands of mappings) and
// keep a hostile client from taking gigabytes or minutes of the daemon's time.
//
// Set in the topology file's [limits] table (core/topology.h) or with vfio-emud's flags, which
// win. Every limit fails with the errno Linux gives for the same exhaustion, changes nothing, and
// logs one line with the figures in hex.
#pragma once

#include "iommu/types.h"

namespace vfio_emu::core {

using iommu::u32;
using iommu::u64;

struct Limits {
  // type1: mappings per container (the module parameter dma_entry_limit, U16_MAX). Beyond it,
  // VFIO_IOMMU_MAP_DMA gives ENOSPC, as Linux.
  u32 dma_entry_limit = 65535;

  // The module parameters allow_unsafe_interrupts of vfio_iommu_type1 and iommufd (one switch
  // for both): a device behind a unit without interrupt remapping may then be used. Off: type1's
  // attach and iommufd's bind refuse it with EPERM, as Linux.
  bool allow_unsafe_interrupts = false;

  // vfio's module parameter enable_unsafe_noiommu_mode: a device no IOMMU translates (a topology
  // group with `noiommu = true`) gets a no-IOMMU group /dev/vfio/noiommu-<id> and a cdev
  // noiommu-vfioN, usable only with CAP_SYS_RAWIO. Off: such a device is not bound to vfio-pci
  // and has no node at all, as Linux.
  bool enable_unsafe_noiommu_mode = false;

  // Bytes of IOMMU page tables (hardware tables and their bookkeeping) held by all domains of the
  // daemon together. Linux allocates them with GFP_KERNEL_ACCOUNT, so a table that cannot be had
  // fails the map with ENOMEM. 1 GiB holds 512 GiB mapped with 4 KiB pages, or 128 TiB with 2 MiB
  // pages.
  u64 table_memory = u64{1} << 30;

  // Objects (IOAS, HWPT, bound device) per iommufd context. Linux allocates each with
  // GFP_KERNEL_ACCOUNT: ENOMEM when none can be had (its id space, 2^31 - 1 ids, would give EBUSY
  // long after memory runs out).
  u32 iommufd_objects = 65536;

  // Mappings (areas) per IOAS: IOAS_MAP, IOAS_COPY, the compat MAP_DMA, and the split an unmap
  // inside a mapping makes. Linux allocates each iopt_area with GFP_KERNEL_ACCOUNT: ENOMEM.
  u32 ioas_mappings = 1u << 20;

  // Open node files per uid, uid 0 exempt. The caller's own RLIMIT_NOFILE already bounds each
  // process (every open takes one of its fds); this bounds a user's processes together, as
  // file-max bounds the system: open(2) gives ENFILE, and root is exempt as CAP_SYS_ADMIN is from
  // file-max.
  u32 open_files_per_uid = 4096;
};

}  // namespace vfio_emu::core
