#include "cuse/sysfs_files.h"

#include <fcntl.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <tuple>

#include "core/inspect/vtd_debugfs.h"
#include "core/log.h"
#include "core/reject.h"

namespace vfio_emu::cuse {
namespace {

constexpr u32 kPciAnyId = ~u32{0};
constexpr size_t kUnprivilegedConfigBytes = 64;  // pci_read_config without CAP_SYS_ADMIN

// include/linux/ioport.h
constexpr u64 kIoresourceIo = 0x100;
constexpr u64 kIoresourceMem = 0x200;
constexpr u64 kIoresourcePrefetch = 0x2000;
constexpr u64 kIoresourceSizealign = 0x40000;
constexpr u64 kIoresourceMem64 = 0x100000;

u32 config_u32(std::span<const u8> c, size_t at) {
  if (at + 4 > c.size()) return 0;
  return u32{c[at]} | u32{c[at + 1]} << 8 | u32{c[at + 2]} << 16 | u32{c[at + 3]} << 24;
}

u32 config_u16(std::span<const u8> c, size_t at) {
  if (at + 2 > c.size()) return 0;
  return u32{c[at]} | u32{c[at + 1]} << 8;
}

std::string hex_line(const char* format, u32 value) {
  char line[32];
  std::snprintf(line, sizeof(line), format, value);
  return line;
}

// kernfs_fop_open's has_read and has_write: a show or read method, or mmap (a binary
// attribute with mmap takes every open mode: sysfs_bin_kfops_mmap has read and write).
bool has_read(SysfsKind k) {
  return k != SysfsKind::kBind && k != SysfsKind::kUnbind && k != SysfsKind::kNewId &&
         k != SysfsKind::kRemoveId && k != SysfsKind::kRemove && k != SysfsKind::kRescan &&
         k != SysfsKind::kReset && k != SysfsKind::kDriversProbe;
}

bool has_write(SysfsKind k) {
  return k == SysfsKind::kConfig || k == SysfsKind::kDriverOverride ||
         k == SysfsKind::kDriversAutoprobe ||
         k == SysfsKind::kResourceBar || k == SysfsKind::kResourceBarWc || !has_read(k);
}

// pci_match_one_id(id, dev): `dev`'s ids are those of a device (or of a new id, for new_id's
// check for duplicates).
template <typename Id>
bool match_one_id(const Id& id, u32 vendor, u32 device, u32 subvendor, u32 subdevice,
                  u32 class_code) {
  return (id.vendor == kPciAnyId || id.vendor == vendor) &&
         (id.device == kPciAnyId || id.device == device) &&
         (id.subvendor == kPciAnyId || id.subvendor == subvendor) &&
         (id.subdevice == kPciAnyId || id.subdevice == subdevice) &&
         ((id.class_code ^ class_code) & id.class_mask) == 0;
}

}  // namespace

int kstrtoul(std::string_view s, u64* value) {
  s = s.substr(0, std::min(s.find('\0'), s.size()));  // the store sees a C string
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  unsigned base = 10;
  if (!s.empty() && s[0] == '0') {  // _parse_integer_fixup_radix
    if (s.size() > 2 && (s[1] == 'x' || s[1] == 'X') && std::isxdigit(static_cast<unsigned char>(s[2]))) {
      base = 16;
      s.remove_prefix(2);
    } else {
      base = 8;
    }
  }
  u64 v = 0;
  size_t digits = 0;
  bool overflow = false;
  for (; digits < s.size(); ++digits) {  // _parse_integer
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[digits])));
    unsigned d;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = static_cast<unsigned>(c - 'a' + 10);
    else
      break;
    if (d >= base) break;
    if (v > (~u64{0} - d) / base) overflow = true;
    v = v * base + d;
  }
  if (overflow) return ERANGE;
  if (digits == 0) return EINVAL;
  s.remove_prefix(digits);
  if (!s.empty() && s[0] == '\n') s.remove_prefix(1);
  if (!s.empty()) return EINVAL;
  *value = v;
  return 0;
}

