#include "cuse/caller_process.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "base/procmap_query.h"
#include "cuse/exit_watcher.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL  // Linux 6.9: a pidfd for a thread, not only a leader
#endif

namespace vfio_emu::cuse {
namespace {


struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// An open /proc/<pid>/maps and a pidfd of the process it was opened for.
struct MapsFile {
  Fd pidfd;
  Fd maps;
  MapsFile(int p, int m) : pidfd(p), maps(m) {}
};

// Open /proc/<pid>/maps files, kept per process: opening one costs more than the query itself
// (a path walk and a permission check), and a MAP queries its caller's every time.
//
// A kept file is bound to the address space it was opened on, not to the pid, and PROCMAP_QUERY
// answers for that mm for as long as anything uses it: after the process has exited, a process
// that shared its mm (clone(CLONE_VM) without CLONE_THREAD) keeps the old mm alive, and a new
// process given the same pid would be checked against the old one's memory. So each file is
// kept with a pidfd of its process, and is used only while that process is alive: a pid cannot
// be reused before its process is reaped, at which point the pidfd reports it gone. (An exec
// replaces the mm: queries on the old one fail with ESRCH, and the file is opened afresh.)
// An entry is dropped when its process exits (the ExitWatcher tells): files and pidfds are kept
// only for live callers.
class MapsFiles {
 public:
  // The maps file of `pid` (maps.fd < 0 if the process is gone or its file cannot be opened).
  std::shared_ptr<MapsFile> get(pid_t pid) {
    std::shared_ptr<MapsFile> kept;
    {
      std::lock_guard lock(mu_);
      auto it = files_.find(pid);
      if (it != files_.end()) kept = it->second;
    }
    if (kept && pidfd_alive(kept->pidfd.fd)) return kept;
    return reopen(pid, kept);
  }
  // The file after `stale` failed or its process was found gone: a new one, unless another
  // thread already replaced it.
  std::shared_ptr<MapsFile> reopen(pid_t pid, const std::shared_ptr<MapsFile>& stale) {
    {
      std::lock_guard lock(mu_);
      auto it = files_.find(pid);
      if (it != files_.end() && it->second != stale) return it->second;
      if (it != files_.end()) files_.erase(it);
    }
    // The pidfd first, the maps file second, the liveness check last: if the pid was reused in
    // between, the pidfd (of the old process) is dead, and nothing is kept.
    auto f = std::make_shared<MapsFile>(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)), -1);
    if (f->pidfd.fd < 0) {
      if (errno == ESRCH) return f;  // the process is gone
      // No pidfd for it (not a thread-group leader, no pidfd_open): a file used once.
      f->maps.fd = open_maps(pid);
      return f;
    }
    f->maps.fd = open_maps(pid);
    if (f->maps.fd < 0 || !pidfd_alive(f->pidfd.fd)) {
      if (f->maps.fd >= 0) close(f->maps.fd);
      f->maps.fd = -1;
      return f;
    }
    // Dropped when the process exits. The watcher gets a pidfd of its own: an in-flight user of
    // this entry may still ask f->pidfd whether the process lives.
    const int watched = fcntl(f->pidfd.fd, F_DUPFD_CLOEXEC, 0);
    if (watched < 0) return f;  // used once, not kept
    std::lock_guard lock(mu_);
    if (files_.size() >= kMaxFiles) files_.clear();  // in-flight users keep theirs open
    files_[pid] = f;
    std::weak_ptr<MapsFile> kept = f;
    if (!ExitWatcher::instance().watch(watched, [this, pid, kept] { forget(pid, kept); })) {
      files_.erase(pid);
      close(watched);
    }
    return f;
  }

 private:
  static constexpr std::size_t kMaxFiles = 256;

  static int open_maps(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/maps", pid);
    return ::open(path, O_RDONLY | O_CLOEXEC);
  }

  // Drops the file of `pid` if it is still `kept` (it may have been replaced since).
  void forget(pid_t pid, const std::weak_ptr<MapsFile>& kept) {
    std::lock_guard lock(mu_);
    auto it = files_.find(pid);
    if (it != files_.end() && it->second == kept.lock()) files_.erase(it);
  }

  std::mutex mu_;
  std::unordered_map<pid_t, std::shared_ptr<MapsFile>> files_;
};

