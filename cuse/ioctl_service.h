// Serving one ioctl from a FUSE or CUSE request: choosing how the caller's memory is reached
// (directly, or through the CUSE retry protocol, cuse/request_caller.h), carrying the retry
// rounds and the deferred runs, and turning the core's answer into the reply the kernel expects.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/context.h"
#include "cuse/deferred_calls.h"
#include "cuse/open_files.h"
#include "cuse/request_caller.h"

namespace vfio_emu::core {
class Emulator;
}  // namespace vfio_emu::core

namespace vfio_emu::cuse {

class ThreadGroups;

// One ioctl request as the transport received it.
struct IoctlRequest {
  std::shared_ptr<core::File> file;
  std::string_view node_name;  // "vfio/1", for logs: the open file's own name
  core::Caller caller;
  u32 cmd = 0;
  u64 arg = 0;
  bool unrestricted = false;  // a CUSE request, which may use the retry protocol
  // Retry rounds: the data of the in-iovecs and the room of the out-iovecs (zero on a first
  // round and on FUSE). Owned by the transport's request buffer.
  const u8* in = nullptr;
  size_t in_size = 0;
  size_t out_size = 0;
};

// The answer to one ioctl request, in the kernel's terms. kDefer: not answered yet; the
// transport runs the request again through IoctlService::serve_deferred.
struct IoctlReply {
  enum class Kind : u8 { kDone, kRetry, kDefer } kind = Kind::kDone;
  long result = 0;             // >= 0, or -errno
  std::vector<u8> out;         // retry mode: bytes for the out-iovecs
  std::vector<iovec> in_iovs;  // kRetry: what the next round must carry
  std::vector<iovec> out_iovs;
};

// Serves ioctls for both transports.
class IoctlService {
 public:
  IoctlService(core::Emulator& emu, const NodeIdentity& nodes, ThreadGroups& threads,
               ArgAccess access)
      : emu_(emu), nodes_(nodes), threads_(threads), access_(access) {}

  // Serves `rq` on a request thread. Every exception ends here, as an errno.
  IoctlReply handle(const IoctlRequest& rq) { return handle(rq, true); }
  // Answers `rq` later, on a thread of its own (after handle() said kDefer): `send` gets the
  // reply there. Returns false when no thread can take it now (the queue is full, or the daemon
  // is stopping); the request is then to be answered with EAGAIN.
  bool defer(const IoctlRequest& rq, std::function<void(const IoctlReply&)> send);
  // Answers what is deferred, then ends its threads (after the transport aborted its
  // connection, so that nothing waits on the kernel).
  void stop_deferred() { deferred_.stop(); }

  core::Caller caller_from(pid_t tid, uid_t uid, gid_t gid) const;
  // The transport's open files (see cuse/open_files.h).
  OpenFiles& files() { return files_; }

 private:
  IoctlReply handle(const IoctlRequest& rq, bool on_request_thread);
  IoctlReply serve(const IoctlRequest& rq, bool on_request_thread);
  // `conflict`: where to put the id of the open file the call conflicted with, if any.
  IoctlReply run(const IoctlRequest& rq, RequestCaller& rc, bool retry, u64* conflict = nullptr);

  core::Emulator& emu_;
  const NodeIdentity& nodes_;
  ThreadGroups& threads_;
  ArgAccess access_;
  RetryRounds rounds_;
  OpenFiles files_;
  DeferredCalls deferred_;
  std::mutex unreachable_mu_;
  std::unordered_map<pid_t, bool> unreachable_;  // threads direct access failed on (auto mode)
};

// Answers ioctl request `req` of either transport: now, or, when it must resolve an fd argument,
// later from one of the service's deferred threads (EAGAIN when none can take it).
void serve_ioctl(IoctlService& service, fuse_req_t req, const IoctlRequest& rq);

}  // namespace vfio_emu::cuse
