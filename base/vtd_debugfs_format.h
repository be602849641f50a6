// The text of Linux's Intel IOMMU debugfs page-table dump (drivers/iommu/intel/debugfs.c of Linux
// 7.3: domain_translation_struct_show, dump_page_info), shared by the daemon's emulated
// /sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct and `vfio-emu pt`. Header-only:
// the `vfio-emu` tool links no library of the daemon.
#pragma once

#include <cinttypes>
#include <cstdio>
#include <string>

#include "base/ints.h"

namespace vfio_emu {

// "Device %04x:%02x:%02x.%x @0x%llx\n": the device and its second-level table root (legacy
// mode; Linux prints this line only when the device's context entry is present).
inline std::string vtd_debugfs_device_line(u32 segment, u32 bus, u32 slot, u32 function, u64 pgd) {
  char line[96];
  std::snprintf(line, sizeof(line), "Device %04x:%02x:%02x.%x @0x%" PRIx64 "\n", segment, bus,
                slot, function, pgd);
  return line;
}

// The column header: seq_printf(m, "%-17s\t%-18s\t%-18s\t%-18s\t%-18s\t%-s\n", ...).
inline std::string vtd_debugfs_header() {
  char line[160];
  std::snprintf(line, sizeof(line), "%-17s\t%-18s\t%-18s\t%-18s\t%-18s\t%-s\n", "IOVA_PFN", "PML5E",
                "PML4E", "PDPE", "PDE", "PTE");
  return line;
}

// One present leaf: its IOVA and the entry at each level, path[level] (1 = PTE .. 5 = PML5E; 0
// where the table has no such level or the walk stopped above it, at a superpage). As Linux's
// dump_page_info: PML5E, PML4E and PDPE always, PDE only if set, PTE only if PDE and it are set.
inline std::string vtd_debugfs_row(u64 iova, const u64 (&path)[6]) {
  char line[160];
  int n = std::snprintf(line, sizeof(line), "0x%013" PRIx64 " |\t0x%016" PRIx64 "\t0x%016" PRIx64
                        "\t0x%016" PRIx64, iova >> 12, path[5], path[4], path[3]);
  if (path[2] != 0) {
    n += std::snprintf(line + n, sizeof(line) - static_cast<size_t>(n), "\t0x%016" PRIx64, path[2]);
    if (path[1] != 0)
      n += std::snprintf(line + n, sizeof(line) - static_cast<size_t>(n), "\t0x%016" PRIx64, path[1]);
  }
  std::string row(line, static_cast<size_t>(n));
  row += '\n';
  return row;
}

}  // namespace vfio_emu
