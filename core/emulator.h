// The emulated VFIO/iommufd machine: the registry of its nodes, groups, devices, open files and
// IOMMU domains, and open / ioctl / read / write / release on them. Transport-agnostic: the daemon
// drives it through CUSE or FUSE, the unit tests drive it in-process. What a node kind does is
// its own (core/node_type.h); what an ioctl does is the command table's (core/commands.cc,
// which serves them too).
#pragma once

#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/context.h"
#include "core/command.h"
#include "core/locked_memory.h"
#include "core/objects.h"
#include "core/topology.h"
#include "core/trace.h"

namespace vfio_emu::iommu {
class TableBudget;
}

namespace vfio_emu::core {

// A node to present: "vfio/vfio", "vfio/1", "vfio/devices/vfio0", "iommu" (relative to /dev).
struct NodeInfo {
  std::string path;
  NodeKind kind;
  u32 index = 0;  // group id, or cdev index for devices
  u32 mode = 0;   // permission bits, as Linux creates the node
  std::optional<u32> uid, gid;  // owner; unset: the daemon's user
};

// Open node files per uid (Limits::open_files_per_uid), for the ENFILE of open(2).
class OpenFileCounts {
 public:
  explicit OpenFileCounts(u32 limit) : limit_(limit) {}
  // Counts one more open file of `uid`. Errors: ENFILE if `uid` (not 0) has `limit` open.
  Status add(uid_t uid);
  void remove(uid_t uid);
  u32 count(uid_t uid) const;
  u32 limit() const { return limit_; }

 private:
  const u32 limit_;
  mutable std::mutex mu_;
  std::unordered_map<uid_t, u32> open_;
};

class Emulator {
 public:
  // Runs `topology`'s machine with its limits (Topology::limits).
  explicit Emulator(Topology topology);
  ~Emulator();
  Emulator(const Emulator&) = delete;
  Emulator& operator=(const Emulator&) = delete;

  const std::vector<NodeInfo>& nodes() const { return nodes_; }
  const NodeInfo* node(const std::string& path) const;
  const Topology& topology() const { return topology_; }
  const Limits& limits() const { return topology_.limits; }

  // open(2). Errors: ENFILE (the caller's uid has Limits::open_files_per_uid files open), EBUSY
  // (the group is already open, or one of its devices is bound through its cdev); then
  // *conflict (if given) is the id of the open file that holds it.
  Result<std::shared_ptr<File>> open(const NodeInfo& node, const Caller& caller,
                                     u64* conflict = nullptr);
  // The last close of an open file: releases everything it held, as Linux does.
  void release(const std::shared_ptr<File>& file);
  // Errors: whatever the command returns; ENOTTY for an unknown command; ENOMEM when an
  // allocation fails (std::bad_alloc stops here, and the call has changed nothing).
  Result<long> ioctl(File& file, IoctlCall& call);
  // pread/pwrite on a device file (its regions). Errors: EINVAL (not bound, bad offset).
  Result<u64> read(File& file, u64 offset, void* buf, u64 len);
  Result<u64> write(File& file, u64 offset, const void* buf, u64 len);

  // The open file with this id, if it is still open (the transport's "identify").
  std::shared_ptr<File> file(u64 id) const;
  std::vector<std::shared_ptr<File>> files() const;

  // ---- used by the handlers ----
  std::mutex mu;  // see core/objects.h for what it protects
  Group* group_by_id(u32 id) const;
  Device* device_by_cdev(u32 index) const;
  const std::vector<std::unique_ptr<Group>>& groups() const { return groups_; }
  u64 new_id() { return next_id_.fetch_add(1); }
  LockedMemory& locked_memory() { return locked_memory_; }
  // The page-table bytes all domains hold together, against Limits::table_memory.
  const iommu::TableBudget& table_budget() const { return *table_budget_; }
  const OpenFileCounts& open_files() const { return open_files_; }

  // Creates a domain on `unit` and registers it for the tools.
  // Errors: ENOSPC (the unit is out of domain ids), ENOMEM.
  Result<std::shared_ptr<HwDomain>> create_domain(const std::shared_ptr<iommu::Unit>& unit,
                                                  std::weak_ptr<std::mutex> owner_mu,
                                                  std::string owner);
  std::vector<std::shared_ptr<HwDomain>> domains() const;

  // For the tools.
  TraceLog& trace() { return trace_; }
  FaultLog& faults() { return faults_; }
  const CommandCounters& counters() const { return counters_; }

 private:
  // The command of `call` on `file`, with the size rules of its node; sets *command to the entry
  // of the command table that served it (nullptr: unknown).
  Result<long> dispatch(File& file, IoctlCall& call, const Command** command);
  void account(const Command* c, IoctlCall& call, const Result<long>& result);

  Topology topology_;
  std::shared_ptr<iommu::TableBudget> table_budget_;
  void omit_noiommu_devices_unless_enabled();

  std::vector<NodeInfo> nodes_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::map<u32, Device*> devices_by_cdev_;
  std::atomic<u64> next_id_{1};
  LockedMemory locked_memory_;
  OpenFileCounts open_files_;

  struct OpenFile {
    std::weak_ptr<File> file;
    uid_t uid;  // counted in open_files_ until the release
  };
  mutable std::mutex registry_mu_;  // files_ and domains_ (never held while calling out; taken
                                    // inside mu by release)
  std::unordered_map<u64, OpenFile> files_;
  std::vector<std::weak_ptr<HwDomain>> domains_;

  TraceLog trace_{4096};
  FaultLog faults_{1024};
  CommandCounters counters_;
};

}  // namespace vfio_emu::core