bool sysfs_streq(std::string_view a, std::string_view b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i] && a[i] != '\0') ++i;
  auto rest = [](std::string_view s, size_t at) {
    return at == s.size() || s[at] == '\0' ||
           (s[at] == '\n' && (at + 1 == s.size() || s[at + 1] == '\0'));
  };
  return rest(a, i) && rest(b, i);
}

std::string pci_resource_text(std::span<const u8> config, const std::array<u64, 6>& bar_sizes) {
  std::string text;
  auto line = [&](u64 start, u64 end, u64 flags) {
    char l[64];
    std::snprintf(l, sizeof(l), "0x%016" PRIx64 " 0x%016" PRIx64 " 0x%016" PRIx64 "\n", start, end,
                  flags);
    text += l;
  };
  for (size_t i = 0; i < 6; ++i) {
    const u32 bar = config_u32(config, 0x10 + 4 * i);
    const u64 size = bar_sizes[i];
    if (size == 0) {
      line(0, 0, 0);
      continue;
    }
    u64 start = 0, flags = 0;
    if (bar & 1) {  // I/O space
      start = bar & ~u64{0x3};
      flags = (bar & 0x3) | kIoresourceIo;
    } else {
      start = bar & ~u64{0xf};
      flags = (bar & 0xf) | kIoresourceMem;
      if (bar & 0x8) flags |= kIoresourcePrefetch;
      if ((bar & 0x6) == 0x4) {
        flags |= kIoresourceMem64;
        if (i < 5) start |= u64{config_u32(config, 0x10 + 4 * (i + 1))} << 32;
      }
    }
    line(start, start + (size - 1), flags | kIoresourceSizealign);
  }
  for (int i = 0; i < 7; ++i) line(0, 0, 0);  // the ROM, the SR-IOV BARs: none
  return text;
}

SysfsFiles::SysfsFiles(core::Emulator& emu) : emu_(emu) {
  const std::string driver = "sys/bus/pci/drivers/vfio-pci/";
  for (const auto& [name, kind] : {std::pair{"bind", SysfsKind::kBind},
                                   {"unbind", SysfsKind::kUnbind},
                                   {"new_id", SysfsKind::kNewId},
                                   {"remove_id", SysfsKind::kRemoveId}})
    files_.push_back(SysfsFile{driver + name, kind, nullptr, 0200, 4096});
  // The bus's attributes, so that a program under `run` reaches the emulated bus and not the
  // host's (its rescan or probe would act on the host's PCI devices).
  files_.push_back(SysfsFile{"sys/bus/pci/rescan", SysfsKind::kRescan, nullptr, 0200, 4096});
  files_.push_back(
      SysfsFile{"sys/bus/pci/drivers_probe", SysfsKind::kDriversProbe, nullptr, 0200, 4096});
  files_.push_back(SysfsFile{"sys/bus/pci/drivers_autoprobe", SysfsKind::kDriversAutoprobe,
                             nullptr, 0644, 4096});
  for (const auto& g : emu_.groups()) {
    for (const auto& d : g->devices()) {
      devices_.push_back(d.get());
      const std::string dir = "sys/bus/pci/devices/" + d->spec().bdf + "/";
      for (const auto& [name, kind] :
           {std::pair{"vendor", SysfsKind::kVendor}, {"device", SysfsKind::kDevice},
            {"subsystem_vendor", SysfsKind::kSubsystemVendor},
            {"subsystem_device", SysfsKind::kSubsystemDevice}, {"class", SysfsKind::kClass},
            {"revision", SysfsKind::kRevision}, {"irq", SysfsKind::kIrq},
            {"resource", SysfsKind::kResource}})
        files_.push_back(SysfsFile{dir + name, kind, d.get(), 0444, 4096});
      files_.push_back(SysfsFile{dir + "driver_override", SysfsKind::kDriverOverride, d.get(),
                                 0644, 4096});
      files_.push_back(SysfsFile{dir + "config", SysfsKind::kConfig, d.get(), 0644,
                                 d->model->config_size()});
      add_resource_files(*d, dir);
      for (const auto& [name, kind, mode] :
           {std::tuple{"remove", SysfsKind::kRemove, 0220u},
            {"rescan", SysfsKind::kRescan, 0220u}, {"reset", SysfsKind::kReset, 0200u}})
        files_.push_back(SysfsFile{dir + name, kind, d.get(), mode, 4096});
      if (core::inspect::behind_vtd(*d))
        files_.push_back(SysfsFile{"sys/kernel/debug/iommu/intel/" + d->spec().bdf +
                                       "/domain_translation_struct",
                                   SysfsKind::kDomainTranslation, d.get(), 0444, 0});
    }
  }
}

