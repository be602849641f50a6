// The emulated machine: IOMMU units, IOMMU groups and the PCI devices in them, from a TOML file
// or the built-in default.
//
//   [[iommu]]                  # one per simulated IOMMU unit
//   name = "dmar0"             # unique
//   model = "vtd"              # "vtd" | "tce" | "nop"
//   aw_bits = 48               # vtd: 39 | 48 | 57
//   page_sizes = ["4K", "2M", "1G"]        # vtd: second-level sizes; tce: DDW page sizes
//   max_domains = 256          # vtd: 16, 64, 256, ..., 65536 (CAP.ND)
//   reserved = [{ first = 0xfee00000, last = 0xfeefffff }]   # IOVA no device may use
//   split = "split"            # vtd: unmap of part of a superpage: "split" | "refuse"
//   dma32_window_size = "1G"   # tce: the default 32-bit window
//   max_windows = 2            # tce
//   max_levels = 5             # tce
//   ddw_start = 0x0800000000000000         # tce: bus address of dynamic windows
//
//   [[group]]
//   id = 1
//   iommu = "dmar0"
//   devices = ["0000:00:01.0"]             # PCI BDFs; each also gets a cdev vfioN, in order
//   mode = 0o660                           # optional: the group's and its cdevs' nodes
//   uid = 1000                             # optional owner (default: the daemon's user)
//   gid = 1000
//   # or devices = [{ bdf = "0000:00:01.0", vendor = 0x1b36, device = 0x0005, fail_reset = true,
//   #                 hot_reset = "auto" }]    # "auto" | "slot" | "none" (core/pci_hot_reset.h)
//
//   [[group]]                  # a device no IOMMU translates (one per group, as Linux makes them):
//   id = 0                     # /dev/vfio/noiommu-0 and cdev noiommu-vfioN, but only with
//   noiommu = true             # enable_unsafe_noiommu_mode; without it the device has no node
//   devices = ["0000:00:06.0"]
//
//   [limits]                   # optional: what clients may take (core/resource_limits.h)
//   dma_entry_limit = 65535    # type1 mappings per container (ENOSPC beyond)
//   table_memory = "1G"        # IOMMU page tables of all domains together (ENOMEM beyond)
//   iommufd_objects = 65536    # objects per iommufd context (ENOMEM beyond)
//   ioas_mappings = 1048576    # mappings per IOAS (ENOMEM beyond)
//   open_files_per_uid = 4096  # open node files per uid, uid 0 exempt (ENFILE beyond)
//   allow_unsafe_interrupts = false        # module parameters of vfio_iommu_type1/iommufd
//   enable_unsafe_noiommu_mode = false     # and vfio
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/resource_limits.h"
#include "iommu/domain.h"

namespace vfio_emu::core {

using iommu::u16;
using iommu::u32;
using iommu::u64;
using iommu::u8;

// The reset a function's slot or bus offers (VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
// core/pci_hot_reset.h). kAuto: a bus reset when the function is behind a bridge (bus number not
// 0), none on a root bus; kSlot: its slot can be reset (a hotplug slot), which resets every
// function of the slot; kNone: no slot reset, and it forbids a bus reset of its bus
// (PCI_DEV_FLAGS_NO_BUS_RESET).
enum class HotReset : u8 { kAuto, kSlot, kNone };

struct DeviceSpec {
  std::string bdf;           // "0000:00:01.0"
  u32 cdev_index = 0;        // N of /dev/vfio/devices/vfioN, in order of appearance
  u16 vendor = 0x1b36;       // Red Hat, Inc. (QEMU's vendor id)
  u16 device = 0x0005;       // QEMU PCI test device
  u32 class_code = 0x00ff00; // unclassified device
  bool fail_reset = false;   // VFIO_DEVICE_RESET fails and leaves the device in a bad state
  HotReset hot_reset = HotReset::kAuto;
  std::string model = "testdev";  // what the device is (devices/device_model.h)
};

struct GroupSpec {
  u32 id = 0;
  std::string iommu;         // unit name; empty for a no-IOMMU group
  // No IOMMU translates its one device: a VFIO no-IOMMU group (noiommu-<id>) in
  // enable_unsafe_noiommu_mode, otherwise no group at all.
  bool noiommu = false;
  std::vector<DeviceSpec> devices;
  // Who may open the group node and its devices' cdev nodes (Linux: root-only until an admin
  // or udev rule chowns /dev/vfio/<group>). Unset: mode 0600, owned by the daemon's user.
  std::optional<u32> mode;
  std::optional<u32> uid;
  std::optional<u32> gid;
};

struct Topology {
  std::vector<std::shared_ptr<iommu::Unit>> units;
  std::vector<GroupSpec> groups;
  Limits limits;  // the [limits] table; the defaults where it says nothing

  const std::shared_ptr<iommu::Unit>* unit(const std::string& name) const;

  // dmar0 (VT-d, 48-bit, 4K/2M/1G, MSI window reserved) with groups 1, 2 and 5 (an I/OAT
  // engine), phb0 (TCE, 1 GiB 32-bit window, 4K/64K/2M/1G DDW, 2 windows, 5 levels) with group 3,
  // nop0 with group 4, and 0000:00:06.0 behind no IOMMU (no-IOMMU group 0 in
  // enable_unsafe_noiommu_mode).
  static Topology builtin();

  // Parses the TOML text. On error returns nullopt and sets *error to a one-line message.
  static std::optional<Topology> parse(const std::string& toml_text, std::string* error);
  static std::optional<Topology> load(const std::string& path, std::string* error);
};

// A PCI address, from a BDF the parser accepted ("dddd:bb:dd.f").
struct PciAddress {
  u16 segment = 0;
  u8 bus = 0;
  u8 devfn = 0;  // device << 3 | function
  u8 slot() const { return devfn >> 3; }
};
PciAddress pci_address(const std::string& bdf);

// "4K", "64K", "2M", "1G", "16G", or a plain number of bytes. False if not a size.
bool parse_size(const std::string& text, u64* out);

}  // namespace vfio_emu::core