MapsFiles& maps_files() {
  static MapsFiles* files = new MapsFiles;  // never destroyed: used until the process exits
  return *files;
}

std::uint64_t needed_flags(iommu::Prot prot) {
  std::uint64_t f = 0;
  if (prot & iommu::kProtRead) f |= kVmaReadable;
  if (prot & iommu::kProtWrite) f |= kVmaWritable;
  return f == 0 ? kVmaReadable : f;
}

// Whether the mapping of `pid` that starts at `start` is shared and may be made writable
// (VM_MAYWRITE: "sh" and "mw" in its VmFlags in /proc/<pid>/smaps).
bool shared_maywrite(pid_t pid, u64 start) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return false;
  bool in_vma = false, yes = false;
  char line[512];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line, "%llx-%llx ", &lo, &hi) == 2 && std::strchr(line, ':') != nullptr &&
        std::strncmp(line, "VmFlags", 7) != 0) {
      if (in_vma) break;
      in_vma = lo == start;
      continue;
    }
    if (in_vma && std::strncmp(line, "VmFlags:", 8) == 0) {
      yes = std::strstr(line, " sh") != nullptr && std::strstr(line, " mw") != nullptr;
      break;
    }
  }
  std::fclose(f);
  return yes;
}

// The text /proc/<pid>/maps, for kernels without PROCMAP_QUERY.
u64 accessible_from_text(pid_t pid, u64 addr, u64 len, std::uint64_t need,
                         const std::function<bool(dev_t, u64)>& unpinnable,
                         const std::function<bool(dev_t, u64)>& store_trapped) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/maps", pid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  u64 covered_to = addr;  // everything below this is accessible
  const u64 end = addr + len;  // len > 0, no overflow: callers pass checked ranges
  char line[512];
  while (std::fgets(line, sizeof(line), f) != nullptr && covered_to < end) {
    unsigned long long lo = 0, hi = 0, ino = 0;
    unsigned major = 0, minor = 0;
    char perms[8] = {};
    if (std::sscanf(line, "%llx-%llx %7s %*x %x:%x %llu", &lo, &hi, perms, &major, &minor,
                    &ino) != 6)
      continue;
    if (hi <= covered_to) continue;
    if (lo > covered_to) break;  // a hole
    bool ok = (!(need & kVmaReadable) || perms[0] == 'r') &&
              (!(need & kVmaWritable) || perms[1] == 'w');
    if (!ok && perms[1] != 'w' && (!(need & kVmaReadable) || perms[0] == 'r') && store_trapped &&
        ino != 0 && store_trapped(makedev(major, minor), ino) && shared_maywrite(pid, lo))
      ok = true;
    if (!ok) break;
    if (unpinnable && ino != 0 && unpinnable(makedev(major, minor), ino)) break;
    covered_to = hi;
  }
  std::fclose(f);
  return covered_to >= end ? len : covered_to - addr;
}

}  // namespace

