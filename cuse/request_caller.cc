#include "cuse/request_caller.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/emulator.h"
#include "core/log.h"
#include "core/uapi/vfio_emu.h"
#include "cuse/caller_process.h"
#include "cuse/fd_probe.h"

namespace vfio_emu::cuse {
namespace {

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

// A program's mapping of one of our nodes is a device's BAR: FUSE passthrough maps the BAR
// memfd, and /proc shows the node's st_dev and inode for it (file_user_inode). FUSE nodes are
// regular files; CUSE nodes cannot be mapped at all.
bool RequestCaller::is_device_bar(dev_t dev, u64 ino) const {
  struct stat st {};
  st.st_dev = dev;
  st.st_ino = static_cast<ino_t>(ino);
  st.st_mode = S_IFREG;
  return nodes_.is_ours(st);
}

u64 RequestCaller::dma_accessible(u64 addr, u64 len, core::Prot prot) {
  // A caller we cannot see (another pid namespace) cannot be checked: its word is taken.
  if (caller_.pid <= 0) return len;
  // Type1 maps a BAR (Linux: follow_fault_pfn of the VM_PFNMAP mapping), writable as the
  // program mapped it, which `vfio-emu run` may have made read-only to trap its stores.
  return cuse::dma_accessible(caller_.pid, addr, len, prot, {},
                              [this](dev_t dev, u64 ino) { return is_device_bar(dev, ino); });
}

u64 RequestCaller::dma_pinnable(u64 addr, u64 len, core::Prot prot) {
  if (caller_.pid <= 0) return len;
  // Linux maps BARs VM_PFNMAP, which pin_user_pages() refuses.
  return cuse::dma_accessible(caller_.pid, addr, len, prot,
                              [this](dev_t dev, u64 ino) { return is_device_bar(dev, ino); });
}

u32 RequestCaller::pinned_page_shift(u64 addr, u64 len, u32 natural_shift, u32 base_shift) {
  if (caller_.pid <= 0) return CallerEnv::pinned_page_shift(addr, len, natural_shift, base_shift);
  return cuse::pinned_page_shift(caller_.pid, addr, len, natural_shift, base_shift);
}

u64 RequestCaller::memlock_limit() {
  return caller_.pid > 0 ? cuse::memlock_limit(caller_.pid) : iommu::kU64Max;
}

bool RequestCaller::capable(int cap) { return caller_.tid > 0 && has_capability(caller_.tid, cap); }

}  // namespace vfio_emu::cuse
