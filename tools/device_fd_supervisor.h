// VFIO_GROUP_GET_DEVICE_FD for every program under `vfio-emu run`: static binaries, raw
// syscall(), any libc.
//
// A daemon answering FUSE requests cannot create an fd in its caller, so vfio-emud answers
// GET_DEVICE_FD with EOPNOTSUPP once every check Linux makes has passed. Under `run`, the program
// gets a seccomp filter that turns exactly that ioctl into a user notification (the filter is
// inherited across fork and kept across exec). `run` itself, outside the program, is the
// supervisor: for an fd that is one of the daemon's group nodes it does what the kernel would
// (asks the daemon, opens the device's cdev, makes it a device fd obtained through the group with
// VFIO_EMU_DEVICE_USE_GROUP) and installs the file in the program with SECCOMP_IOCTL_NOTIF_ADDFD
// + SECCOMP_ADDFD_FLAG_SEND, so the ioctl returns the new fd number, O_CLOEXEC as Linux's
// get_unused_fd_flags(O_CLOEXEC). Any other file gets SECCOMP_USER_NOTIF_FLAG_CONTINUE: the
// kernel runs the ioctl as if nothing had been in between.
//
// The same filter sends every mmap of a file (not MAP_ANONYMOUS) here: one of the daemon's sysfs
// resource files is checked as Linux's pci_mmap_fits would (tools/resource_mmap_check.h; EINVAL
// for pages past the BAR), since the kernel maps the daemon's passthrough file without asking;
// every other mmap gets SECCOMP_USER_NOTIF_FLAG_CONTINUE.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <utility>

namespace vfio_emu::tools {

// Installs the filter in the calling process (the program's, just before exec) and returns the
// notification listener fd, or -1 with errno set. Without CAP_SYS_ADMIN it first sets
// no_new_privs, as the kernel requires. `mmap_to_tracer`: an mmap of a file stops in the
// program's ptrace tracer (SECCOMP_RET_TRACE, tools/store_watch.h) instead of coming here; only
// when that tracer is attached with PTRACE_O_TRACESECCOMP (without it the mmap fails ENOSYS).
int install_device_fd_filter(bool mmap_to_tracer = false);

// The thread-group id of thread `tid`, from /proc/<tid>/status; -1 if it is gone.
pid_t tgid_of(pid_t tid);

// What an mmap of a file maps, as far as the supervisor knows it.
struct MmapTarget {
  std::string device;  // the daemon's device cdev ("vfio4") when it is a VFIO device file
  std::uint32_t region = 0;
  std::uint64_t region_offset = 0;  // where in the region the mapping starts
};

class DeviceFdSupervisor {
 public:
  // `node_dir`: where the daemon's nodes are, as this process sees them (the FUSE mount).
  explicit DeviceFdSupervisor(std::string node_dir);
  ~DeviceFdSupervisor();
  DeviceFdSupervisor(const DeviceFdSupervisor&) = delete;
  DeviceFdSupervisor& operator=(const DeviceFdSupervisor&) = delete;

  // `listener`: from install_device_fd_filter() in the program (passed over a socket; owned by
  // the supervisor from now on).
  void start(int listener);
  void stop();
  unsigned served() const { return served_.load(); }
  unsigned passed_on() const { return passed_on_.load(); }

  // The errno Linux would give thread `tid`'s mmap(args[0..5]) of a file where the kernel
  // cannot tell (a device or resource file of the daemon: tools/resource_mmap_check.h; one log
  // line on stderr), or 0 to let the kernel run it; `target` says what it maps.
  int mmap_errno(pid_t tid, const std::uint64_t (&args)[6], MmapTarget* target) const;

 private:
  struct Notification;
  void run();
  void handle(const Notification& n);
  void handle_mmap(const Notification& n);
  struct Group {
    int id = 0;
    bool noiommu = false;  // a no-IOMMU group (/dev/vfio/noiommu-<id>)
  };
  // The group if (dev, ino) is one of the daemon's group nodes, else null.
  const Group* group_of(dev_t dev, ino_t ino) const;

  int listener_ = -1;
  int stop_fd_ = -1;
  std::string node_dir_;
  std::map<std::pair<dev_t, ino_t>, Group> groups_;  // the daemon's group nodes
  std::map<std::pair<dev_t, ino_t>, std::uint64_t> resource_files_;  // resourceN[_wc] -> BAR size
  std::map<std::pair<dev_t, ino_t>, std::string> device_files_;  // the daemon's device cdevs
  std::thread thread_;
  std::atomic<unsigned> served_{0}, passed_on_{0};
};

}  // namespace vfio_emu::tools