// pci_create_resource_files: for each BAR with a size, resourceN (0600, the BAR's size), and for a
// prefetchable memory BAR resourceN_wc too (x86 can map write-combined: arch_can_pci_mmap_wc).
void SysfsFiles::add_resource_files(core::Device& d, const std::string& dir) {
  std::vector<u8> config;
  std::array<u64, 6> sizes{};
  {
    std::lock_guard lock(d.regions_mu);
    config = d.config;
    for (u32 i = 0; i < 6; ++i) sizes[i] = d.model->bar_size(i);
  }
  for (u32 bar = 0; bar < 6; ++bar) {
    if (sizes[bar] == 0) continue;
    const u32 reg = config_u32(config, 0x10 + 4 * bar);
    const bool io = (reg & 1) != 0;
    const std::string name = dir + "resource" + std::to_string(bar);
    files_.push_back(SysfsFile{name, SysfsKind::kResourceBar, &d, 0600, sizes[bar], bar, io});
    if (!io && (reg & 0x8))
      files_.push_back(SysfsFile{name + "_wc", SysfsKind::kResourceBarWc, &d, 0600, sizes[bar],
                                 bar, false});
  }
}

core::Device* SysfsFiles::device_by_name(std::string_view name) const {
  for (core::Device* d : devices_)
    if (sysfs_streq(d->spec().bdf, name)) return d;
  return nullptr;
}

std::string SysfsFiles::show(const SysfsFile& f, bool privileged) {
  if (f.kind == SysfsKind::kDomainTranslation) {
    auto text = core::inspect::domain_translation_struct(emu_, *f.device);
    if (!text) throw std::bad_alloc();
    return text.take();
  }
  if (f.kind == SysfsKind::kDriversAutoprobe) {  // drivers_autoprobe_show
    std::lock_guard lock(mu_);
    return drivers_autoprobe_ ? "1\n" : "0\n";
  }
  if (f.kind == SysfsKind::kDriverOverride) {
    std::lock_guard lock(mu_);
    auto it = overrides_.find(f.device);
    return (it == overrides_.end() ? std::string("(null)") : it->second) + "\n";
  }
  std::vector<u8> config;
  {
    std::lock_guard lock(f.device->regions_mu);
    config = f.device->config;
  }
  switch (f.kind) {
    case SysfsKind::kVendor: return hex_line("0x%04x\n", config_u16(config, 0x00));
    case SysfsKind::kDevice: return hex_line("0x%04x\n", config_u16(config, 0x02));
    case SysfsKind::kRevision: return hex_line("0x%02x\n", config.size() > 8 ? config[8] : 0);
    case SysfsKind::kClass: return hex_line("0x%06x\n", config_u32(config, 0x08) >> 8);
    case SysfsKind::kSubsystemVendor: return hex_line("0x%04x\n", config_u16(config, 0x2c));
    case SysfsKind::kSubsystemDevice: return hex_line("0x%04x\n", config_u16(config, 0x2e));
    case SysfsKind::kIrq: return hex_line("%u\n", config.size() > 0x3c ? config[0x3c] : 0);
    case SysfsKind::kConfig:
      if (!privileged && config.size() > kUnprivilegedConfigBytes)
        config.resize(kUnprivilegedConfigBytes);
      return std::string(config.begin(), config.end());
    case SysfsKind::kResource: {
      std::array<u64, 6> sizes{};
      {
        std::lock_guard lock(f.device->regions_mu);
        for (u32 i = 0; i < 6; ++i) sizes[i] = f.device->model->bar_size(i);
      }
      return pci_resource_text(config, sizes);
    }
    default: return {};
  }
}

