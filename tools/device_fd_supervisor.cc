#include "tools/device_fd_supervisor.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/vfio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "tools/resource_mmap_check.h"

namespace vfio_emu::tools {
namespace {

namespace fs = std::filesystem;

// core/uapi/vfio_emu.h: the daemon's private ioctls in VFIO's block.
constexpr unsigned long kVfioEmuGroupDevice = 0x3B7E;    // which cdev serves a device
constexpr unsigned long kVfioEmuDeviceUseGroup = 0x3B7D;  // make a cdev file a group device fd

// Not an errno: let the kernel run the ioctl itself.
constexpr int kContinue = -100000;

// Linux reads the name with strndup_user(arg, PAGE_SIZE).
constexpr size_t kMaxName = 4096;

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL  // Linux 6.9: a pidfd for any thread, not only a leader
#endif

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool stat_dont_sync(const std::string& path, dev_t* dev, ino_t* ino,
                    std::uint64_t* size = nullptr) {
  struct statx sx {};
  // The cached attributes: no request reaches a FUSE daemon (a stalled one would block us).
  if (statx(AT_FDCWD, path.c_str(), AT_STATX_DONT_SYNC, STATX_INO | STATX_TYPE | STATX_SIZE,
            &sx) != 0)
    return false;
  *dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  *ino = sx.stx_ino;
  if (size != nullptr) *size = sx.stx_size;
  return true;
}

// The device name at `addr` in `pid`, as strndup_user(addr, PAGE_SIZE) reads it.
// Errors: EFAULT (unreadable before its NUL), EINVAL (no NUL within the limit).
int read_name(pid_t pid, unsigned long addr, std::string* name) {
  name->clear();
  char buf[256];
  while (name->size() < kMaxName) {
    // Up to the end of the page, so a name that ends just before an unmapped page still reads.
    const size_t to_page_end = 4096 - (addr & 4095);
    const size_t want = std::min({sizeof(buf), to_page_end, kMaxName - name->size()});
    iovec local{buf, want};
    iovec remote{reinterpret_cast<void*>(addr), want};
    const ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n <= 0) return EFAULT;
    const void* nul = std::memchr(buf, '\0', static_cast<size_t>(n));
    if (nul != nullptr) {
      name->append(buf, static_cast<const char*>(nul) - buf);
      return 0;
    }
    name->append(buf, static_cast<size_t>(n));
    addr += static_cast<unsigned long>(n);
  }
  return EINVAL;
}


// A pidfd through which pidfd_getfd() reaches the fd table of `tid`, the thread that made the
// call (a seccomp notification names the thread, not its process). Before Linux 6.9 only a
// thread-group leader has a pidfd: then its leader's, whose table the thread shares.
int pidfd_of_thread(pid_t tid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, tid, PIDFD_THREAD));
  if (fd >= 0 || errno != EINVAL) return fd;
  const pid_t tgid = tgid_of(tid);
  if (tgid < 0) {
    errno = ESRCH;
    return -1;
  }
  return static_cast<int>(syscall(SYS_pidfd_open, tgid, 0));
}

}  // namespace

pid_t tgid_of(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/status", tid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return -1;
  pid_t tgid = -1;
  char line[256];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "Tgid: %d", &tgid) == 1) break;
  }
  std::fclose(f);
  return tgid;
}

