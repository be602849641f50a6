// The seam between the emulator (a registry of nodes and open files) and the node kinds: each
// kind (container, group, device, iommufd) owns how its files are opened, released, and which
// commands of the table serve an ioctl on them. core/emulator.cc and core/commands.cc know the
// kinds only through this interface; each kind implements it next to its handlers.
#pragma once

#include <memory>
#include <mutex>

#include "core/command.h"
#include "core/context.h"
#include "core/objects.h"

namespace vfio_emu::core {

struct NodeInfo;

// Which rows of the command table serve a call, and the lock they run under.
struct Route {
  Backend backend = Backend::kNone;
  std::unique_lock<std::mutex> lock;  // held while the handler runs (a container's mu)
  std::shared_ptr<void> hold;         // whatever else the call holds (a device kept awake)
};

class NodeType {
 public:
  virtual ~NodeType() = default;

  // open(2) of `node` as file `id`. Errors: ENODEV, EBUSY (then *conflict, if given, is the id
  // of the open file that holds the node).
  virtual Result<std::shared_ptr<File>> open(Emulator& emu, const NodeInfo& node, u64 id,
                                             const Caller& caller, u64* conflict) const = 0;
  // The last close of `file` (Emulator::mu held): gives back everything it held, as Linux does.
  virtual void release(Emulator& emu, const std::shared_ptr<File>& file) const = 0;

  // Which backend's rows serve `call` on `file`, before the command is looked up (a container
  // routes to its IOMMU driver and fails without one). Errors: whatever the kind checks first.
  virtual Result<Route> route(Emulator&, File&, IoctlCall& call) const {
    (void)call;
    return Route{};
  }
  // Checks after the lookup, before the argument is read (`c` is nullptr for an unknown
  // command): a device file refuses everything but kBeforeBind commands until it is bound, and
  // keeps the device awake (route.hold) for the rest.
  virtual Status admit(Emulator&, File&, IoctlCall&, const Command* c, Route& route) const {
    (void)c;
    (void)route;
    return {};
  }

  // pread/pwrite. Errors: EINVAL (the default: a node without regions).
  virtual Result<u64> read(Emulator&, File&, u64 offset, void* buf, u64 len) const {
    (void)offset, (void)buf, (void)len;
    return Err{EINVAL};
  }
  virtual Result<u64> write(Emulator&, File&, u64 offset, const void* buf, u64 len) const {
    (void)offset, (void)buf, (void)len;
    return Err{EINVAL};
  }
};

// The kinds, each defined with its handlers.
const NodeType& container_node_type();  // core/container.cc
const NodeType& group_node_type();      // core/group.cc
const NodeType& device_node_type();     // core/device.cc
const NodeType& iommufd_node_type();    // core/iommufd/main.cc

const NodeType& node_type(NodeKind kind);

// Gives every device model of `emu` its DMA port and interrupt sink (connect), or takes them away
// and stops the models' engines (before the emulator's logs and domains go). core/device.cc.
void connect_device_models(Emulator& emu, bool connect);

// Makes the BARs the models call mappable mappable: a memfd per device holding them
// (devices/bar_window.h), attached to the model. Called once by a transport that can map a
// device file onto it (the FUSE transport with passthrough); from then on GET_REGION_INFO
// reports VFIO_REGION_INFO_FLAG_MMAP for those BARs. Errors: the memfd's errno (then no device
// has mappable BARs). core/device.cc.
Status enable_bar_mmap(Emulator& emu);
// The memfd backing device node `node`'s mappable BARs, or -1 (not a device node, nothing
// mappable, or mmap not enabled). The fd stays the emulator's.
int device_bar_fd(Emulator& emu, const NodeInfo& node);

}  // namespace vfio_emu::core
