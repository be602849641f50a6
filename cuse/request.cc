#include "cuse/request.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/log.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "cuse/caller_process.h"
#include "cuse/fd_probe.h"
#include "cuse/exit_watcher.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL  // Linux 6.9: a pidfd for a thread, not only a leader
#endif

namespace vfio_emu::cuse {
namespace {

int pidfd_open_thread(pid_t tid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, tid, PIDFD_THREAD));
  if (fd < 0 && errno == EINVAL) fd = static_cast<int>(syscall(SYS_pidfd_open, tid, 0));
  return fd;
}

bool alive(int pidfd) { return syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0; }

size_t total(const std::vector<iovec>& v) {
  size_t n = 0;
  for (const iovec& i : v) n += i.iov_len;
  return n;
}

bool covers(const iovec& v, u64 addr, size_t len) {
  const u64 base = reinterpret_cast<u64>(v.iov_base);
  return addr >= base && len <= v.iov_len && addr - base <= v.iov_len - len;
}

}  // namespace

// ---- ThreadGroups ----------------------------------------------------------------------------

namespace {

size_t default_max_entries() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return 4096;
  return std::clamp<size_t>(static_cast<size_t>(lim.rlim_cur) / 4, 16, 4096);
}

}  // namespace

ThreadGroups::ThreadGroups(size_t max_entries)
    : max_entries_(max_entries != 0 ? max_entries : default_max_entries()) {}

size_t ThreadGroups::size() const {
  std::lock_guard lock(cache_->mu);
  return cache_->entries.size();
}

pid_t ThreadGroups::tgid_of(pid_t tid) {
  if (tid <= 0) return 0;
  {
    std::lock_guard lock(cache_->mu);
    auto it = cache_->entries.find(tid);
    if (it != cache_->entries.end()) {
      // Dead but not yet dropped by the watcher (it closes the pidfd): a reused tid.
      if (alive(it->second.pidfd)) return it->second.tgid;
      cache_->entries.erase(it);
    }
  }
  // The daemon's own threads (its identify ioctls, its closes of the fds it fetched) are not
  // cached: the cache is for clients, and would hold a pidfd for each of the daemon's threads.
  char own_task[64];
  std::snprintf(own_task, sizeof(own_task), "/proc/self/task/%d", tid);
  if (access(own_task, F_OK) == 0) return getpid();
  // The pidfd first, the lookup second, the liveness check last: if the tid was reused in
  // between, the pidfd (of the old thread) is dead and nothing is cached.
  const int pidfd = pidfd_open_thread(tid);
  if (pidfd < 0) return 0;
  const pid_t tgid = thread_group_of(tid);
  if (tgid == 0 || !alive(pidfd)) {
    close(pidfd);
    return 0;
  }
  {
    std::lock_guard lock(cache_->mu);
    // Full of live callers: this one is answered, not cached (it is looked up again next time).
    if (cache_->entries.size() >= max_entries_) {
      close(pidfd);
      return tgid;
    }
    if (!cache_->entries.emplace(tid, Entry{pidfd, tgid}).second) {
      close(pidfd);  // another request of the thread cached it meanwhile
      return tgid;
    }
  }
  // Dropped as soon as the thread exits. The pidfd is compared: by then the tid may have been
  // cached again, for a new thread.
  std::weak_ptr<Cache> weak = cache_;
  if (!ExitWatcher::instance().watch(pidfd, [weak, tid, pidfd] {
        if (auto cache = weak.lock()) {
          std::lock_guard lock(cache->mu);
          auto it = cache->entries.find(tid);
          if (it != cache->entries.end() && it->second.pidfd == pidfd) cache->entries.erase(it);
        }
      })) {
    // Not watched: not kept either.
    std::lock_guard lock(cache_->mu);
    auto it = cache_->entries.find(tid);
    if (it != cache_->entries.end() && it->second.pidfd == pidfd) cache_->entries.erase(it);
    close(pidfd);
  }
  return tgid;
}

// ---- RetryRounds -----------------------------------------------------------------------------

bool RetryRounds::take(pid_t tid, u64 fh, u32 cmd, u64 arg, size_t in_size, size_t out_size,
                       Pending* p) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(tid);
  if (it == pending_.end()) return false;
  Pending found = std::move(it->second);
  pending_.erase(it);
  if (found.fh != fh || found.cmd != cmd || found.arg != arg || total(found.in) != in_size ||
      total(found.out) != out_size)
    return false;
  *p = std::move(found);
  return true;
}

void RetryRounds::put(pid_t tid, Pending p) {
  std::lock_guard lock(mu_);
  pending_[tid] = std::move(p);
}