Result<std::string> SysfsFiles::open(const SysfsFile& f, int flags, bool privileged) {
  const int mode = flags & O_ACCMODE;
  const bool reads = mode == O_RDONLY || mode == O_RDWR;
  const bool writes = mode == O_WRONLY || mode == O_RDWR;
  // kernfs_fop_open: checked for root too. Debugfs is no kernfs: root opens its 0444 files for
  // writing, and the write fails (no write method: EINVAL).
  if (f.kind != SysfsKind::kDomainTranslation) {
    if (writes && (!(f.mode & 0222) || !has_write(f.kind))) return err(EACCES);
    if (reads && (!(f.mode & 0444) || !has_read(f.kind))) return err(EACCES);
  }
  if (!reads) return std::string();
  try {
    return show(f, privileged);
  } catch (const std::bad_alloc&) {
    return err(ENOMEM);
  } catch (const std::exception& e) {
    logger("cuse")->error("{}: computing its contents failed: {}: EIO", f.path, e.what());
    return err(EIO);
  }
}

Result<size_t> SysfsFiles::store(const SysfsFile& f, std::string_view data) {
  auto log = logger("cuse");
  try {
    switch (f.kind) {
      case SysfsKind::kDriverOverride: {
        // __device_set_driver_override: the string up to a NUL or newline; empty clears.
        if (data.size() >= kSysfsWriteMax - 1) return err(EINVAL);
        std::string_view s = data.substr(0, std::min(data.find('\0'), data.size()));
        s = s.substr(0, std::min(s.find('\n'), s.size()));
        std::lock_guard lock(mu_);
        if (s.empty())
          overrides_.erase(f.device);
        else
          overrides_[f.device] = std::string(s);
        return data.size();
      }
      case SysfsKind::kBind: return bind(data);
      case SysfsKind::kUnbind: return unbind(data);
      case SysfsKind::kNewId: return new_id(data);
      case SysfsKind::kRemoveId: return remove_id(data);
      case SysfsKind::kRemove:
      case SysfsKind::kRescan:
      case SysfsKind::kReset: return device_command(f, data);
      case SysfsKind::kDriversProbe:
        // drivers_probe_store: a device of the bus by name (ENODEV), then
        // bus_rescan_devices_helper, which leaves a device that has a driver alone: done.
        if (device_by_name(data) == nullptr) {
          log->info("{}: no emulated device {}: ENODEV", f.path,
                    core::quoted(data.substr(0, std::min<size_t>(data.size(), 64))));
          return err(ENODEV);
        }
        return data.size();
      case SysfsKind::kDriversAutoprobe: {
        // drivers_autoprobe_store: "0..." turns it off, anything else on. No emulated device is
        // ever unbound, so nothing is probed either way.
        std::lock_guard lock(mu_);
        drivers_autoprobe_ = data.empty() || data[0] != '0';
        return data.size();
      }
      case SysfsKind::kConfig:
        // The device is vfio-pci's: its config space changes through the VFIO region only.
        log->info("{}: a write of {:#x} bytes to config through sysfs: EPERM (as a kernel in "
                  "lockdown answers)", f.path, data.size());
        return err(EPERM);
      case SysfsKind::kDomainTranslation: return err(EINVAL);  // debugfs: no write method
      default: return err(EACCES);  // not reached: open refused the write
    }
  } catch (const std::bad_alloc&) {
    return err(ENOMEM);
  } catch (const std::exception& e) {
    log->error("{}: a write of {:#x} bytes failed: {}: EIO", f.path, data.size(), e.what());
    return err(EIO);
  }
}

// ---- resourceN[_wc] ----------------------------------------------------------------------------

Result<size_t> SysfsFiles::bin_read(const SysfsFile& f, u64 pos, u8* out, size_t count) {
  // sysfs_kf_bin_read: nothing to read, or at or past the end: 0 bytes; cut at the end.
  if (count == 0 || pos >= f.size) return size_t{0};
  count = static_cast<size_t>(std::min<u64>(count, f.size - pos));
  if (f.kind == SysfsKind::kResourceBar && f.io_bar) return resource_io(f, pos, out, nullptr, count);
  logger("cuse")->info("{}: read of {:#x} bytes at {:#x}: a memory BAR's resource file is only "
                       "mapped (no read method, sysfs_kf_bin_read): EIO", f.path, count, pos);
  return err(EIO);
}

