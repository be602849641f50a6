// The CUSE transport: one character device per node (/dev/<prefix><node>), each its own CUSE
// session on its own channel: /dev/cuse, or a channel handed over with --cuse-fd NODE=FD (a
// privilege-separated parent, or a test that plays the kernel over a SOCK_SEQPACKET socketpair).
// Ioctls are unrestricted: arguments are reached directly (process_vm_*) or through the
// kernel's FUSE_IOCTL_RETRY protocol.
//
// CUSE has no mmap and passes position 0 on every read and write, so device regions, which VFIO
// reaches at offsets, are reachable only through the FUSE transport: a read or write of a bound
// device here answers ESPIPE (cuse_rw_check in cuse/transport.h).
#pragma once

#define FUSE_USE_VERSION 314
#include <cuse_lowlevel.h>
#include <fuse_lowlevel.h>
#include <pthread.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/emulator.h"
#include "cuse/open_files.h"
#include "cuse/ioctl_service.h"
#include "cuse/request_caller.h"
#include "cuse/thread_groups.h"

namespace vfio_emu::cuse {

class CuseTransport final : public NodeIdentity {
 public:
  CuseTransport(core::Emulator& emu, ThreadGroups& threads, std::string prefix, ArgAccess access);
  ~CuseTransport() override;

  // Sets up one session per node: on the given channel fds (then only those nodes are served),
  // or else on a fresh open of /dev/cuse each. Errors: ENOENT (an unknown node name), the errno
  // of opening /dev/cuse, EEXIST (real VFIO nodes exist where ours would go).
  Status start(const std::map<std::string, int>& channel_fds);
  // Serves until every channel is closed by its other end, or SIGINT/SIGTERM/SIGHUP. Calls
  // `on_ready` once every session has answered its CUSE_INIT, i.e. once every node exists.
  int run(const std::function<void()>& on_ready);

  bool is_ours(const struct stat& st) const override;

 private:
  struct Session {
    CuseTransport* transport = nullptr;
    const core::NodeInfo* node = nullptr;
    std::string devname;
    int fd = -1;
    bool socket = false;
    fuse_session* se = nullptr;
    pthread_t thread{};
    bool running = false;
    bool aborted = false;
  };

  static Session& session(fuse_req_t req);
  static void op_init_done(void* userdata);
  static void op_open(fuse_req_t req, fuse_file_info* fi);
  static void op_release(fuse_req_t req, fuse_file_info* fi);
  static void op_read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi);
  static void op_write(fuse_req_t req, const char* buf, size_t size, off_t off,
                       fuse_file_info* fi);
  static void op_ioctl(fuse_req_t req, int cmd, void* arg, fuse_file_info* fi, unsigned flags,
                       const void* in_buf, size_t in_bufsz, size_t out_bufsz);
  static void* session_main(void* arg);

  Status add_session(const core::NodeInfo& node, int fd, bool socket);
  // Aborts every session's connection in the kernel (once the loops are done).
  void abort_connections();

  core::Emulator& emu_;
  IoctlService service_;
  std::string prefix_;
  std::vector<std::unique_ptr<Session>> sessions_;
  mutable std::mutex rdev_mu_;
  std::set<dev_t> rdevs_;  // device numbers the kernel gave our nodes
  std::atomic<int> live_{0};
  std::atomic<size_t> inited_{0};
  pthread_t main_thread_{};
};

}  // namespace vfio_emu::cuse
