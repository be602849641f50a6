// The sysfs and debugfs files `vfio-emu run` shows in its namespace, served by the daemon (which
// owns the device models and the domains) in a subtree of its FUSE mount, sys/ (bound over the
// namespace's /sys by `run`). Each open computes the file's contents then, from the device's
// state at that moment, and keeps them with the open file, as Linux's seq_file does for one
// reader; writes do what the attribute's store does in Linux 7.3, with its errno, or refuse.
//
//   sys/bus/pci/devices/<bdf>/{vendor,device,subsystem_vendor,subsystem_device,class,revision,
//                              irq,config,resource,driver_override}
//   sys/bus/pci/devices/<bdf>/resourceN[_wc]   (binary attributes of the BARs, pci-sysfs.c)
//   sys/bus/pci/devices/<bdf>/{remove,rescan,reset}
//   sys/bus/pci/drivers/vfio-pci/{bind,unbind,new_id,remove_id}
//   sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct   (devices behind VT-d)
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/emulator.h"

namespace vfio_emu::cuse {

enum class SysfsKind {
  kVendor, kDevice, kSubsystemVendor, kSubsystemDevice, kClass, kRevision, kIrq,
  kConfig, kResource, kDriverOverride,
  // pci_create_attr's binary attributes of BAR `bar`: resourceN for each BAR with a size
  // (mmap, and for an I/O BAR read/write of 1, 2 or 4 bytes), resourceN_wc for a prefetchable
  // memory BAR (mmap only). Read and written at a position (bin_read/bin_write), not from
  // contents computed at open.
  kResourceBar, kResourceBarWc,
  // Write-only device attributes: remove (0220), rescan (0220), reset (0200; every device has a
  // reset, as VFIO_DEVICE_GET_INFO's VFIO_DEVICE_FLAGS_RESET says).
  kRemove, kRescan, kReset,
  kBind, kUnbind, kNewId, kRemoveId,
  // The PCI bus's own attributes (drivers/base/bus.c; `rescan` is kRescan with no device):
  // drivers_probe (0200) and drivers_autoprobe (0644).
  kDriversProbe, kDriversAutoprobe,
  kDomainTranslation,
};

struct SysfsFile {
  std::string path;  // relative to the mount: "sys/bus/pci/devices/0000:00:05.0/config"
  SysfsKind kind;
  core::Device* device = nullptr;  // null: a file of the driver
  u32 mode = 0444;                 // as Linux creates it
  u64 size = 4096;                 // st_size: sysfs's PAGE_SIZE, config's size, debugfs 0
  u32 bar = 0;                     // resourceN[_wc]: N
  bool io_bar = false;             // resourceN of an I/O BAR (read/write; no mmap on x86)
};

// Whether `f` is a binary attribute read and written at a position (resourceN[_wc]).
inline bool is_resource_file(const SysfsFile& f) {
  return f.kind == SysfsKind::kResourceBar || f.kind == SysfsKind::kResourceBarWc;
}
// Whether Linux (x86) can mmap `f`: resourceN of a memory BAR and resourceN_wc
// (pci_mmap_resource_uc/_wc; an I/O BAR's resourceN has no mmap: kernfs answers ENODEV).
inline bool resource_has_mmap(const SysfsFile& f) { return is_resource_file(f) && !f.io_bar; }

// Linux's PAGE_SIZE: what one write to a sysfs attribute reaches the store with at most.
inline constexpr size_t kSysfsWriteMax = 4096;

class SysfsFiles {
 public:
  explicit SysfsFiles(core::Emulator& emu);

  // Every file, in a vector that never changes (the addresses stay valid).
  const std::vector<SysfsFile>& files() const { return files_; }

  // open(2) with `flags`: as kernfs_fop_open, EACCES (even for root) for a write of a file
  // without a store or a read of one without a show; then the contents as of now.
  // `privileged`: the opener has CAP_SYS_ADMIN in the initial user namespace (config shows all
  // of config space; others its first 64 bytes, as pci_read_config). Errors: EACCES, ENOMEM.
  Result<std::string> open(const SysfsFile& f, int flags, bool privileged);

  // write(2) of `data` (at most kSysfsWriteMax bytes; the caller cuts, as kernfs does): what
  // the store answers, the bytes taken or Linux's errno for the input.
  Result<size_t> store(const SysfsFile& f, std::string_view data);

  // read(2)/write(2) of a resource file (is_resource_file) at `pos`, `count` bytes (at most a
  // page: the caller cuts, as kernfs does). sysfs_kf_bin_read/_write first: a read of 0 bytes or
  // at or past the end gives 0, a write at or past the end EFBIG, and the access is cut at the
  // end; then a memory BAR (no read or write method) EIO, and an I/O BAR pci_resource_io: 1, 2
  // or 4 bytes reach the model (any alignment, as inb/inw/inl), any other count EINVAL.
  Result<size_t> bin_read(const SysfsFile& f, u64 pos, u8* out, size_t count);
  Result<size_t> bin_write(const SysfsFile& f, u64 pos, const u8* in, size_t count);

 private:
  struct DynId {
    u32 vendor, device, subvendor, subdevice, class_code, class_mask;
    u64 driver_data;
  };
  void add_resource_files(core::Device& d, const std::string& dir);
  core::Device* device_by_name(std::string_view name) const;
  // pci_resource_io: an access of `count` bytes at `pos` of an I/O BAR, already cut at its end.
  Result<size_t> resource_io(const SysfsFile& f, u64 pos, u8* out, const u8* in, size_t count);
  std::string show(const SysfsFile& f, bool privileged);
  Result<size_t> bind(std::string_view data);
  Result<size_t> unbind(std::string_view data);
  Result<size_t> new_id(std::string_view data);
  Result<size_t> remove_id(std::string_view data);
  Result<size_t> device_command(const SysfsFile& f, std::string_view data);

  core::Emulator& emu_;
  std::vector<SysfsFile> files_;
  std::vector<core::Device*> devices_;
  std::mutex mu_;  // overrides_, dynids_, drivers_autoprobe_
  std::map<const core::Device*, std::string> overrides_;  // driver_override, if set
  std::vector<DynId> dynids_;                              // vfio-pci's, from new_id
  bool drivers_autoprobe_ = true;                          // the bus's drivers_autoprobe
};

// ---- the formats, for the unit tests ----

// The `resource` file of a function whose config space is `config` and whose BARs have
// `bar_sizes`: 13 lines "0x%016llx 0x%016llx 0x%016llx\n" (start, end, flags) for BARs 0-5, the
// ROM and the 6 SR-IOV BARs (Linux with CONFIG_PCI_IOV), as pci-sysfs.c resource_show; flags as
// decode_bar() with IORESOURCE_SIZEALIGN; an absent resource all zero.
std::string pci_resource_text(std::span<const u8> config, const std::array<u64, 6>& bar_sizes);

// kstrtoul(s, 0, &value): an optional '+', a number in C's bases ("0x" hex, "0" octal), an
// optional newline and nothing else. 0, or EINVAL (not such a number) or ERANGE (over 64 bits).
int kstrtoul(std::string_view s, u64* value);

// sysfs_streq(a, b): equal, but for one trailing newline on either.
bool sysfs_streq(std::string_view a, std::string_view b);

}  // namespace vfio_emu::cuse