Result<size_t> SysfsFiles::bin_write(const SysfsFile& f, u64 pos, const u8* in, size_t count) {
  // sysfs_kf_bin_write: at or past the end EFBIG (before looking at the count); cut at the end.
  if (pos >= f.size) {
    logger("cuse")->info("{}: write of {:#x} bytes at {:#x}, at or past its end {:#x}: EFBIG",
                         f.path, count, pos, f.size);
    return err(EFBIG);
  }
  count = static_cast<size_t>(std::min<u64>(count, f.size - pos));
  if (count == 0) return size_t{0};
  if (f.kind == SysfsKind::kResourceBar && f.io_bar) return resource_io(f, pos, nullptr, in, count);
  logger("cuse")->info("{}: write of {:#x} bytes at {:#x}: a memory BAR's resource file is only "
                       "mapped (no write method, sysfs_kf_bin_write): EIO", f.path, count, pos);
  return err(EIO);
}

// pci_resource_io (CONFIG_HAS_IOPORT): inb/inw/inl or outb/outw/outl at the port, which the model
// of the BAR answers as a VFIO region access of that width would reach it. The command register's
// I/O decoding is not looked at: vfio-pci's config space is virtual, and the physical function
// stays enabled as pci_enable_device left it while vfio-pci has it.
Result<size_t> SysfsFiles::resource_io(const SysfsFile& f, u64 pos, u8* out, const u8* in,
                                       size_t count) {
  // (pci_resource_io's own end checks cannot fail once sysfs has cut the access at the end.)
  if (count != 1 && count != 2 && count != 4) {
    logger("cuse")->info("{}: {} of {:#x} bytes at {:#x}: an I/O port access is of 1, 2 or 4 "
                         "bytes (pci_resource_io): EINVAL", f.path, in ? "write" : "read", count,
                         pos);
    return err(EINVAL);
  }
  core::Device& d = *f.device;
  try {
    d.model->settle();  // as a VFIO region access: what was stored through a mapping comes first
    std::lock_guard lock(d.regions_mu);
    if (in != nullptr)
      d.model->bar_write(f.bar, pos, in, count);
    else
      d.model->bar_read(f.bar, pos, out, count);
  } catch (const std::bad_alloc&) {
    return err(ENOMEM);
  } catch (const std::exception& e) {
    logger("cuse")->error("{}: {} of {:#x} bytes at {:#x} failed: {}: EIO", f.path,
                          in ? "write" : "read", count, pos, e.what());
    return err(EIO);
  }
  return count;
}

// remove_store, dev_rescan_store, reset_store (a number, as kstrtoul(buf, 0) reads it: EINVAL
// otherwise). `rescan` finds no new function (the machine is fixed): done. `reset` is
// pci_reset_function: the function resets with its config space saved and restored, whoever has
// it open, as Device::reset. `remove` of a function is refused: vfio-emu keeps its devices.
Result<size_t> SysfsFiles::device_command(const SysfsFile& f, std::string_view data) {
  auto log = logger("cuse");
  u64 value = 0;
  if (kstrtoul(data, &value) != 0) {
    log->info("{}: a write of {:#x} bytes that is not a number: EINVAL", f.path, data.size());
    return err(EINVAL);
  }
  switch (f.kind) {
    case SysfsKind::kRescan: return data.size();
    case SysfsKind::kRemove:
      if (value == 0) return data.size();
      log->info("{}: remove of {:#x}: vfio-emu does not remove its devices (Linux would unbind "
                "vfio-pci and delete the function): EBUSY", f.path, value);
      return err(EBUSY);
    case SysfsKind::kReset:
      if (value != 1) {
        log->info("{}: reset of {:#x}, not 1: EINVAL", f.path, value);
        return err(EINVAL);
      }
      if (f.device->spec().fail_reset) {  // as VFIO_DEVICE_RESET of such a device
        {
          std::lock_guard lock(emu_.mu);
          f.device->bad_state = true;
        }
        log->info("{}: the function reset failed (the topology's fail_reset); the device is left "
                  "in a bad state: EIO", f.path);
        return err(EIO);
      }
      f.device->reset();
      log->info("{}: function reset through sysfs", f.path);
      return data.size();
    default: return err(EINVAL);
  }
}

