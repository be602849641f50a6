#include "cuse/ioctl_service.h"

#include <unistd.h>

#include <cerrno>
#include <exception>
#include <new>
#include <string>

#include "core/emulator.h"
#include "core/log.h"
#include "core/uapi/vfio_emu.h"
#include "cuse/thread_groups.h"

namespace vfio_emu::cuse {

namespace {

void send_ioctl_reply(fuse_req_t req, const IoctlReply& reply) {
  if (reply.kind == IoctlReply::Kind::kRetry) {
    fuse_reply_ioctl_retry(req, reply.in_iovs.data(), reply.in_iovs.size(),
                           reply.out_iovs.data(), reply.out_iovs.size());
    return;
  }
  if (!reply.out.empty()) {
    // Retry mode: the out-iovecs get their bytes even when the ioctl fails (Linux copies some
    // structs back on error); a negative result is the errno the caller sees.
    fuse_reply_ioctl(req, static_cast<int>(reply.result), reply.out.data(), reply.out.size());
    return;
  }
  if (reply.result < 0) return (void)fuse_reply_err(req, static_cast<int>(-reply.result));
  fuse_reply_ioctl(req, static_cast<int>(reply.result), nullptr, 0);
}

}  // namespace

void serve_ioctl(IoctlService& service, fuse_req_t req, const IoctlRequest& rq) {
  const IoctlReply reply = service.handle(rq);
  if (reply.kind != IoctlReply::Kind::kDefer) return send_ioctl_reply(req, reply);
  if (!service.defer(rq, [req](const IoctlReply& r) { send_ioctl_reply(req, r); }))
    fuse_reply_err(req, EAGAIN);
}

core::Caller IoctlService::caller_from(pid_t tid, uid_t uid, gid_t gid) const {
  core::Caller c;
  c.tid = tid;
  c.pid = threads_.tgid_of(tid);
  c.uid = uid;
  c.gid = gid;
  return c;
}

IoctlReply IoctlService::run(const IoctlRequest& rq, RequestCaller& rc, bool retry,
                             u64* conflict) {
  core::IoctlCall call;
  call.cmd = rq.cmd;
  call.arg = rq.arg;
  call.caller = rq.caller;
  call.node_name = rq.node_name;
  call.mem = &rc;
  call.fds = &rc;
  call.env = &rc;
  auto r = emu_.ioctl(*rq.file, call);
  if (conflict != nullptr) *conflict = call.conflict;
  IoctlReply reply;
  if (!r && r.error() == kNeedRetry) {
    reply.kind = IoctlReply::Kind::kRetry;
    reply.in_iovs = rc.next_in();
    reply.out_iovs = rc.next_out();
    return reply;
  }
  if (!r && r.error() == kNeedDefer) {
    reply.kind = IoctlReply::Kind::kDefer;
    return reply;
  }
  reply.result = r ? *r : -static_cast<long>(r.error());
  if (retry) reply.out = rc.out_data();
  return reply;
}

IoctlReply IoctlService::handle(const IoctlRequest& rq, bool on_request_thread) {
  try {
    return serve(rq, on_request_thread);
  } catch (const std::bad_alloc&) {
    logger("cuse")->warn("{} pid {} cmd {:#x} arg {:#x}: out of memory: ENOMEM", rq.node_name,
                         rq.caller.pid, rq.cmd, rq.arg);
    IoctlReply reply;
    reply.result = -ENOMEM;
    return reply;
  } catch (const std::exception& e) {
    logger("cuse")->error("{} pid {} cmd {:#x} arg {:#x}: {}: EIO", rq.node_name, rq.caller.pid,
                          rq.cmd, rq.arg, e.what());
    IoctlReply reply;
    reply.result = -EIO;
    return reply;
  }
}

bool IoctlService::defer(const IoctlRequest& rq, std::function<void(const IoctlReply&)> send) {
  auto log = logger("cuse");
  log->debug("{} pid {} cmd {:#x}: resolving an fd argument off the request threads",
             rq.node_name, rq.caller.tid, rq.cmd);
  // The request's name and in data live in the transport's buffers, gone once the request
  // thread returns: the deferred call keeps copies.
  struct Held {
    IoctlRequest rq;
    std::string name;
    std::vector<u8> in;
  };
  auto held = std::make_shared<Held>();
  held->rq = rq;
  held->name.assign(rq.node_name);
  held->rq.node_name = held->name;
  if (rq.in_size != 0) held->in.assign(rq.in, rq.in + rq.in_size);
  held->rq.in = held->in.data();
  const bool queued = deferred_.submit(
      [this, held, send = std::move(send)] { send(handle(held->rq, false)); });
  if (!queued)
    log->warn("{} pid {} cmd {:#x}: {} calls already wait to resolve fd arguments: EAGAIN",
              rq.node_name, rq.caller.tid, rq.cmd, DeferredCalls::kMaxQueued);
  return queued;
}

IoctlReply IoctlService::serve(const IoctlRequest& rq, bool on_request_thread) {
  IoctlReply reply;
  const core::Caller& caller = rq.caller;
  const u32 cmd = rq.cmd;
  // Only this daemon may ask which open file an fd is (see RequestCaller::resolve); to anyone
  // else the number is unknown, and gets what any unknown ioctl gets on this file.
  if (cmd == uapi::VFIO_EMU_IDENTIFY && caller.pid == getpid()) {
    reply.result = static_cast<long>(rq.file->id());
    return reply;
  }
  const size_t in_size = rq.in_size;
  const size_t out_size = rq.out_size;
  const bool unrestricted = rq.unrestricted;

  // Retry mode when asked to, for a caller we cannot see (pid 0) or have failed to reach, and
  // for every round after the first of a retry exchange.
  bool retry = unrestricted && (access_ == ArgAccess::kRetry || in_size != 0 || out_size != 0);
  if (unrestricted && access_ == ArgAccess::kAuto && !retry) {
    std::lock_guard lock(unreachable_mu_);
    retry = caller.pid == 0 || unreachable_.count(caller.tid) != 0;
  }
  RequestCaller rc(emu_, nodes_, caller);
  rc.on_request_thread(on_request_thread);
  if (!retry) {
    rc.use_direct(unrestricted && access_ == ArgAccess::kAuto);
    u64 conflict = 0;
    reply = run(rq, rc, false, &conflict);
    // A conflict with a file that was just closed (its RELEASE on the way, cuse/open_files.h):
    // once more after it. Only commands the table marks kWaitsForClosedFile (they change nothing
    // when they fail) name a conflicting file.
    if (reply.kind == IoctlReply::Kind::kDone &&
        (reply.result == -EBUSY || reply.result == -EINVAL) && files_.settle(conflict)) {
      RequestCaller again(emu_, nodes_, caller);
      again.on_request_thread(on_request_thread);
      again.use_direct(unrestricted && access_ == ArgAccess::kAuto);
      reply = run(rq, again, false);
    }
    if (reply.kind != IoctlReply::Kind::kRetry || !rc.unreachable()) return reply;
    // The caller's memory is out of direct reach: this request, and the thread's later ones,
    // use the retry protocol.
    logger("cuse")->debug("{} pid {}: caller unreachable, falling back to the retry protocol",
                          rq.node_name, caller.tid);
    std::lock_guard lock(unreachable_mu_);
    if (unreachable_.size() > 4096) unreachable_.clear();
    unreachable_[caller.tid] = true;
  }
  RetryRounds::Pending prev;
  if (in_size != 0 || out_size != 0) {
    if (!rounds_.take(caller.tid, rq.file->id(), cmd, rq.arg, in_size, out_size, &prev)) {
      logger("cuse")->warn("{} pid {} cmd {:#x}: retry round with {:#x}/{:#x} bytes matches no "
                           "request of ours: EIO", rq.node_name, caller.tid, cmd, in_size,
                           out_size);
      reply.result = -EIO;
      return reply;
    }
  }
  rc.use_retry(prev.in, rq.in, in_size, prev.out);
  reply = run(rq, rc, true);
  if (reply.kind == IoctlReply::Kind::kRetry)
    rounds_.put(caller.tid, RetryRounds::Pending{rq.file->id(), cmd, rq.arg, reply.in_iovs,
                                                 reply.out_iovs});
  else if (reply.kind == IoctlReply::Kind::kDefer && (in_size != 0 || out_size != 0))
    rounds_.put(caller.tid, std::move(prev));  // the deferred run continues this round
  return reply;
}

}  // namespace vfio_emu::cuse
