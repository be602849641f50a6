// The FUSE transport: a mount whose regular files are the nodes (DIR/vfio/vfio, DIR/vfio/1,
// DIR/vfio/devices/vfio0, DIR/iommu). FUSE files only get restricted ioctls: VFIO's _IO()
// numbers carry no size, so the kernel passes only the raw argument, and the daemon reads and
// writes the caller's memory with process_vm_readv/writev on the caller's thread.
// Device files can be mapped: their BARs by FUSE passthrough onto a memfd (cuse/fuse_passthrough.h),
// when the kernel offers it and the daemon has CAP_SYS_ADMIN; otherwise mmap gives ENODEV and
// GET_REGION_INFO reports no VFIO_REGION_INFO_FLAG_MMAP.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/emulator.h"
#include "cuse/open_files.h"
#include "cuse/ioctl_service.h"
#include "cuse/request_caller.h"
#include "cuse/sysfs_files.h"
#include "cuse/thread_groups.h"

namespace vfio_emu::cuse {

class FuseTransport final : public NodeIdentity {
 public:
  FuseTransport(core::Emulator& emu, ThreadGroups& threads, std::string dir);
  ~FuseTransport() override;

  // Creates the directory (and parents) and mounts. Errors: the errno of what failed.
  Status mount();
  // Serves requests (multithreaded) until SIGINT, SIGTERM or SIGHUP; then unmounts, which
  // leaves clients still holding fds with ENOTCONN rather than a hang.
  int run();
  const std::string& dir() const { return dir_; }

  bool is_ours(const struct stat& st) const override;
  // Whether device BARs are mapped by passthrough (decided at INIT).
  bool bar_mmap() const { return bar_mmap_.load(); }

 private:
  struct Inode {
    std::string name;
    fuse_ino_t parent = 0;
    bool dir = false;
    const core::NodeInfo* node = nullptr;  // a node's file
    const SysfsFile* sysfs = nullptr;      // a sysfs or debugfs file (cuse/sysfs_files.h)
    std::map<std::string, fuse_ino_t> children;
  };

  static FuseTransport& self(fuse_req_t req);
  static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         fuse_file_info* fi);
  static void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                       fuse_file_info* fi);
  static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                         fuse_file_info* fi);
  static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* arg,
                       fuse_file_info* fi, unsigned flags, const void* in_buf, size_t in_bufsz,
                       size_t out_bufsz);

  // The raw channel (fuse_session_custom_io), where passthrough is negotiated.
  static ssize_t channel_read(int fd, void* buf, size_t len, void* userdata);
  static ssize_t channel_writev(int fd, iovec* iov, int count, void* userdata);
  // After INIT's reply asked for passthrough: registers every device's BAR memfd as a backing
  // file and makes the BARs mappable (core enable_bar_mmap), or leaves mmap off with a log line.
  void start_bar_mmap(int fuse_fd);
  // Registers the device's BAR memory as the backing file of each mappable resource file.
  void register_resource_backing(int fuse_fd);
  // The backing id for opens of `node` or of resource file `file`, or -1.
  int backing_id(const core::NodeInfo* node);
  int backing_id(const SysfsFile* file);
  template <typename Key>
  int backing_id(const Key* key, const std::map<const Key*, int>& ids, const std::string& path);

  // The inode of `path` (a file; its directories made on the way), made if new.
  fuse_ino_t add_path(const std::string& path);
  // An open sysfs file: its contents as of the open.
  struct SysfsHandle {
    std::string content;
    FuseTransport* owner;
    SysfsHandle(std::string c, FuseTransport* o) : content(std::move(c)), owner(o) {}
    ~SysfsHandle() { owner->sysfs_bytes_.fetch_sub(content.size()); }
    SysfsHandle(const SysfsHandle&) = delete;
    SysfsHandle& operator=(const SysfsHandle&) = delete;
  };
  // At most this many bytes of contents held by the open sysfs files together (ENOMEM beyond).
  static constexpr u64 kSysfsBytesMax = u64{256} << 20;
  std::atomic<u64> sysfs_bytes_{0};
  const SysfsFile* sysfs_of(fuse_ino_t ino) const;
  void open_sysfs(fuse_req_t req, const SysfsFile& f, fuse_file_info* fi);

  struct stat attr_of(fuse_ino_t ino) const;
  core::Caller caller_of(fuse_req_t req) const;

  core::Emulator& emu_;
  ThreadGroups& threads_;
  IoctlService service_;
  SysfsFiles sysfs_;
  std::string dir_;
  std::vector<Inode> inodes_;  // index = ino - 1
  fuse_session* se_ = nullptr;
  dev_t mount_dev_ = 0;
  bool mounted_ = false;
  std::atomic<u64> init_unique_{0};          // the INIT request, until its reply
  std::atomic<bool> kernel_passthrough_{false};  // INIT offered FUSE_PASSTHROUGH
  std::atomic<bool> bar_mmap_{false};
  std::mutex backing_mu_;
  std::map<const core::NodeInfo*, int> backing_ids_;  // under backing_mu_
  std::map<const SysfsFile*, int> resource_backing_ids_;  // under backing_mu_
  // From INIT's reply asking for passthrough until the devices' backing files are registered
  // (start_bar_mmap): the kernel already sends OPENs then, and an open of a device node waits
  // (bounded) so that it is not made without its backing file (its mmap would be ENODEV).
  bool bar_mmap_pending_ = false;  // under backing_mu_
  std::condition_variable backing_cv_;
};

}  // namespace vfio_emu::cuse
