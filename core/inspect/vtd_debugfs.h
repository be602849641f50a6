// Linux's Intel IOMMU debugfs file of a device, /sys/kernel/debug/iommu/intel/<bdf>/
// domain_translation_struct, from the device's current domain (what `vfio-emu run` shows there).
#pragma once

#include <string>

#include "core/emulator.h"

namespace vfio_emu::core::inspect {

// The file's text now, as drivers/iommu/intel/debugfs.c of Linux 7.3 prints it in legacy mode:
// "Device SSSS:BB:DD.F @0x<table root>", the column header, then one row per present leaf in IOVA
// order. Empty when the device is behind no domain (Linux: its context entry is not present).
// Errors: ENOMEM.
Result<std::string> domain_translation_struct(Emulator& emu, Device& device);

// Whether `device` sits behind a VT-d unit (only those have the file, as on Linux).
bool behind_vtd(const Device& device);

}  // namespace vfio_emu::core::inspect
