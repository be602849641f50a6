// `vfio-emu run [--config FILE] [--enable-unsafe-noiommu-mode] [--allow-unsafe-interrupts]
//               [--keep-daemon] [--no-store-watch] [--grace S] [--control SOCKET]
//               -- PROGRAM [ARGS...]`
//
// Starts (or, with --control, reuses) a vfio-emud, then runs PROGRAM in a private mount namespace
// in which the emulator's nodes sit at the real paths (/dev/vfio/vfio, /dev/vfio/<group>,
// /dev/vfio/devices/vfioN, /dev/iommu) and sysfs says what VFIO programs look up there:
//   /sys/bus/pci/devices/<bdf>/{iommu_group -> /sys/kernel/iommu_groups/<g>, driver -> vfio-pci,
//                               vfio-dev/vfioN/dev, and the daemon's files: vendor, device,
//                               subsystem_*, class, revision, irq, config, resource,
//                               driver_override}
//   /sys/kernel/iommu_groups/<g>/{devices/<bdf>, type}
//   /sys/class/vfio-dev/vfioN/{dev, device}
//   /sys/bus/pci/drivers/vfio-pci/{<bdf>, and the daemon's bind, unbind, new_id, remove_id}
//   /sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct (the daemon's, behind VT-d)
// The daemon's files (cuse/sysfs_files.h) are bound from the sys/ subtree of its FUSE mount:
// their contents are computed at each open, and writes do what Linux's stores do. Symbolic
// links are relative, as sysfs's.
// The host's /dev and /sys are untouched: the namespace sees overlays (and a fresh tmpfs in place
// of /sys/bus/pci/devices, so only emulated PCI devices are there). As root the namespace is a
// mount namespace; as a normal user, also a user namespace mapping only the user itself.
// Two helpers stand outside the program: the seccomp supervisor (tools/device_fd_supervisor.h:
// GET_DEVICE_FD, the mmap checks) and, when a device's model traps stores to a BAR, the store
// watcher (tools/store_watch.h: a ptrace tracer that hands each store to the model in order).
#include "tools/run_command.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tools/control_client.h"
#include "tools/device_fd_supervisor.h"
#include "tools/store_watch.h"

namespace vfio_emu::tools {
namespace {

namespace fs = std::filesystem;

struct RunOptions {
  std::string config;
  std::string control;
  bool noiommu_mode = false;            // the daemon's module parameters
  bool allow_unsafe_interrupts = false;
  bool keep_daemon = false;
  bool no_store_watch = false;  // poll every store to a mapped BAR (tools/store_watch.h)
  double grace_s = 10;  // how long processes the program left behind may go on
  std::vector<std::string> argv;
};

[[noreturn]] void die_child(const std::string& what) {
  std::fprintf(stderr, "vfio-emu run: %s: %s\n", what.c_str(), std::strerror(errno));
  _exit(127);
}

void fail(const std::string& msg) { std::fprintf(stderr, "vfio-emu run: %s\n", msg.c_str()); }

fs::path self_dir() {
  std::error_code ec;
  return fs::read_symlink("/proc/self/exe", ec).parent_path();
}

// The first of `candidates` that exists, else the last one (for the error message).
std::string first_existing(const std::vector<fs::path>& candidates) {
  for (const fs::path& p : candidates)
    if (!p.empty() && access(p.c_str(), F_OK) == 0) return p.string();
  return candidates.back().string();
}

std::string find_daemon() {
  const char* env = std::getenv("VFIO_EMUD");
  return first_existing({env ? fs::path(env) : fs::path(), self_dir() / "vfio-emud",
                         self_dir() / ".." / "cuse" / "vfio-emud", "/usr/local/bin/vfio-emud"});
}

// ---- the daemon ------------------------------------------------------------------------------

// A vfio-emud this command started, in a private temporary directory.
class Daemon {
 public:
  ~Daemon() { stop(); }