// ---- RequestCaller: memory -------------------------------------------------------------------

void RequestCaller::use_retry(const std::vector<iovec>& in_iovs, const u8* in, size_t in_size,
                              const std::vector<iovec>& out_iovs) {
  retry_ = true;
  in_iovs_ = in_iovs;
  in_data_.assign(in, in + in_size);
  out_iovs_ = out_iovs;
  next_in_ = in_iovs;
  next_out_ = out_iovs;
  // Each out-iovec starts as the caller's current bytes (the kernel copies them back whole, so
  // bytes the handler does not write must keep their value). Out ranges are always asked for
  // as in ranges too, so the bytes are at hand.
  out_shadow_.clear();
  for (const iovec& o : out_iovs) {
    std::vector<u8> shadow(o.iov_len, 0);
    if (const u8* src = find_in(reinterpret_cast<u64>(o.iov_base), o.iov_len))
      std::memcpy(shadow.data(), src, o.iov_len);
    out_shadow_.push_back(std::move(shadow));
  }
}

const u8* RequestCaller::find_in(u64 addr, std::size_t len) const {
  size_t off = 0;
  for (const iovec& v : in_iovs_) {
    if (covers(v, addr, len) && off + v.iov_len <= in_data_.size())
      return in_data_.data() + off + (addr - reinterpret_cast<u64>(v.iov_base));
    off += v.iov_len;
  }
  return nullptr;
}

u8* RequestCaller::find_out(u64 addr, std::size_t len) {
  for (size_t i = 0; i < out_iovs_.size(); ++i)
    if (covers(out_iovs_[i], addr, len))
      return out_shadow_[i].data() + (addr - reinterpret_cast<u64>(out_iovs_[i].iov_base));
  return nullptr;
}

void RequestCaller::ask_in(u64 addr, std::size_t len) {
  for (const iovec& v : next_in_)
    if (covers(v, addr, len)) return;
  next_in_.push_back(iovec{reinterpret_cast<void*>(addr), len});
}

std::vector<u8> RequestCaller::out_data() const {
  std::vector<u8> out;
  for (const auto& s : out_shadow_) out.insert(out.end(), s.begin(), s.end());
  return out;
}

Status RequestCaller::read(u64 addr, void* dst, std::size_t len) {
  if (len == 0) return {};
  if (retry_) {
    if (const u8* src = find_in(addr, len)) {
      std::memcpy(dst, src, len);
      return {};
    }
    ask_in(addr, len);
    if (next_in_.size() > kMaxRetryIovecs || total(next_in_) > kMaxRetryBytes) return err(ENOMEM);
    return err(kNeedRetry);
  }
  Status st = caller_.tid > 0 ? process_read(caller_.tid, addr, dst, len) : err(ESRCH);
  if (st || st.error() == EFAULT) return st;
  // The caller cannot be reached directly (another pid namespace, no ptrace rights).
  unreachable_ = true;
  if (fallback_) return err(kNeedRetry);
  logger("cuse")->warn("pid {}: cannot read its memory directly (errno {}); use --arg-access "
                       "retry or auto with CUSE", caller_.tid, st.error());
  return err(EPERM);
}

std::size_t RequestCaller::read_ahead(u64 addr, void* dst, std::size_t len) {
  // Only a direct read can look further than the handler will without the caller noticing: the
  // retry protocol would make the kernel fetch (and fault on) bytes Linux never touches.
  if (retry_ || caller_.tid <= 0 || len == 0) return 0;
  return process_read_some(caller_.tid, addr, dst, len);
}

Status RequestCaller::will_write(u64 addr, std::size_t len) {
  if (!retry_ || len == 0 || find_out(addr, len) != nullptr) return {};
  next_out_.push_back(iovec{reinterpret_cast<void*>(addr), len});
  ask_in(addr, len);
  if (next_out_.size() + next_in_.size() > kMaxRetryIovecs || total(next_out_) > kMaxRetryBytes ||
      total(next_in_) > kMaxRetryBytes)
    return err(ENOMEM);
  return err(kNeedRetry);
}

Status RequestCaller::write(u64 addr, const void* src, std::size_t len) {
  if (len == 0) return {};
  if (retry_) {
    if (u8* dst = find_out(addr, len)) {
      std::memcpy(dst, src, len);
      return {};
    }
    logger("cuse")->error("write of {:#x} bytes at {:#x} was not announced with will_write",
                          len, addr);
    return err(EFAULT);
  }
  Status st = caller_.tid > 0 ? process_write(caller_.tid, addr, src, len) : err(ESRCH);
  if (st || st.error() == EFAULT) return st;
  return err(EPERM);
}