int install_device_fd_filter(bool mmap_to_tracer) {
  // x86_64 ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, ...): the kernel takes the command as an
  // unsigned int, so only the low 32 bits of args[1] are compared. x86_64 mmap of a file
  // (args[3] without MAP_ANONYMOUS, args[4] not -1 as an unsigned int, as fget takes it): the
  // supervisor (or the tracer) checks it when it is a device or resource file
  // (tools/resource_mmap_check.h). Other architectures' calls (a 32-bit program) are let
  // through and keep the daemon's EOPNOTSUPP.
  constexpr unsigned char kMmap = 11, kNotify = 12, kAllow = 13;  // the last three statements
  const sock_filter filter[] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, kAllow - 2),
      /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 2),
      /* 4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1])),  // low half
      /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VFIO_GROUP_GET_DEVICE_FD, kNotify - 6,
                       kAllow - 6),
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, kAllow - 7),
      /* 7 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[3])),
      /* 8 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MAP_ANONYMOUS, kAllow - 9, 0),
      /* 9 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[4])),
      /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffu, kAllow - 11, kMmap - 11),
      /* 11 */ BPF_STMT(BPF_RET | BPF_K,
                        mmap_to_tracer ? SECCOMP_RET_TRACE : SECCOMP_RET_USER_NOTIF),
      /* 12 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
      /* 13 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  static_assert(sizeof(filter) / sizeof(filter[0]) == kAllow + 1);
  const sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])),
                        const_cast<sock_filter*>(filter)};
  if (geteuid() != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return static_cast<int>(
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
}

struct DeviceFdSupervisor::Notification {
  seccomp_notif n;
};

DeviceFdSupervisor::DeviceFdSupervisor(std::string node_dir) : node_dir_(std::move(node_dir)) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(node_dir_) / "vfio", ec)) {
    // "<id>", or "noiommu-<id>" for a no-IOMMU group.
    std::string name = e.path().filename().string();
    const bool noiommu = name.starts_with("noiommu-");
    if (noiommu) name.erase(0, std::strlen("noiommu-"));
    if (name.empty() || name.size() > 9 || name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    dev_t dev = 0;
    ino_t ino = 0;
    if (stat_dont_sync(e.path().string(), &dev, &ino))
      groups_[{dev, ino}] = Group{std::stoi(name), noiommu};
  }
  // The daemon's device cdevs ("vfioN", "noiommu-vfioN"): a device fd is one of them opened.
  for (const auto& e : fs::directory_iterator(fs::path(node_dir_) / "vfio/devices", ec)) {
    dev_t dev = 0;
    ino_t ino = 0;
    if (stat_dont_sync(e.path().string(), &dev, &ino))
      device_files_[{dev, ino}] = e.path().filename().string();
  }
  // The daemon's resource files (cuse/sysfs_files.h): st_size is the BAR's size.
  for (const auto& d : fs::directory_iterator(fs::path(node_dir_) / "sys/bus/pci/devices", ec)) {
    std::error_code file_ec;
    for (const auto& e : fs::directory_iterator(d.path(), file_ec)) {
      if (e.path().filename().string().rfind("resource", 0) != 0 ||
          e.path().filename() == "resource")
        continue;
      dev_t dev = 0;
      ino_t ino = 0;
      std::uint64_t size = 0;
      if (stat_dont_sync(e.path().string(), &dev, &ino, &size)) resource_files_[{dev, ino}] = size;
    }
  }
}

DeviceFdSupervisor::~DeviceFdSupervisor() {
  stop();
  if (listener_ >= 0) ::close(listener_);
}

void DeviceFdSupervisor::start(int listener) {
  listener_ = listener;
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  thread_ = std::thread([this] { run(); });
}

void DeviceFdSupervisor::stop() {
  if (thread_.joinable()) {
    const std::uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  if (stop_fd_ >= 0) ::close(stop_fd_);
  stop_fd_ = -1;
}

const DeviceFdSupervisor::Group* DeviceFdSupervisor::group_of(dev_t dev, ino_t ino) const {
  auto it = groups_.find({dev, ino});
  return it == groups_.end() ? nullptr : &it->second;
}

void DeviceFdSupervisor::run() {
  for (;;) {
    pollfd p[2] = {{listener_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    // POLLHUP: every process of the program has exited, no notification can come any more.
    if (p[0].revents & (POLLHUP | POLLERR) && !(p[0].revents & POLLIN)) return;
    Notification n{};
    if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_RECV, &n.n) != 0) continue;  // ENOENT: it died
    handle(n);
  }
}

namespace {

// The capabilities of thread `tid` (0: the calling thread); false if it is gone.
bool effective_caps(pid_t tid, __user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, tid};
  return syscall(SYS_capget, &hdr, data) == 0;
}

// The device and inode of the file behind fd `fd` of process `pid` (false: no such open file).
bool stat_program_fd(pid_t pid, int fd, dev_t* dev, ino_t* ino) {
  if (fd < 0) return false;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
  return stat_dont_sync(path, dev, ino);
}

// For as long as it lives, the calling thread lacks CAP_SYS_RAWIO in its effective set if
// thread `tid` (the program's) lacks it: the daemon asks the caller of an ioctl for it
// (vfio_df_group_open of a no-IOMMU device through an iommufd), and the caller Linux asks is the
// program, not its supervisor.
class RawioAsProgram {
 public:
  explicit RawioAsProgram(pid_t tid) {
    __user_cap_data_struct theirs[2] = {}, ours[2] = {};
    if (!effective_caps(tid, theirs) || !effective_caps(0, ours)) return;
    constexpr unsigned bit = 1u << CAP_SYS_RAWIO;
    if ((theirs[0].effective & bit) || !(ours[0].effective & bit)) return;
    saved_ = ours[0].effective;
    ours[0].effective &= ~bit;
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    dropped_ = syscall(SYS_capset, &hdr, ours) == 0;
  }
  ~RawioAsProgram() {
    if (!dropped_) return;
    __user_cap_data_struct ours[2] = {};
    if (!effective_caps(0, ours)) return;
    ours[0].effective = saved_;
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    (void)syscall(SYS_capset, &hdr, ours);
  }
  RawioAsProgram(const RawioAsProgram&) = delete;
  RawioAsProgram& operator=(const RawioAsProgram&) = delete;

 private:
  bool dropped_ = false;
  __u32 saved_ = 0;
};

}  // namespace

void DeviceFdSupervisor::handle(const Notification& note) {
  const seccomp_notif& n = note.n;
  if (n.data.nr == __NR_mmap) return handle_mmap(note);
  seccomp_notif_resp resp{};
  resp.id = n.id;
  const int fd = static_cast<int>(n.data.args[0]);
  const pid_t pid = static_cast<pid_t>(n.pid);

  // Only the daemon's own group nodes are ours to answer for. Anything else (another file, a
  // number that is not open) goes to the kernel untouched.
  char path[64];
  dev_t dev = 0;
  ino_t ino = 0;
  const Group* group = stat_program_fd(pid, fd, &dev, &ino) ? group_of(dev, ino) : nullptr;
  if (group == nullptr) {
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ioctl(listener_, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    ++passed_on_;
    return;
  }

  // What the kernel's GET_DEVICE_FD would do, in the daemon, on our copies of its arguments.
  auto answer = [&]() -> int {  // the new fd in the program, or -errno
    std::string name;
    if (int e = read_name(pid, static_cast<unsigned long>(n.data.args[2]), &name); e != 0)
      return -e;
    const int pidfd = pidfd_of_thread(pid);
    if (pidfd < 0) return -ESRCH;
    const Fd group_copy(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
    ::close(pidfd);
    if (group_copy.get() < 0) return -EBADF;
    // The program may have put another file behind the number since the look above; the copy
    // is what its ioctl would have found now. Not a group node of ours any more: the kernel's.
    std::snprintf(path, sizeof(path), "/proc/self/fd/%d", group_copy.get());
    const Group* copied = stat_dont_sync(path, &dev, &ino) ? group_of(dev, ino) : nullptr;
    if (copied == nullptr) return kContinue;
    // Every check Linux makes, in its order, with its errnos: the daemon answers EOPNOTSUPP
    // only when all of them passed.
    if (ioctl(group_copy.get(), VFIO_GROUP_GET_DEVICE_FD, name.c_str()) >= 0) return -EIO;
    if (errno != EOPNOTSUPP) return -errno;
    const int cdev = ioctl(group_copy.get(), kVfioEmuGroupDevice, name.c_str());
    if (cdev < 0) return -errno;
    // A no-IOMMU group's device has a no-IOMMU cdev (vfio_device_set_noiommu_and_name).
    const std::string cdev_path = node_dir_ + (copied->noiommu ? "/vfio/devices/noiommu-vfio"
                                                                : "/vfio/devices/vfio") +
                                  std::to_string(cdev);
    const Fd device(::open(cdev_path.c_str(), O_RDWR | O_CLOEXEC));
    if (device.get() < 0) return -errno;
    // The cdev is opened with our capabilities (Linux's GET_DEVICE_FD opens no node); the
    // device's open as the program's.
    int used = 0;
    {
      const RawioAsProgram as_program(pid);
      used = ioctl(device.get(), kVfioEmuDeviceUseGroup,
                   static_cast<unsigned long>(group_copy.get())) != 0 ? -errno : 0;
    }
    if (used != 0) return used;
    // The program may have died or been interrupted meanwhile: then nothing is installed.
    if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_ID_VALID, &n.id) != 0) return -ENOENT;
    seccomp_notif_addfd add{};
    add.id = n.id;
    add.flags = SECCOMP_ADDFD_FLAG_SEND;  // installs it and answers the ioctl with its number
    add.srcfd = static_cast<unsigned>(device.get());
    add.newfd_flags = O_CLOEXEC;
    const int installed = ioctl(listener_, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
    if (installed < 0) return errno == EINPROGRESS ? -EIO : -errno;
    ++served_;
    return installed;  // already answered
  };
  const int r = answer();
  if (r >= 0) return;
  if (r == -ENOENT) return;  // the notification is gone with its program
  if (r == kContinue) {
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ++passed_on_;
  } else {
    resp.error = r;
  }
  ioctl(listener_, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

// mmap of a file: a resource file's pages must be within its BAR (pci_mmap_fits), which the kernel
// cannot check for the daemon's passthrough file; anything else goes to the kernel untouched.
void DeviceFdSupervisor::handle_mmap(const Notification& note) {
  const seccomp_notif& n = note.n;
  seccomp_notif_resp resp{};
  resp.id = n.id;
  resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  std::uint64_t args[6];
  std::copy(std::begin(n.data.args), std::end(n.data.args), args);
  MmapTarget target;
  if (const int e = mmap_errno(static_cast<pid_t>(n.pid), args, &target); e != 0) {
    resp.flags = 0;
    resp.error = -e;
  }
  if (resp.flags != 0) ++passed_on_;
  ioctl(listener_, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

int DeviceFdSupervisor::mmap_errno(pid_t pid, const std::uint64_t (&args)[6],
                                   MmapTarget* target) const {
  *target = MmapTarget{};
  const int fd = static_cast<int>(args[4]);
  char path[64];
  dev_t dev = 0;
  ino_t ino = 0;
  auto it = resource_files_.end();
  const bool known = stat_program_fd(pid, fd, &dev, &ino);
  if (known) it = resource_files_.find({dev, ino});
  const auto device = known ? device_files_.find({dev, ino}) : device_files_.end();
  if (device != device_files_.end()) {
    // A device fd: vfio_pci_core_mmap's checks, with the region as the daemon describes it to
    // the program's own file.
    vfio_region_info info{};
    info.argsz = sizeof(info);
    info.index = device_region_index(args[5]);
    bool have_info = false;
    if (const int pidfd = pidfd_of_thread(pid); pidfd >= 0) {
      const Fd copy(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
      ::close(pidfd);
      have_info = copy.get() >= 0 && ioctl(copy.get(), VFIO_DEVICE_GET_REGION_INFO, &info) == 0;
    }
    const int e = device_mmap_errno(have_info, info.size,
                                    (info.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0, args[1],
                                    static_cast<int>(args[3]), args[5],
                                    static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)));
    if (e != 0) {
      std::fprintf(stderr, "vfio-emu run: pid %d: mmap of %#llx bytes at %#llx of a VFIO device "
                   "file (region %u%s, size %#llx): refused as vfio_pci_core_mmap does: %s\n",
                   pid, static_cast<unsigned long long>(args[1]),
                   static_cast<unsigned long long>(args[5]), info.index,
                   have_info ? "" : ", no access", static_cast<unsigned long long>(info.size),
                   std::strerror(e));
      return e;
    }
    target->device = device->second;
    target->region = info.index;
    target->region_offset = args[5] & ((std::uint64_t{1} << 40) - 1);
  } else if (it != resource_files_.end()) {
    // How the program opened it (the mode decides do_mmap's EACCES, which the kernel gives).
    int open_flags = O_RDONLY;
    std::snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
    if (FILE* f = std::fopen(path, "re")) {
      char line[128];
      unsigned flags = 0;
      while (std::fgets(line, sizeof(line), f) != nullptr)
        if (std::sscanf(line, "flags: %o", &flags) == 1) open_flags = static_cast<int>(flags);
      std::fclose(f);
    }
    const int e = resource_mmap_errno(it->second, args[1], static_cast<int>(args[2]),
                                      static_cast<int>(args[3]), args[5], open_flags,
                                      static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)));
    if (e != 0) {
      std::fprintf(stderr, "vfio-emu run: pid %d: mmap of %#llx bytes at %#llx of a BAR of %#llx "
                   "bytes (sysfs resource file): outside the BAR (pci_mmap_fits): %s\n", pid,
                   static_cast<unsigned long long>(args[1]),
                   static_cast<unsigned long long>(args[5]),
                   static_cast<unsigned long long>(it->second), std::strerror(e));
      return e;
    }
  }
  return 0;
}

}  // namespace vfio_emu::tools