// bind_store: the device must match vfio-pci (its driver_override names vfio-pci, or one of
// the new_id ids matches it) and be unbound; every emulated device is vfio-pci's.
Result<size_t> SysfsFiles::bind(std::string_view data) {
  core::Device* d = device_by_name(data);
  if (d == nullptr) return err(ENODEV);
  std::vector<u8> c;
  {
    std::lock_guard lock(d->regions_mu);
    c = d->config;
  }
  const u32 vendor = config_u16(c, 0), device = config_u16(c, 2);
  const u32 subvendor = config_u16(c, 0x2c), subdevice = config_u16(c, 0x2e);
  const u32 class_code = config_u32(c, 0x08) >> 8;
  std::lock_guard lock(mu_);
  auto it = overrides_.find(d);
  bool match = false;
  if (it != overrides_.end()) {
    match = it->second == "vfio-pci";
  } else {
    for (const DynId& id : dynids_)
      match = match || match_one_id(id, vendor, device, subvendor, subdevice, class_code);
  }
  if (!match) return err(ENODEV);
  return err(EBUSY);  // __driver_probe_device: dev->driver is set
}

// unbind_store: Linux detaches the driver (and vfio-pci's release of the device waits for its
// users). vfio-emu keeps every device bound: refused, never a silent success.
Result<size_t> SysfsFiles::unbind(std::string_view data) {
  core::Device* d = device_by_name(data);
  if (d == nullptr) return err(ENODEV);
  logger("cuse")->info("unbind of {} from vfio-pci: vfio-emu keeps its devices bound: EBUSY",
                       d->spec().bdf);
  return err(EBUSY);
}

Result<size_t> SysfsFiles::new_id(std::string_view data) {
  const std::string s(data.substr(0, std::min(data.find('\0'), data.size())));
  DynId id{0, 0, kPciAnyId, kPciAnyId, 0, 0, 0};
  unsigned long driver_data = 0;
  const int fields = std::sscanf(s.c_str(), "%x %x %x %x %x %x %lx", &id.vendor, &id.device,
                                 &id.subvendor, &id.subdevice, &id.class_code, &id.class_mask,
                                 &driver_data);
  id.driver_data = driver_data;
  if (fields < 2) return err(EINVAL);
  // vfio-pci's id table holds one override-only entry (driver_data 0): it never matches here,
  // and only driver_data 0 is accepted.
  if (id.driver_data != 0) return err(EINVAL);
  std::lock_guard lock(mu_);
  if (fields != 7)
    for (const DynId& e : dynids_)
      if (match_one_id(e, id.vendor, id.device, id.subvendor, id.subdevice, id.class_code))
        return err(EEXIST);
  dynids_.push_back(id);
  // driver_attach() would now probe the unbound devices it matches: there are none.
  return data.size();
}

Result<size_t> SysfsFiles::remove_id(std::string_view data) {
  const std::string s(data.substr(0, std::min(data.find('\0'), data.size())));
  u32 vendor = 0, device = 0, subvendor = kPciAnyId, subdevice = kPciAnyId, class_code = 0,
      class_mask = 0;
  const int fields = std::sscanf(s.c_str(), "%x %x %x %x %x %x", &vendor, &device, &subvendor,
                                 &subdevice, &class_code, &class_mask);
  if (fields < 2) return err(EINVAL);
  std::lock_guard lock(mu_);
  for (auto it = dynids_.begin(); it != dynids_.end(); ++it) {
    if (it->vendor == vendor && it->device == device &&
        (subvendor == kPciAnyId || it->subvendor == subvendor) &&
        (subdevice == kPciAnyId || it->subdevice == subdevice) &&
        ((it->class_code ^ class_code) & class_mask) == 0) {
      dynids_.erase(it);
      return data.size();
    }
  }
  return err(ENODEV);
}

}  // namespace vfio_emu::cuse
