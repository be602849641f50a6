// Drives the core in-process, the way a C program drives the real nodes: open() returns an fd,
// ioctl() returns a value or -1 with errno set, close() releases. The caller is this very
// process: its memory is reached with process_vm_readv/writev on itself and its mappings through
// /proc/self/maps, with the same code the daemon uses for real callers, so EFAULT is real.
//
//   Harness h;
//   int c = h.open("vfio/vfio");
//   CHECK(h.ioctl(c, VFIO_GET_API_VERSION) == 0);
//   CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == EINVAL);
#pragma once

#include <linux/capability.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "core/emulator.h"
#include "cuse/caller_process.h"
#include "cuse/fd_probe.h"

namespace vfio_emu::test {

using core::u32;
using core::u64;

// The fd numbers of a harness are private to it (from 100 up) and mean nothing to the kernel.
class Harness : public core::UserMemory, public core::FdResolver, public core::CallerEnv {
 public:
  explicit Harness(core::Topology t = core::Topology::builtin()) : emu(std::move(t)) {
    caller.pid = getpid();
    caller.tid = gettid();
    caller.uid = getuid();
    caller.gid = getgid();
  }
  ~Harness() override {
    while (!fds_.empty()) close(fds_.begin()->first);
  }

  // open(2) of a node path such as "vfio/vfio"; -1 with errno on failure.
  int open(const std::string& path) {
    const core::NodeInfo* n = emu.node(path);
    if (n == nullptr) return errno = ENOENT, -1;
    core::Caller at_open = caller;
    at_open.cap_sys_rawio = capable(CAP_SYS_RAWIO);
    auto r = emu.open(*n, at_open);
    if (!r) return errno = r.error(), -1;
    const int fd = next_fd_++;
    fds_[fd] = Open{r.take(), path};
    return fd;
  }

  int close(int fd) {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return errno = EBADF, -1;
    auto f = it->second.file;
    fds_.erase(it);
    // Like the kernel: release when the last fd of the open file goes.
    for (const auto& [other, o] : fds_)
      if (o.file == f) return 0;
    emu.release(f);
    return 0;
  }

  // dup(2): another fd of the same open file.
  int dup(int fd) {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return errno = EBADF, -1;
    const int nfd = next_fd_++;
    fds_[nfd] = it->second;
    return nfd;
  }

  // ioctl(2) with a pointer or value argument.
  long ioctl(int fd, u32 cmd, u64 arg = 0) {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return errno = EBADF, -1;
    core::IoctlCall call;
    call.cmd = cmd;
    call.arg = arg;
    call.caller = caller;
    call.node_name = it->second.path;
    call.mem = this;
    call.fds = this;
    call.env = this;
    auto r = emu.ioctl(*it->second.file, call);
    last_detail = call.detail;
    if (!r) return errno = r.error(), -1;
    return *r;
  }
  template <class T>
  long ioctl(int fd, u32 cmd, T* arg) {
    return ioctl(fd, cmd, reinterpret_cast<u64>(arg));
  }

  // The errno of a call that must fail (0 if it succeeded).
  template <class A>
  int fails(int fd, u32 cmd, A arg) {
    errno = 0;
    return ioctl(fd, cmd, arg) == -1 ? errno : 0;
  }
  int fails(int fd, u32 cmd) { return fails(fd, cmd, u64{0}); }

  long pread(int fd, void* buf, u64 len, u64 off) {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return errno = EBADF, -1;
    auto r = emu.read(*it->second.file, off, buf, len);
    if (!r) return errno = r.error(), -1;
    return static_cast<long>(*r);
  }
  long pwrite(int fd, const void* buf, u64 len, u64 off) {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return errno = EBADF, -1;
    auto r = emu.write(*it->second.file, off, buf, len);
    if (!r) return errno = r.error(), -1;
    return static_cast<long>(*r);
  }

  std::shared_ptr<core::File> file(int fd) {
    auto it = fds_.find(fd);
    return it == fds_.end() ? nullptr : it->second.file;
  }

  // A number that is an open fd of the caller but not a VFIO file (what /etc/passwd would be).
  int foreign_fd() {
    const int fd = next_fd_++;
    foreign_.insert(fd);
    return fd;
  }

