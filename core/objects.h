// The VFIO object model: devices, groups, containers and the open files that reach them.
//
// Locking (the order is always top to bottom):
//   Emulator::mu      the "group lock": which file is open on which node, which group is in
//                     which container or iommufd, which driver a container has, device binds.
//                     Taken by open/close and the BIND-style ioctls, never on the MAP/UNMAP path.
//   Container::mu     the container's IOMMU driver state (mappings, domains, windows). Taken by
//                     every driver ioctl; containers never contend with each other.
//   IommufdCtx::mu, Ioas::mu   likewise for iommufd (core/iommufd/).
//   Device::regions_mu         a device's config space and BAR contents.
// A Domain (iommu/) is owned by exactly one driver object and used under that owner's lock.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/topology.h"
#include "devices/device_model.h"
#include "iommu/domain.h"

namespace vfio_emu::core {

class Emulator;
class Group;
class Container;
class IommufdCtx;
namespace inspect {
class CheckReport;  // core/inspect/check.h
}

enum class NodeKind : u8 { kContainer, kGroup, kDevice, kIommufd };
std::string_view node_kind_name(NodeKind k);

// One open file description of a node (what an fd refers to).
class File {
 public:
  File(NodeKind kind, u64 id, pid_t opener) : kind_(kind), id_(id), opener_(opener) {}
  virtual ~File() = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  NodeKind kind() const { return kind_; }
  u64 id() const { return id_; }          // unique for the daemon's lifetime
  pid_t opener() const { return opener_; }

 private:
  NodeKind kind_;
  u64 id_;
  pid_t opener_;
};

// An IOMMU domain in use by some driver, registered so the tools can find and inspect it.
struct HwDomain {
  u64 id = 0;                         // global id the tools use (not the VT-d DID)
  std::shared_ptr<iommu::Unit> unit;
  std::unique_ptr<iommu::Domain> hw;
  // The lock under which `hw` is used, aliasing its owner (a container, an IOAS): lock() it to
  // keep the owner alive while inspecting; expired once the owner is gone.
  std::weak_ptr<std::mutex> owner_mu;
  std::string owner;                  // "container 3", "iommufd 2 hwpt 5", for the tools
};

// Emulated PCI device: static description plus the state VFIO keeps about it.
class Device {
 public:
  Device(const DeviceSpec& spec, Group* group);

  const DeviceSpec& spec() const { return spec_; }
  Group& group() const { return *group_; }
  // vfio_device_set_noiommu_and_name: "vfioN", or "noiommu-vfioN" behind no IOMMU.
  std::string cdev_name() const;

  // Under Emulator::mu.
  u32 cdev_opens = 0;          // open cdev files (shown by the tools)
  File* bound_file = nullptr;  // the cdev file bound to an iommufd (only one at a time)
  // The iommufd device object a group-path file bound in its group's iommufd (a group set to an
  // iommufd with SET_CONTAINER): what the device's DMA goes through then. 0: none.
  u32 group_iommufd_devid = 0;
  u32 group_path_files = 0;    // device files used through the group (GET_DEVICE_FD's)
  bool bad_state = false;      // failed reset or EEH-frozen: open_device fails with EIO

  // The device's way to the machine, given to its model by the Emulator (core/device_dma.h; an
  // MSI-X vector raised through core/device_irqs.h). Declared before `model`, which stops using
  // them when it goes.
  std::unique_ptr<devices::DmaPort> dma_port;
  std::unique_ptr<devices::InterruptSink> irq_sink;
  // The memory programs map for the device's mappable BARs (devices/bar_window.h), set by
  // enable_bar_mmap() when the transport can map them; declared before `model`, which uses it.
  std::unique_ptr<devices::BarFile> bar_file;
  // What the device is (devices/device_model.h): its config space's power-on contents, its BARs
  // and what accesses to them do. Models lock themselves; BAR accesses come under regions_mu.
  std::unique_ptr<devices::DeviceModel> model;
  // Region contents: config space (the model's size), reached with pread/pwrite; the BARs are the
  // model's.
  std::mutex regions_mu;
  std::vector<u8> config;
  std::vector<u8> config_write_mask;  // bits software may change
  std::vector<u8> saved_config;       // as the first open left it, restored at the last close
  void reset_regions();  // config space to its power-on values, under regions_mu
  // Function-level reset of the model (which waits for DMA in flight: call it holding none of
  // the locks DMA takes, regions_mu included). Config space is kept: Linux saves the device's
  // state before a reset and restores it after (pci_dev_save_and_disable, pci_dev_restore), and
  // vfio-pci's virtual config space is not touched.
  void reset();

 private:
  DeviceSpec spec_;
  Group* group_;
};

class Group {
 public:
  // `unit` is null for a no-IOMMU group (GroupSpec::noiommu).
  Group(const GroupSpec& spec, std::shared_ptr<iommu::Unit> unit);

  u32 id() const { return id_; }
  // VFIO_NO_IOMMU: no IOMMU translates its device (enable_unsafe_noiommu_mode). It has no unit,
  // so unit() and model() are for the other groups only.
  bool noiommu() const { return unit_ == nullptr; }
  const std::shared_ptr<iommu::Unit>& unit() const { return unit_; }
  iommu::Model model() const { return unit_->model(); }
  // "vfio/1", "vfio/noiommu-0": its node, relative to /dev.
  std::string node_path() const;
  const std::vector<std::unique_ptr<Device>>& devices() const { return devices_; }
  Device* device_by_name(const std::string& bdf) const;