Status process_read(pid_t tid, u64 addr, void* dst, std::size_t len) {
  if (len == 0) return {};
  iovec local{dst, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  const ssize_t n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return {};
  if (n >= 0 || errno == EFAULT) return err(EFAULT);
  return err(errno);
}

Status process_write(pid_t tid, u64 addr, const void* src, std::size_t len) {
  if (len == 0) return {};
  iovec local{const_cast<void*>(src), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  const ssize_t n = process_vm_writev(tid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return {};
  if (n >= 0 || errno == EFAULT) return err(EFAULT);
  return err(errno);
}

std::size_t process_read_some(pid_t tid, u64 addr, void* dst, std::size_t len) {
  iovec local{dst, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  const ssize_t n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

u64 dma_accessible(pid_t pid, u64 addr, u64 len, iommu::Prot prot,
                   const std::function<bool(dev_t, u64)>& unpinnable,
                   const std::function<bool(dev_t, u64)>& store_trapped) {
  if (len == 0) return 0;
  const std::uint64_t need = needed_flags(prot);
  std::shared_ptr<MapsFile> maps = maps_files().get(pid);
  if (maps->maps.fd < 0) return 0;
  const u64 end = addr + len;
  u64 covered_to = addr;
  bool reopened = false;
  while (covered_to < end) {
    ProcmapQuery q{};
    q.size = sizeof(q);
    q.query_addr = covered_to;
    q.query_flags = need;  // only VMAs with these permissions match
    if (::ioctl(maps->maps.fd, kProcmapQuery, &q) != 0) {
      if (errno == ENOTTY || errno == EINVAL)
        return accessible_from_text(pid, addr, len, need, unpinnable, store_trapped);
      if (errno == ENOENT && (need & kVmaWritable) && store_trapped) {
        // A BAR mapping `vfio-emu run` made read-only to trap its stores is writable to the
        // program that asked for it (tools/store_watch.h).
        ProcmapQuery r{};
        r.size = sizeof(r);
        r.query_addr = covered_to;
        r.query_flags = need & ~kVmaWritable;
        if (::ioctl(maps->maps.fd, kProcmapQuery, &r) == 0 && r.vma_start <= covered_to &&
            r.inode != 0 && store_trapped(makedev(r.dev_major, r.dev_minor), r.inode) &&
            shared_maywrite(pid, r.vma_start)) {
          covered_to = r.vma_end;
          continue;
        }
      }
      if (errno == ESRCH && !reopened) {  // the address space it was opened on is gone
        maps = maps_files().reopen(pid, maps);
        reopened = true;
        if (maps->maps.fd < 0) return 0;
        continue;
      }
      break;  // ENOENT: no VMA with the permissions covers covered_to
    }
    if (q.vma_start > covered_to) break;
    if (unpinnable && q.inode != 0 && unpinnable(makedev(q.dev_major, q.dev_minor), q.inode))
      break;
    covered_to = q.vma_end;
  }
  return covered_to >= end ? len : covered_to - addr;
}

void for_each_mapping_page_size(pid_t pid, u64 addr, u64 len,
                                const std::function<bool(u64)>& page_size) {
  std::shared_ptr<MapsFile> maps = maps_files().get(pid);
  const u64 end = addr + len < addr ? iommu::kU64Max : addr + len;
  bool reopened = false;
  for (u64 at = addr; at < end && maps->maps.fd >= 0;) {
    ProcmapQuery q{};
    q.size = sizeof(q);
    q.query_addr = at;
    if (::ioctl(maps->maps.fd, kProcmapQuery, &q) != 0) {
      if (errno != ESRCH || reopened) return;  // ENOENT: nothing maps `at`
      maps = maps_files().reopen(pid, maps);  // the address space it was opened on is gone
      reopened = true;
      continue;
    }
    if (q.vma_start > at || !page_size(q.vma_page_size)) return;
    at = q.vma_end;
  }
}

u32 pinned_page_shift(pid_t pid, u64 addr, u64 len, u32 natural_shift, u32 base_shift) {
  u32 shift = natural_shift;
  u32 page_shift = base_shift;  // Linux's `pageshift`, set before the loop and only raised in it
  bool any = false;
  for_each_mapping_page_size(pid, addr, len, [&](u64 page_size) {
    any = true;
    const bool huge = page_size > (u64{1} << base_shift);
    if (shift > base_shift && huge) page_shift = static_cast<u32>(std::countr_zero(page_size));
    shift = std::min(shift, page_shift);
    return shift > base_shift;  // at the base shift nothing can change it any more
  });
  return any ? shift : std::min(natural_shift, base_shift);
}

u64 memlock_limit(pid_t pid) {
  rlimit lim{};
  if (prlimit(pid, RLIMIT_MEMLOCK, nullptr, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
    return iommu::kU64Max;
  return lim.rlim_cur;
}

bool has_capability(pid_t tid, int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, tid};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[cap / 32].effective >> (cap % 32)) & 1;
}

pid_t thread_group_of(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/status", tid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  char line[256];
  pid_t tgid = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, "Tgid:", 5) == 0) {
      tgid = static_cast<pid_t>(std::strtol(line + 5, nullptr, 10));
      break;
    }
  }
  std::fclose(f);
  return tgid;
}

int pidfd_open_thread(pid_t tid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, tid, PIDFD_THREAD));
  if (fd < 0 && errno == EINVAL) fd = static_cast<int>(syscall(SYS_pidfd_open, tid, 0));
  return fd;
}

bool pidfd_alive(int pidfd) { return syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0; }

}  // namespace vfio_emu::cuse
