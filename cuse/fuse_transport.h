// The FUSE transport: a mount whose regular files are the nodes (DIR/vfio/vfio, DIR/vfio/1,
// DIR/vfio/devices/vfio0, DIR/iommu). FUSE files only get restricted ioctls: VFIO's _IO()
// numbers carry no size, so the kernel passes only the raw argument, and the daemon reads and
// writes the caller's memory with process_vm_readv/writev on the caller's thread.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <map>
#include <string>
#include <vector>

#include "core/emulator.h"
#include "cuse/open_files.h"
#include "cuse/ioctl_service.h"
#include "cuse/request_caller.h"
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

 private:
  struct Inode {
    std::string name;
    fuse_ino_t parent = 0;
    bool dir = false;
    const core::NodeInfo* node = nullptr;  // files only
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
  static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* arg,
                       fuse_file_info* fi, unsigned flags, const void* in_buf, size_t in_bufsz,
                       size_t out_bufsz);

  struct stat attr_of(fuse_ino_t ino) const;
  core::Caller caller_of(fuse_req_t req) const;

  core::Emulator& emu_;
  ThreadGroups& threads_;
  IoctlService service_;
  std::string dir_;
  std::vector<Inode> inodes_;  // index = ino - 1
  fuse_session* se_ = nullptr;
  dev_t mount_dev_ = 0;
  bool mounted_ = false;
};

}  // namespace vfio_emu::cuse