  // Under Emulator::mu.
  File* open_file = nullptr;               // a group has at most one open file
  // Device files obtained through the group hold the group file, as in Linux: its release
  // (detaching the container) waits until the last of them is closed.
  u32 device_users = 0;
  std::shared_ptr<File> released_file;     // set while that release waits
  std::shared_ptr<Container> container;    // set by SET_CONTAINER with a container fd
  std::shared_ptr<IommufdCtx> ictx;        // set by SET_CONTAINER with an iommufd fd
  bool has_iommu() const { return container != nullptr || ictx != nullptr; }

 private:
  u32 id_;
  std::shared_ptr<iommu::Unit> unit_;
  std::vector<std::unique_ptr<Device>> devices_;
};

// Whether the IOMMU driver of `g`'s container holds it frozen (see IommuDriver::group_frozen).
// Call with Emulator::mu held, so that g.container cannot change; it takes the container's mu,
// which comes after Emulator::mu in the lock order. The PE state lives under Container::mu
// because VFIO_EEH_PE_OP runs under it and cannot take Emulator::mu; readers that hold
// Emulator::mu come here instead of reading Device::bad_state.
bool group_frozen(const Group& g);

// One mapping of a container, as the tools list it (`maps`).
struct MappingView {
  u64 iova = 0;
  u64 last = 0;
  u64 vaddr = 0;                 // the user address it maps
  pid_t owner = 0;               // the process whose memory it is
  Prot prot = 0;
  const char* state = "mapped";  // or "recorded" (not in the page tables), "vaddr-invalid"
};

// Where a device's DMA to one IOVA goes: the walk of the device's domain and, if it translates,
// the process whose memory the output is and the address there (IommuDriver::dma_translate).
struct DmaTranslation {
  std::shared_ptr<HwDomain> domain;
  iommu::Translation walk;  // walk.ok() false: an IOMMU fault
  pid_t owner = 0;          // the mapping's owner (locked memory is charged to it)
  u64 address = 0;          // the IOVA's byte in `owner`
  // Translates a further IOVA of the same access under the lock the translation is held with
  // (its domain, mappings and owner cannot change meanwhile), so that a DMA of many pages is
  // one copy; unset: the caller translates page by page.
  std::function<Result<DmaTranslation>(u64 iova)> more;
};

// A container's IOMMU backend, as Linux's vfio_iommu_driver_ops. Every call is made with the
// container's mu held (and Emulator::mu for attach/detach).
class IommuDriver {
 public:
  virtual ~IommuDriver() = default;
  virtual u32 type() const = 0;             // VFIO_TYPE1_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU, ...
  virtual std::string_view name() const = 0;
  // Adds a group, within the SET_CONTAINER or SET_IOMMU `call` (whose caller's limits apply to
  // any pinning it needs). Its errors surface through that ioctl.
  virtual Status attach_group(Group& g, IoctlCall& call) = 0;
  virtual void detach_group(Group& g) = 0;
  // CHECK_EXTENSION once this driver is set.
  virtual long check_extension(u32 ext) const = 0;
  // Checks every driver ioctl gets before its command is even looked up (so an unknown command
  // can fail with it too), like the start of Linux's driver->ops->ioctl.
  virtual Status ioctl_prologue(const IoctlCall&) const { return {}; }
  // Whether the driver holds `g` frozen: an EEH partitionable endpoint (core/eeh.h) with its
  // MMIO or DMA stopped, or held in reset. Its devices are then in a bad state (open_device
  // fails with EIO). Only sPAPR groups have a PE.
  virtual bool group_frozen(const Group&) const { return false; }
  // A device of group `g` accesses `iova` (read or write): its domain's translation of that
  // IOVA. Errors: ENXIO if no IOMMU domain serves the group (an emulated group: its mappings are
  // only recorded), which means the device can do no DMA at all.
  virtual Result<DmaTranslation> dma_translate(const Group& g, u64 iova,
                                               iommu::Access access) const {
    (void)g, (void)iova, (void)access;
    return Err{ENXIO};
  }

  // ---- for the tools (core/inspect/) ----
  // The IOMMU domains this driver owns.
  virtual std::vector<std::shared_ptr<HwDomain>> domains() const = 0;
  // The driver's own fields of its container in `list` (those after "iommu" and "domains").
  virtual nlohmann::ordered_json describe() const = 0;
  // Calls `visit` with each mapping `maps` shows, in IOVA order from the first starting at or
  // above `first` (only those of process `pid`, if set), until `visit` returns false.
  virtual void visit_mappings(u64 first, std::optional<pid_t> pid,
                              const std::function<bool(const MappingView&)>& visit) const = 0;
  // `check`: compares the driver's page tables with its record of what they should hold,
  // reporting each difference (and each table checked) to `report`. `where` names the
  // container ("container 3").
  virtual void check(const std::string& where, inspect::CheckReport& report) const = 0;
};

class Container : public std::enable_shared_from_this<Container> {
 public:
  explicit Container(u64 id) : id_(id) {}
  // The container's mu, as a weak reference that keeps the container alive while locked.
  std::weak_ptr<std::mutex> weak_mu() { return std::shared_ptr<std::mutex>(shared_from_this(), &mu); }
  u64 id() const { return id_; }

  std::mutex mu;
  // Under Emulator::mu (and mu when changed):
  std::vector<Group*> groups;
  std::unique_ptr<IommuDriver> driver;

 private:
  u64 id_;
};

// ---- open files of each node kind ------------------------------------------------------------

class ContainerFile final : public File {
 public:
  ContainerFile(u64 id, pid_t opener, std::shared_ptr<Container> c)
      : File(NodeKind::kContainer, id, opener), container(std::move(c)) {}
  std::shared_ptr<Container> container;
};

class GroupFile final : public File {
 public:
  GroupFile(u64 id, pid_t opener, Group* g) : File(NodeKind::kGroup, id, opener), group(g) {}
  Group* group;
};

}  // namespace vfio_emu::core