  // A harness fd number for a real fd of this process (an eventfd, a pipe): the core's
  // take_eventfd() of the number gets a dup of it if it is an eventfd, as the daemon gets one of a caller's fd with
  // pidfd_getfd. The harness keeps its own dup; `real_fd` stays the caller's.
  int foreign_fd(int real_fd) {
    const int fd = next_fd_++;
    foreign_.insert(fd);
    real_fds_[fd] = core::UniqueFd(::fcntl(real_fd, F_DUPFD_CLOEXEC, 0));
    return fd;
  }

  // ---- what the core asks of the caller ----
  Status read(u64 addr, void* dst, std::size_t len) override {
    return cuse::process_read(caller.tid, addr, dst, len);
  }
  Status will_write(u64, std::size_t) override { return {}; }
  Status write(u64 addr, const void* src, std::size_t len) override {
    return cuse::process_write(caller.tid, addr, src, len);
  }
  Result<std::shared_ptr<core::File>> resolve(int fd) override {
    if (foreign_.count(fd)) return std::shared_ptr<core::File>();
    auto it = fds_.find(fd);
    if (it == fds_.end()) return err(EBADF);
    return it->second.file;
  }
  Result<core::UniqueFd> take_eventfd(int fd) override {
    if (auto it = real_fds_.find(fd); it != real_fds_.end()) {
      if (!cuse::is_eventfd_link(it->second.get())) return err(EINVAL);
      return core::UniqueFd(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0));
    }
    // Any other open fd (a node, or foreign_fd()'s "/etc/passwd"): a file that is no eventfd.
    if (foreign_.count(fd) || fds_.count(fd)) return err(EINVAL);
    return err(EBADF);
  }
  u64 dma_accessible(u64 addr, u64 len, core::Prot prot) override {
    return cuse::dma_accessible(caller.pid, addr, len, prot);
  }
  // This process maps the devices' BAR memfds themselves (no FUSE node in between): a mapping
  // of one of them is device memory.
  u64 dma_pinnable(u64 addr, u64 len, core::Prot prot) override {
    return cuse::dma_accessible(caller.pid, addr, len, prot, [this](dev_t dev, u64 ino) {
      for (const auto& g : emu.groups())
        for (const auto& d : g->devices()) {
          std::lock_guard lock(d->regions_mu);
          struct stat st {};
          if (d->bar_file != nullptr && ::fstat(d->bar_file->fd(), &st) == 0 &&
              st.st_dev == dev && st.st_ino == ino)
            return true;
        }
      return false;
    });
  }
  u32 pinned_page_shift(u64 addr, u64 len, u32 natural_shift, u32 base_shift) override {
    if (pretend_hugetlb_page_size != 0)  // as if every page were a hugetlb page of that size
      return std::min<u32>(natural_shift, static_cast<u32>(__builtin_ctzll(pretend_hugetlb_page_size)));
    return cuse::pinned_page_shift(caller.pid, addr, len, natural_shift, base_shift);
  }
  u64 memlock_limit() override { return memlock_limit_bytes; }
  bool capable(int cap) override { return capabilities.count(cap) != 0; }

  core::Emulator emu;
  core::Caller caller;
  u64 memlock_limit_bytes = iommu::kU64Max;
  // Non-zero: sPAPR registrations see the caller's memory as hugetlb pages of this size (tests
  // of large TCE pages on machines without hugetlb pages); 0: the real mappings decide.
  u64 pretend_hugetlb_page_size = 0;
  std::set<int> capabilities;
  std::string last_detail;

 private:
  struct Open {
    std::shared_ptr<core::File> file;
    std::string path;
  };
  std::map<int, Open> fds_;
  std::set<int> foreign_;
  std::map<int, core::UniqueFd> real_fds_;  // foreign_fd(real_fd)'s
  int next_fd_ = 100;
};

// Anonymous memory for DMA buffers, unmapped on destruction.
class Buffer {
 public:
  explicit Buffer(u64 size, int prot = 3 /* PROT_READ|PROT_WRITE */);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  u64 addr() const { return reinterpret_cast<u64>(p_); }
  u64 size() const { return size_; }
  void* get() const { return p_; }

 private:
  void* p_;
  u64 size_;
};

}  // namespace vfio_emu::test