// ---- RequestCaller: fds and environment ------------------------------------------------------

Result<core::UniqueFd> RequestCaller::fetch_caller_fd(int fd) {
  auto log = logger("cuse");
  if (fd < 0) return err(EBADF);
  const int pidfd = pidfd_open_thread(caller_.tid);
  if (pidfd < 0) {
    // A caller we cannot see (another pid namespace: the CUSE retry protocol's callers) or that
    // is gone: its fd numbers mean nothing to us.
    log->info("pid {}: pidfd_open failed (errno {}) fetching its fd {}: EBADF", caller_.tid, errno,
              fd);
    return err(EBADF);
  }
  const int local = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  const int getfd_errno = errno;
  close(pidfd);
  if (local < 0) {
    if (getfd_errno != EBADF)
      log->warn("pid {}: pidfd_getfd({}) failed: errno {} (ptrace rights?): EBADF", caller_.tid,
                fd, getfd_errno);
    return err(EBADF);
  }
  return core::UniqueFd(local);
}

Result<std::shared_ptr<core::File>> RequestCaller::resolve(int fd) {
  auto log = logger("cuse");
  if (fd < 0) return err(EBADF);
  // What the file is, from /proc: a file that is not ours is never fetched, so never closed by
  // us (a FLUSH that a stalled filesystem would not answer) nor stat'ed (a GETATTR).
  auto facts = probe_caller_fd(caller_.tid, fd);
  if (!facts) {
    log->debug("pid {}: fd {} is not an open fd of the caller: EBADF", caller_.tid, fd);
    return err(EBADF);
  }
  if (!nodes_.is_ours(facts->st)) {
    // Not one of our nodes: nothing else is done with it, least of all an ioctl.
    log->debug("pid {}: fd {} is not a vfio-emu node ({} dev {:#x} ino {:#x} mode {:o})",
               caller_.tid, fd, facts->link, static_cast<u64>(facts->st.st_dev),
               static_cast<u64>(facts->st.st_ino), facts->st.st_mode);
    return std::shared_ptr<core::File>();
  }
  // Which open file it is: only the kernel knows, and it asks this daemon. Not on a request
  // thread, which must never wait on a request to its own daemon.
  if (on_request_thread_) return err(kNeedDefer);
  core::UniqueFd local = TRY(fetch_caller_fd(fd));
  // The caller may have put another file behind the number since the probe.
  auto again = probe_own_fd(local.get());
  if (!again || !nodes_.is_ours(again->st)) {
    log->info("pid {}: fd {} changed under us while being resolved: treated as not ours",
              caller_.tid, fd);
    close_foreign(local.release());
    return std::shared_ptr<core::File>();
  }
  const int id = ::ioctl(local.get(), uapi::VFIO_EMU_IDENTIFY, 0);
  const int id_errno = errno;
  if (id <= 0) {
    log->warn("pid {}: fd {} is ours but did not identify itself (errno {})", caller_.tid, fd,
              id_errno);
    return err(EBADF);
  }
  auto file = emu_.file(static_cast<u64>(id));
  if (!file) return err(EBADF);
  return file;
}

Result<core::UniqueFd> RequestCaller::take_eventfd(int fd) {
  if (fd < 0) return err(EBADF);
  auto facts = probe_caller_fd(caller_.tid, fd);
  if (!facts) return err(EBADF);
  if (!is_eventfd(*facts)) return err(EINVAL);
  core::UniqueFd local = TRY(fetch_caller_fd(fd));
  if (!is_eventfd_link(local.get())) {  // swapped since the probe
    close_foreign(local.release());
    return err(EINVAL);
  }
  return local;
}

u64 RequestCaller::dma_accessible(u64 addr, u64 len, core::Prot prot) {
  // A caller we cannot see (another pid namespace) cannot be checked: its word is taken.
  return caller_.pid > 0 ? cuse::dma_accessible(caller_.pid, addr, len, prot) : len;
}

u64 RequestCaller::memlock_limit() {
  return caller_.pid > 0 ? cuse::memlock_limit(caller_.pid) : iommu::kU64Max;
}

bool RequestCaller::capable(int cap) { return caller_.tid > 0 && has_capability(caller_.tid, cap); }

}  // namespace vfio_emu::cuse

namespace vfio_emu::cuse {

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
    // once more after it; these ioctls change nothing when they fail.
    if (reply.kind == IoctlReply::Kind::kDone &&
        (reply.result == -EBUSY || reply.result == -EINVAL) &&
        (cmd == uapi::VFIO_DEVICE_BIND_IOMMUFD || cmd == uapi::VFIO_EMU_DEVICE_USE_GROUP) &&
        files_.settle(conflict)) {
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