  // Starts it and waits until it reports READY=1 on a notify socket.
  bool start(const RunOptions& o) {
    // In $TMPDIR (else /tmp), as mktemp(1): the sockets in it need a short path (sun_path).
    const char* tmpdir = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") +
                       "/vfio-emu-run.XXXXXX";
    if (tmpl.size() + sizeof("/notify.sock") > sizeof(sockaddr_un::sun_path))
      return fail("TMPDIR is too long for the daemon's sockets: " + tmpl), false;
    if (mkdtemp(tmpl.data()) == nullptr)
      return fail(std::string("mkdtemp: ") + std::strerror(errno)), false;
    dir_ = tmpl;
    control_ = o.control.empty() ? dir_ + "/control.sock" : o.control;
    node_dir_ = dir_ + "/dev";
    const std::string notify = dir_ + "/notify.sock";
    const int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", notify.c_str());
    if (nfd < 0 || bind(nfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      return fail("notify socket: " + std::string(std::strerror(errno))), false;
    const std::string daemon = find_daemon();
    std::vector<std::string> args = {daemon,           "--transport", "fuse", "--dev-dir",
                                     node_dir_,        "--control",   control_,
                                     "--foreground",   "--log-level", "warn"};
    if (!o.config.empty()) args.insert(args.end(), {"--config", o.config});
    if (o.noiommu_mode) args.push_back("--enable-unsafe-noiommu-mode");
    if (o.allow_unsafe_interrupts) args.push_back("--allow-unsafe-interrupts");
    const std::string log = dir_ + "/daemon.log";
    pid_ = fork();
    if (pid_ == 0) {
      setenv("NOTIFY_SOCKET", notify.c_str(), 1);
      const int lfd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (lfd >= 0) dup2(lfd, STDERR_FILENO);
      std::vector<char*> av;
      for (auto& a : args) av.push_back(a.data());
      av.push_back(nullptr);
      execv(av[0], av.data());
      die_child("cannot run " + daemon);
    }
    // READY=1, or the daemon died, or 20 s went by.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    bool ready = false;
    while (!ready && std::chrono::steady_clock::now() < deadline) {
      timeval tv{0, 200 * 1000};
      setsockopt(nfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char buf[256];
      const ssize_t n = recv(nfd, buf, sizeof(buf) - 1, 0);
      if (n > 0) ready = std::string(buf, static_cast<size_t>(n)).find("READY=1") != std::string::npos;
      int status = 0;
      if (!ready && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
    }
    close(nfd);
    if (!ready) {
      std::ifstream in(log);
      std::string line, last;
      while (std::getline(in, line)) last = line;
      fail("the daemon did not become ready" + (last.empty() ? std::string() : ": " + last));
      return false;
    }
    return true;
  }

  // Keeps it running after this command (--keep-daemon): it now owns its directory.
  void detach() { pid_ = -1, dir_.clear(); }

  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      for (int i = 0; i < 100; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
      }
    }
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  const std::string& control() const { return control_; }
  const std::string& node_dir() const { return node_dir_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string dir_, control_, node_dir_;
};

// ---- the namespace ---------------------------------------------------------------------------

void write_file(const fs::path& p, const std::string& content) {
  std::ofstream out(p);
  out << content;
  if (!out) die_child("writing " + p.string());
}

void mount_or_die(const char* src, const fs::path& target, const char* type, unsigned long flags,
                  const std::string& data = "") {
  if (mount(src, target.c_str(), type, flags, data.empty() ? nullptr : data.c_str()) != 0)
    die_child("mount " + target.string());
}

// An overlay over `dir` whose changes go to a tmpfs of the namespace, so files can be added
// where the host's filesystem would not take them (devtmpfs, sysfs) or must not be changed.
// Mounts below `dir` are bound again on top.
void overlay(const fs::path& dir, const fs::path& staging) {
  static int n = 0;
  const fs::path up = staging / ("upper" + std::to_string(n)), work = staging / ("work" + std::to_string(n));
  const fs::path old = staging / ("old" + std::to_string(n++));
  fs::create_directories(up);
  fs::create_directories(work);
  fs::create_directories(old);
  mount_or_die(dir.c_str(), old, nullptr, MS_BIND | MS_REC);
  // The mounts under `dir` (devpts, shm, mqueue, ...), found before they are covered.
  std::vector<std::string> submounts;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  const std::string prefix = dir.string() + "/";
  while (std::getline(mi, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    if (point.rfind(prefix, 0) == 0) submounts.push_back(point.substr(prefix.size()));
  }
  // In a user namespace overlayfs keeps its metadata in user.* xattrs (trusted.* needs root).
  const std::string userxattr = getuid() == 0 ? "" : ",userxattr";
  mount_or_die("overlay", dir, "overlay", 0,
               "lowerdir=" + dir.string() + ",upperdir=" + up.string() + ",workdir=" + work.string() +
                   userxattr);
  for (const std::string& rel : submounts) {
    std::error_code ec;
    if (!fs::exists(dir / rel, ec)) continue;
    mount(( old / rel).c_str(), (dir / rel).c_str(), nullptr, MS_BIND | MS_REC, nullptr);
  }
}

void bind(const fs::path& from, const fs::path& to) { mount_or_die(from.c_str(), to, nullptr, MS_BIND); }

// A fresh tmpfs over `dir` holding every entry `dir` had (bound back in, symlinks copied) except
// those in `skip`: for /dev, which overlayfs cannot take as a lower layer in a user namespace.
void shadow(const fs::path& dir, const fs::path& staging, const std::vector<std::string>& skip) {
  const fs::path old = staging / ("shadow-" + dir.filename().string());
  fs::create_directories(old);
  mount_or_die(dir.c_str(), old, nullptr, MS_BIND | MS_REC);
  mount_or_die("tmpfs", dir, "tmpfs", MS_NOSUID, "mode=0755");
  std::error_code list_ec;  // a directory we may not read (debugfs, as a normal user): empty
  for (const fs::directory_entry& e : fs::directory_iterator(old, list_ec)) {
    const std::string name = e.path().filename().string();
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    const fs::path target = dir / name;
    std::error_code ec;
    if (e.is_symlink(ec)) {
      fs::create_symlink(fs::read_symlink(e.path(), ec), target, ec);
      continue;
    }
    if (e.is_directory(ec))
      fs::create_directory(target, ec);
    else
      std::ofstream(target).close();
    // Best effort: an entry that cannot be bound (a race with the host) is left out.
    mount(e.path().c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr);
  }
}

// Binds each file of the daemon's directory `from` over a new empty file of the same name in
// `to`. Returns false if `from` is not there.
bool bind_files(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) return false;
  for (const fs::directory_entry& e : fs::directory_iterator(from, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const fs::path target = to / e.path().filename();
    std::ofstream(target).close();
    bind(e.path(), target);
  }
  return true;
}

// Makes the mount at `dir` read-only (only that mount: the mounts inside keep their flags). With
// `bind_first`, `dir` is a directory inside a mount: it is bound onto itself (with what is
// mounted inside it) first, so that only it becomes read-only.
void read_only(const fs::path& dir, bool bind_first = false) {
  if (bind_first) mount_or_die(dir.c_str(), dir, nullptr, MS_BIND | MS_REC);
  mount_or_die(nullptr, dir, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY);
}

// A symbolic link at `link` to `target`, relative as sysfs's are ("../../drivers/vfio-pci"):
// tools resolve them against the link's directory (pciutils appends the link to it).
void relative_symlink(const fs::path& target, const fs::path& link) {
  fs::create_symlink(target.lexically_relative(link.parent_path()), link);
}

struct EmulatedDevice {
  std::string bdf, cdev, vendor, device;
  unsigned group;
  bool noiommu = false;  // in a no-IOMMU group (enable_unsafe_noiommu_mode)
};

void enter_namespace(const std::string& node_dir, const std::string& staging_dir,
                     const std::vector<EmulatedDevice>& devices, bool noiommu_mode) {
  const uid_t uid = getuid();
  const gid_t gid = getgid();
  if (uid == 0) {
    if (unshare(CLONE_NEWNS) != 0) die_child("unshare(CLONE_NEWNS)");
  } else {
    // A user namespace mapping only ourselves gives the mount rights, nothing else.
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
      die_child("unshare(CLONE_NEWUSER|CLONE_NEWNS) (are unprivileged user namespaces allowed?)");
    write_file("/proc/self/setgroups", "deny");
    write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1");
    write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1");
  }
  mount_or_die(nullptr, "/", nullptr, MS_REC | MS_PRIVATE);
  const fs::path staging = staging_dir;
  fs::create_directories(staging);
  mount_or_die("tmpfs", staging, "tmpfs", 0, "mode=0700");

  // /dev: the emulator's nodes at the real paths (real VFIO nodes, if any, are left out).
  shadow("/dev", staging, {"vfio", "iommu"});
  std::error_code ec;
  fs::create_directories("/dev/vfio", ec);
  std::ofstream("/dev/iommu").close();
  bind(fs::path(node_dir) / "vfio", "/dev/vfio");
  bind(fs::path(node_dir) / "iommu", "/dev/iommu");

  // /sys: the emulated PCI devices, their groups and cdevs.
  const fs::path pci = "/sys/bus/pci/devices";
  mount_or_die("tmpfs", pci, "tmpfs", 0, "mode=0755");
  overlay("/sys/kernel", staging);
  overlay("/sys/class", staging);
  overlay("/sys/bus/pci/drivers", staging);
  fs::remove_all("/sys/kernel/iommu_groups", ec);
  fs::remove_all("/sys/class/vfio-dev", ec);
  fs::remove_all("/sys/bus/pci/drivers/vfio-pci", ec);
  fs::create_directories("/sys/bus/pci/drivers/vfio-pci");
  const fs::path served = fs::path(node_dir) / "sys";  // the daemon's (cuse/sysfs_files.h)
  for (const EmulatedDevice& d : devices) {
    const fs::path dev = pci / d.bdf;
    const fs::path group = fs::path("/sys/kernel/iommu_groups") / std::to_string(d.group);
    fs::create_directories(dev / "vfio-dev" / d.cdev);
    fs::create_directories(group / "devices");
    // vfio_noiommu_group_alloc names its group; it has no default domain.
    write_file(group / "type", d.noiommu ? "unknown\n" : "DMA\n");
    if (d.noiommu) write_file(group / "name", "vfio-noiommu\n");
    if (!bind_files(served / "bus/pci/devices" / d.bdf, dev)) {
      // A daemon without them (an older one, reused with --control): the ids, as files.
      write_file(dev / "vendor", d.vendor + "\n");
      write_file(dev / "device", d.device + "\n");
      write_file(dev / "subsystem_vendor", d.vendor + "\n");
      write_file(dev / "subsystem_device", d.device + "\n");
      write_file(dev / "class", "0x00ff00\n");
    }
    // A FUSE node is a regular file: it has no device number to report.
    write_file(dev / "vfio-dev" / d.cdev / "dev", "0:0\n");
    relative_symlink(group, dev / "iommu_group");
    relative_symlink("/sys/bus/pci/drivers/vfio-pci", dev / "driver");
    relative_symlink(dev, group / "devices" / d.bdf);
    relative_symlink(dev, "/sys/bus/pci/drivers/vfio-pci" / fs::path(d.bdf));
    const fs::path cls = fs::path("/sys/class/vfio-dev") / d.cdev;
    fs::create_directories(cls);
    write_file(cls / "dev", "0:0\n");
    relative_symlink(dev, cls / "device");
  }
  bind_files(served / "bus/pci/drivers/vfio-pci", "/sys/bus/pci/drivers/vfio-pci");
  // The bus's rescan, drivers_probe and drivers_autoprobe are the daemon's: a write there must
  // reach the emulated bus, never the host's.
  bind_files(served / "bus/pci", "/sys/bus/pci");
  // vfio's module parameter, which DPDK and others read before they look for noiommu groups.
  if (fs::is_directory("/sys/module", ec)) {
    overlay("/sys/module", staging);
    fs::remove_all("/sys/module/vfio", ec);
    fs::create_directories("/sys/module/vfio/parameters", ec);
    write_file("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
               noiommu_mode ? "Y\n" : "N\n");
  }
  // What `run` made itself is read-only from here: a write to a file it wrote (vfio-dev/vfioN/dev,
  // an iommu group's type, vfio's module parameter) or a new file in those directories
  // (`echo 1 > .../enable`) fails with EROFS instead of silently landing in a tmpfs. The
  // daemon's files bound inside stay writable.
  read_only(pci);
  for (const char* dir : {"/sys/bus/pci/drivers/vfio-pci", "/sys/kernel/iommu_groups",
                          "/sys/class/vfio-dev"})
    read_only(dir, /*bind_first=*/true);
  if (fs::is_directory("/sys/module/vfio", ec)) read_only("/sys/module/vfio", /*bind_first=*/true);
  // The rest of the host's /sys/bus/pci (resource_alignment, slots/*/power, ...) is read-only
  // in the namespace: the program must not reach the host's PCI bus through it. The mounts
  // inside (the devices, the drivers, the daemon's files) keep their own flags.
  if (mount("/sys/bus/pci", "/sys/bus/pci", nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
      mount(nullptr, "/sys/bus/pci", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0)
    std::fprintf(stderr, "vfio-emu run: /sys/bus/pci stays writable (%s)\n", std::strerror(errno));
  // Intel IOMMU debugfs, for the devices behind VT-d: in a fresh /sys/kernel/debug that keeps
  // the host's other entries (debugfs itself takes no new directory).
  if (fs::is_directory(served / "kernel/debug/iommu", ec)) {
    fs::create_directories("/sys/kernel/debug", ec);
    shadow("/sys/kernel/debug", staging, {"iommu"});
    fs::create_directories("/sys/kernel/debug/iommu");
    bind(served / "kernel/debug/iommu", "/sys/kernel/debug/iommu");
  }
}

// ---- the seccomp listener, from the program to us ---------------------------------------------

void send_listener(int sock, int fd) {
  char byte = 'L';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) != 1) die_child("passing the seccomp listener");
}

// The listener the program sends before it execs, or -1 if it failed before that.
int receive_listener(int sock) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

// ---- what the program leaves behind ----------------------------------------------------------

// Our children other than those in `except` (the daemon, the store watcher), from /proc: the program's processes that
// outlived their parents are reparented to us (PR_SET_CHILD_SUBREAPER).
std::vector<pid_t> children_except(const std::vector<pid_t>& except) {
  std::vector<pid_t> kids;
  const pid_t self = getpid();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t paren = line.rfind(')');  // the command name may hold spaces and parens
    if (paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(line.c_str() + paren + 1, " %c %d", &state, &ppid) != 2) continue;
    const pid_t pid = static_cast<pid_t>(std::stoi(name));
    if (ppid == self && std::find(except.begin(), except.end(), pid) == except.end())
      kids.push_back(pid);
  }
  return kids;
}

// Waits for the processes the program left running (`sh -c 'prog & ...'`) for up to `grace`,
// then ends them (SIGTERM, and SIGKILL 2 s later): the daemon must not stop under a client that
// still uses its nodes. Returns how many there were.
size_t end_leftover_processes(const std::vector<pid_t>& ours, std::chrono::duration<double> grace) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  size_t seen = 0;
  int signal_sent = 0;
  for (;;) {
    std::vector<pid_t> kids = children_except(ours);
    for (pid_t k : kids) waitpid(k, nullptr, WNOHANG);  // reap the finished
    kids = children_except(ours);
    if (kids.empty()) return seen;
    seen = std::max(seen, kids.size());
    const auto waited = Clock::now() - start;
    const int due = waited > grace + std::chrono::seconds(2) ? SIGKILL
                    : waited > grace                         ? SIGTERM
                                                             : 0;
    if (due != 0 && due != signal_sent) {
      std::fprintf(stderr, "vfio-emu run: %zu process(es) of the program still run after %.0f s: "
                   "%s\n", kids.size(), std::chrono::duration<double>(grace).count(),
                   due == SIGTERM ? "SIGTERM" : "SIGKILL");
      signal_sent = due;
    }
    if (signal_sent != 0)
      for (pid_t k : kids) kill(k, signal_sent);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// ---- the command -----------------------------------------------------------------------------

int run(const RunOptions& o) {
  if (o.argv.empty()) return fail("nothing to run: vfio-emu run -- PROGRAM [ARGS...]"), 2;
  Daemon daemon;
  std::string control = o.control, node_dir;
  ControlClient probe(control.empty() ? "/nonexistent" : control, std::chrono::seconds(5));
  Outcome status = control.empty() ? Outcome::failure(kExitNotRunning, "") : probe.request({{"cmd", "status"}});
  if (status.ok()) {
    node_dir = status.result.value("node_dir", "");
    if (status.result.value("transport", "") != "fuse" || node_dir.empty())
      return fail("the daemon at " + control + " serves no FUSE node directory to bind"), 1;
  } else {
    if (!daemon.start(o)) return 1;
    control = daemon.control();
    node_dir = daemon.node_dir();
  }
  ControlClient client(control, std::chrono::seconds(5));
  Outcome list = client.request({{"cmd", "list"}});
  if (!list.ok()) return fail("asking the daemon for its devices: " + list.message), 1;
  std::vector<EmulatedDevice> devices;
  std::vector<WatchedDevice> watched;
  for (const auto& d : list.result["devices"]) {
    devices.push_back(EmulatedDevice{d["bdf"], d["cdev"], d["vendor"], d["device"], d["group"],
                                     d.value("noiommu", false)});
    WatchedDevice w{d["bdf"], d["cdev"], {}};
    for (const auto& bar : d.value("trapped_bars", Json::array())) w.trapped_bars.push_back(bar);
    if (!w.trapped_bars.empty()) watched.push_back(std::move(w));
  }
  const bool noiommu_mode = list.result.value("enable_unsafe_noiommu_mode", false);

  const std::string staging =
      (daemon.dir().empty() ? std::string("/tmp") : daemon.dir()) + "/ns." + std::to_string(getpid());

  // The program: a child that enters the namespace and execs. What it leaves running when it
  // exits becomes ours, to wait for before the daemon stops.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int listener_sock[2], go[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, listener_sock) != 0 ||
      pipe2(go, O_CLOEXEC) != 0)
    return fail(std::string("socketpair: ") + std::strerror(errno)), 1;
  const pid_t child = fork();
  if (child < 0) return fail(std::string("fork: ") + std::strerror(errno)), 1;
  if (child == 0) {
    close(listener_sock[0]);
    close(go[1]);
    enter_namespace(node_dir, staging, devices, noiommu_mode);
    // Whether the store watcher traces us (then it checks our file mmaps, not the supervisor).
    char traced = 0;
    if (read(go[0], &traced, 1) != 1) die_child("waiting for the supervisor");
    close(go[0]);
    // The last step before exec: from here on GET_DEVICE_FD goes to our supervisor.
    const int listener = install_device_fd_filter(traced == 1);
    if (listener < 0) die_child("seccomp user notification (Linux 5.14+ needed)");
    send_listener(listener_sock[1], listener);
    close(listener);
    close(listener_sock[1]);
    std::vector<char*> av;
    for (auto& a : const_cast<std::vector<std::string>&>(o.argv)) av.push_back(a.data());
    av.push_back(nullptr);
    execvp(av[0], av.data());
    die_child("cannot run " + o.argv[0]);
  }
  close(listener_sock[1]);
  close(go[0]);
  auto supervisor = std::make_unique<DeviceFdSupervisor>(node_dir);
  // While this process has one thread: the watcher is a fork of it.
  const pid_t watcher = o.no_store_watch || watched.empty()
                            ? -1
                            : start_store_watch(child, *supervisor, std::move(watched), control);
  const char traced = watcher > 0 ? 1 : 0;
  (void)!write(go[1], &traced, 1);
  close(go[1]);
  const int listener = receive_listener(listener_sock[0]);
  close(listener_sock[0]);
  if (listener >= 0) supervisor->start(listener);
  // Interrupts go to the program; we wait for it.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  int wstatus = 0;
  while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
  }
  end_leftover_processes({daemon.pid(), watcher},
                         std::chrono::duration<double>(std::max(0.0, o.grace_s)));
  supervisor.reset();
  if (watcher > 0) {
    // It ends when the last process it traces has; it traces no one now.
    for (int i = 0; i < 100 && waitpid(watcher, nullptr, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (kill(watcher, SIGKILL) == 0) waitpid(watcher, nullptr, 0);
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  std::error_code ec;
  fs::remove(staging, ec);
  if (o.keep_daemon && daemon.pid() > 0) {
    std::fprintf(stderr, "vfio-emu run: the daemon keeps running: pid %d, --control %s, nodes in %s\n",
                 daemon.pid(), daemon.control().c_str(), daemon.node_dir().c_str());
    daemon.detach();
  }
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 1;
}

}  // namespace

void add_run_command(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand(
      "run", "run PROGRAM where /dev/vfio, /dev/iommu and the VFIO sysfs entries are emulated");
  cmd->add_option("--config", options->config, "topology file for the daemon it starts");
  cmd->add_flag("--enable-unsafe-noiommu-mode", options->noiommu_mode,
                "the daemon it starts gives devices behind no IOMMU no-IOMMU groups");
  cmd->add_flag("--allow-unsafe-interrupts", options->allow_unsafe_interrupts,
                "the daemon it starts allows units without interrupt remapping");
  cmd->add_flag("--keep-daemon", options->keep_daemon, "leave the daemon it started running");
  cmd->add_flag("--no-store-watch", options->no_store_watch,
                "do not trace the program: its stores to mapped BARs are polled, none is taken "
                "before its next instruction (lets a debugger attach)");
  cmd->add_option("--grace", options->grace_s,
                  "seconds the processes the program leaves running may go on before they are "
                  "ended (the daemon stops only after them)")
      ->capture_default_str();
  cmd->add_option("--control", options->control,
                  "use the daemon on this control socket (started there if none answers)");
  cmd->add_option("program", options->argv, "PROGRAM [ARGS...] (after --)")->required();
  cmd->footer("Example: vfio-emu run -- ./my-vfio-program");
  cmd->callback([options, exit_code] { *exit_code = run(*options); });
}

}  // namespace vfio_emu::tools
