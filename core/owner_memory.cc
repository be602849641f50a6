#include "core/owner_memory.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "base/procmap_query.h"

namespace vfio_emu::core {

OwnerMemory::View::~View() {
  if (base != nullptr) ::munmap(base, end - start);
}

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void OwnerMemory::drop_process_locked(std::list<Process>::iterator it) {
  if (it->pidfd >= 0) ::close(it->pidfd);
  if (it->maps >= 0) ::close(it->maps);
  processes_.erase(it);
}

int OwnerMemory::maps_of_locked(pid_t pid) {
  for (auto it = processes_.begin(); it != processes_.end(); ++it) {
    if (it->pid != pid) continue;
    // A pidfd polls readable once its process has exited: then the pid may be someone else's.
    pollfd p{it->pidfd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 0) {
      drop_process_locked(it);
      std::erase_if(views_, [pid](const std::shared_ptr<View>& v) { return v->pid == pid; });
      break;
    }
    processes_.splice(processes_.begin(), processes_, it);
    return it->maps;
  }
  Process proc;
  proc.pid = pid;
  // The pidfd first, the maps file second, the liveness check last (as cuse/caller_process.cc).
  proc.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (proc.pidfd < 0) return -1;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/maps", pid);
  proc.maps = ::open(path, O_RDONLY | O_CLOEXEC);
  pollfd p{proc.pidfd, POLLIN, 0};
  if (proc.maps < 0 || ::poll(&p, 1, 0) != 0) {
    ::close(proc.pidfd);
    if (proc.maps >= 0) ::close(proc.maps);
    return -1;
  }
  processes_.push_front(proc);
  while (processes_.size() > kMaxProcesses) drop_process_locked(std::prev(processes_.end()));
  return proc.maps;
}

u8* OwnerMemory::resolve(pid_t pid, u64 addr, u64 len, bool write, std::shared_ptr<View>* out) {
  if (pid <= 0 || len == 0 || addr + len < addr) return nullptr;
  std::lock_guard lock(mu_);
  const double now = steady_seconds();
  for (auto it = private_.begin(); it != private_.end();) {
    if (it->until < now) {
      it = private_.erase(it);
      continue;
    }
    if (it->pid == pid && it->start <= addr && addr + len <= it->end) return nullptr;
    ++it;
  }
  const int maps = maps_of_locked(pid);
  if (maps < 0) return nullptr;
  ProcmapQuery q{};
  q.size = sizeof(q);
  q.query_addr = addr;
  if (::ioctl(maps, kProcmapQuery, &q) != 0 || q.vma_start > addr) return nullptr;
  const bool shared_file = q.inode != 0 && (q.vma_flags & kVmaShared) && (q.vma_flags & kVmaReadable);
  if (!shared_file) {
    private_.push_front(Private{pid, q.vma_start, q.vma_end, now + 1.0});
    while (private_.size() > kMaxPrivate) private_.pop_back();
    return nullptr;
  }
  // The whole range in one shared file mapping with the permission the access needs.
  const bool writable = (q.vma_flags & kVmaWritable) != 0;
  if (addr + len > q.vma_end || (write && !writable)) return nullptr;
  const dev_t dev = makedev(q.dev_major, q.dev_minor);
  std::shared_ptr<View> view;
  for (auto it = views_.begin(); it != views_.end(); ++it) {
    const View& v = **it;
    if (v.pid == pid && v.start == q.vma_start && v.end == q.vma_end && v.offset == q.vma_offset &&
        v.dev == dev && v.ino == q.inode && v.writable == writable) {
      view = *it;
      views_.splice(views_.begin(), views_, it);
      break;
    }
  }
  if (!view) {
    char path[96];
    std::snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", pid,
                  static_cast<unsigned long long>(q.vma_start),
                  static_cast<unsigned long long>(q.vma_end));
    const int fd = ::open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {  // not root, or it went away: this mapping is copied the slow way for a while
      private_.push_front(Private{pid, q.vma_start, q.vma_end, now + 1.0});
      while (private_.size() > kMaxPrivate) private_.pop_back();
      return nullptr;
    }
    struct stat st {};
    void* p = MAP_FAILED;
    // The file must still be the one the query saw.
    if (::fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == q.inode)
      p = ::mmap(nullptr, q.vma_end - q.vma_start, PROT_READ | (writable ? PROT_WRITE : 0),
                 MAP_SHARED, fd, static_cast<off_t>(q.vma_offset));
    ::close(fd);
    if (p == MAP_FAILED) return nullptr;
    view = std::make_shared<View>();
    view->base = static_cast<u8*>(p);
    view->start = q.vma_start;
    view->end = q.vma_end;
    view->offset = q.vma_offset;
    view->dev = dev;
    view->ino = q.inode;
    view->pid = pid;
    view->writable = writable;
    views_.push_front(view);
    while (views_.size() > kMaxEntries) views_.pop_back();  // unmapped when no copy uses it
  }
  view->last_used = now;
  *out = view;
  return view->base + (addr - view->start);
}

void OwnerMemory::drop_idle(double seconds) {
  std::lock_guard lock(mu_);
  const double now = steady_seconds();
  std::erase_if(views_, [&](const std::shared_ptr<View>& v) { return v->last_used < now - seconds; });
  for (auto it = processes_.begin(); it != processes_.end();) {
    pollfd p{it->pidfd, POLLIN, 0};
    const auto next = std::next(it);
    if (::poll(&p, 1, 0) != 0) {
      const pid_t pid = it->pid;
      drop_process_locked(it);
      std::erase_if(views_, [pid](const std::shared_ptr<View>& v) { return v->pid == pid; });
    }
    it = next;
  }
  std::erase_if(private_, [&](const Private& p) { return p.until < now; });
}

u64 OwnerMemory::direct_bytes() const {
  std::lock_guard lock(mu_);
  return direct_bytes_;
}

void OwnerMemory::count_direct(u64 n) {
  std::lock_guard lock(mu_);
  direct_bytes_ += n;
}

OwnerMemory& owner_memory() {
  static OwnerMemory* memory = new OwnerMemory;  // used until the process exits
  return *memory;
}

}  // namespace vfio_emu::core
