#include "cuse/fuse_transport.h"

#include <signal.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string_view>
#include <thread>

#include "base/errno_name.h"
#include "core/device.h"
#include "core/log.h"
#include "core/node_type.h"
#include "cuse/caller_process.h"
#include "cuse/fuse_passthrough.h"
#include "cuse/transport.h"

namespace vfio_emu::cuse {
namespace {

constexpr double kTimeout = 3600;  // the tree never changes while mounted

// The st_dev of the filesystem mounted at `dir` (the last mount there), from mountinfo:
// "id parent major:minor root mountpoint ...".
// `canonical_dir` must have been resolved before the mount: resolving it now would stat the
// mount point, a request to the not-yet-serving filesystem.
dev_t mount_device(const std::string& canonical_dir) {
  const std::string& want = canonical_dir;
  FILE* f = std::fopen("/proc/self/mountinfo", "re");
  if (f == nullptr) return 0;
  dev_t dev = 0;
  char line[4096];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned maj = 0, min = 0;
    char mountpoint[2048];
    if (std::sscanf(line, "%*u %*u %u:%u %*s %2047s", &maj, &min, mountpoint) != 3) continue;
    if (want == mountpoint) dev = makedev(maj, min);
  }
  std::fclose(f);
  return dev;
}

// The filesystem type of the last mount at `canonical_dir`, from mountinfo ("" if none):
// "id parent major:minor root mountpoint options... - fstype source superoptions".
std::string mount_type(const std::string& canonical_dir) {
  FILE* f = std::fopen("/proc/self/mountinfo", "re");
  if (f == nullptr) return {};
  std::string type;
  char line[4096];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    char mountpoint[2048];
    if (std::sscanf(line, "%*u %*u %*u:%*u %*s %2047s", mountpoint) != 1) continue;
    if (canonical_dir != mountpoint) continue;
    const char* dash = std::strstr(line, " - ");
    char fstype[256];
    if (dash != nullptr && std::sscanf(dash + 3, "%255s", fstype) == 1) type = fstype;
  }
  std::fclose(f);
  return type;
}

// The backing id an OPEN reply written by this thread is to carry (op_open sets it around
// serve_open, which replies on the same thread), or -1.
thread_local int t_open_backing = -1;

class OpenBackingScope {
 public:
  explicit OpenBackingScope(int id) { t_open_backing = id; }
  ~OpenBackingScope() { t_open_backing = -1; }
};

// Whether thread `tid` has CAP_SYS_ADMIN in the initial user namespace (file_ns_capable(filp,
// &init_user_ns, ...)): in its effective set, and in the daemon's user namespace, which is the
// initial one when the daemon runs outside any (a `run` namespace of a normal user is not).
bool opener_privileged(pid_t tid) {
  if (!has_capability(tid, CAP_SYS_ADMIN)) return false;
  struct stat mine {}, theirs {};
  const std::string ns = "/proc/" + std::to_string(tid) + "/ns/user";
  return ::stat("/proc/self/ns/user", &mine) == 0 && ::stat(ns.c_str(), &theirs) == 0 &&
         mine.st_ino == theirs.st_ino && mine.st_dev == theirs.st_dev;
}

enum class MountState { kDead, kAlive, kNotAnswering };

// Whether a FUSE mount at `dir` still has a daemon. Asked with statfs(), which the kernel always
// sends to the daemon (a stat() may be answered from cached attributes), from a child process:
// the request would block whoever asks while the daemon is stopped (SIGSTOP).
MountState probe_mount(const std::string& dir) {
  const pid_t child = fork();
  if (child < 0) return MountState::kNotAnswering;
  if (child == 0) {
    struct statfs st {};
    const int r = ::statfs(dir.c_str(), &st);
    _exit(r == 0 ? 0 : errno == ENOTCONN ? 1 : 2);
  }
  for (int waited_ms = 0; waited_ms < 2000; waited_ms += 10) {
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child)
      return WIFEXITED(status) && WEXITSTATUS(status) == 1 ? MountState::kDead
                                                           : MountState::kAlive;
    usleep(10 * 1000);
  }
  kill(child, SIGKILL);  // a FUSE request waits killably
  waitpid(child, nullptr, 0);
  return MountState::kNotAnswering;
}

}  // namespace

FuseTransport::FuseTransport(core::Emulator& emu, ThreadGroups& threads, std::string dir)
    : emu_(emu),
      threads_(threads),
      service_(emu, *this, threads, ArgAccess::kDirect),
      sysfs_(emu),
      dir_(std::move(dir)) {
  inodes_.push_back(Inode{"", 1, true, nullptr, nullptr, {}});  // ino 1: the root
  for (const core::NodeInfo& n : emu_.nodes()) inodes_[add_path(n.path) - 1].node = &n;
  for (const SysfsFile& f : sysfs_.files()) inodes_[add_path(f.path) - 1].sysfs = &f;
}

fuse_ino_t FuseTransport::add_path(const std::string& path) {
  fuse_ino_t parent = 1;
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    const std::string part = path.substr(start, slash == std::string::npos ? slash : slash - start);
    auto& children = inodes_[parent - 1].children;
    auto it = children.find(part);
    if (it == children.end()) {
      const fuse_ino_t ino = inodes_.size() + 1;
      const bool is_dir = slash != std::string::npos;
      inodes_.push_back(Inode{part, parent, is_dir, nullptr, nullptr, {}});
      it = inodes_[parent - 1].children.emplace(part, ino).first;
    }
    if (slash == std::string::npos) return it->second;
    parent = it->second;
    start = slash + 1;
  }
}

FuseTransport::~FuseTransport() {
  if (se_ != nullptr && mounted_) fuse_session_unmount(se_);  // aborts: deferred calls return
  mounted_ = false;
  service_.stop_deferred();  // they answer through the session
  if (se_ != nullptr) {
    if (mounted_) fuse_session_unmount(se_);
    fuse_session_destroy(se_);
  }
}

FuseTransport& FuseTransport::self(fuse_req_t req) {
  return *static_cast<FuseTransport*>(fuse_req_userdata(req));
}

core::Caller FuseTransport::caller_of(fuse_req_t req) const {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return service_.caller_from(ctx->pid, ctx->uid, ctx->gid);
}

struct stat FuseTransport::attr_of(fuse_ino_t ino) const {
  struct stat st {};
  const Inode& in = inodes_[ino - 1];
  st.st_ino = ino;
  st.st_uid = geteuid();
  st.st_gid = getegid();
  if (in.node != nullptr) {
    st.st_uid = in.node->uid.value_or(st.st_uid);
    st.st_gid = in.node->gid.value_or(st.st_gid);
  }
  if (in.dir) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
  } else if (in.sysfs != nullptr) {
    // Root's, as sysfs's files are.
    st.st_uid = 0;
    st.st_gid = 0;
    st.st_mode = S_IFREG | in.sysfs->mode;
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(in.sysfs->size);
  } else {
    st.st_mode = S_IFREG | in.node->mode;
    st.st_nlink = 1;
  }
  return st;
}

bool FuseTransport::is_ours(const struct stat& st) const {
  return mounted_ && st.st_dev == mount_dev_ && S_ISREG(st.st_mode) && st.st_ino >= 1 &&
         st.st_ino <= inodes_.size() && inodes_[st.st_ino - 1].node != nullptr;
}

// ---- operations ------------------------------------------------------------------------------

void FuseTransport::op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  FuseTransport& t = self(req);
  if (parent < 1 || parent > t.inodes_.size()) return (void)fuse_reply_err(req, ENOENT);
  const auto& children = t.inodes_[parent - 1].children;
  auto it = children.find(name);
  if (it == children.end()) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = it->second;
  e.attr = t.attr_of(it->second);
  e.attr_timeout = kTimeout;
  e.entry_timeout = kTimeout;
  fuse_reply_entry(req, &e);
}

void FuseTransport::op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  FuseTransport& t = self(req);
  if (ino < 1 || ino > t.inodes_.size()) return (void)fuse_reply_err(req, ENOENT);
  const struct stat st = t.attr_of(ino);
  fuse_reply_attr(req, &st, kTimeout);
}

void FuseTransport::op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                               fuse_file_info*) {
  FuseTransport& t = self(req);
  if (ino < 1 || ino > t.inodes_.size() || !t.inodes_[ino - 1].dir)
    return (void)fuse_reply_err(req, ENOTDIR);
  std::vector<std::pair<std::string, fuse_ino_t>> entries{{".", ino},
                                                          {"..", t.inodes_[ino - 1].parent}};
  for (const auto& [name, child] : t.inodes_[ino - 1].children) entries.emplace_back(name, child);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < entries.size(); ++i) {
    const struct stat st = t.attr_of(entries[i].second);
    const size_t n = fuse_add_direntry(req, buf.data() + used, size - used,
                                       entries[i].first.c_str(), &st, static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void FuseTransport::op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FuseTransport& t = self(req);
  if (ino < 1 || ino > t.inodes_.size()) return (void)fuse_reply_err(req, ENOENT);
  const Inode& in = t.inodes_[ino - 1];
  if (in.dir) return (void)fuse_reply_err(req, EISDIR);
  if (in.sysfs != nullptr) {
    // A BAR's resource file maps the BAR by passthrough, as the device file does (every open of
    // the inode is passthrough, or none).
    const OpenBackingScope backing(resource_has_mmap(*in.sysfs) ? t.backing_id(in.sysfs) : -1);
    return t.open_sysfs(req, *in.sysfs, fi);
  }
  fi->direct_io = 1;   // region reads and writes go to the daemon, never the page cache
  fi->keep_cache = 0;
  // A device file maps its BARs by passthrough; the kernel refuses (EINVAL) an open of an inode
  // in passthrough mode that is not passthrough itself, so every open of a device node is.
  const OpenBackingScope backing(t.backing_id(in.node));
  serve_open(t.emu_, t.service_.files(), req, fi, *in.node, t.caller_of(req));
}

void FuseTransport::op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat*, int,
                               fuse_file_info*) {
  FuseTransport& t = self(req);
  // O_TRUNC of an attribute (`echo x > attr`): sysfs takes it and changes nothing.
  if (t.sysfs_of(ino) == nullptr) return (void)fuse_reply_err(req, ENOSYS);
  const struct stat st = t.attr_of(ino);
  fuse_reply_attr(req, &st, kTimeout);
}

const SysfsFile* FuseTransport::sysfs_of(fuse_ino_t ino) const {
  return ino >= 1 && ino <= inodes_.size() ? inodes_[ino - 1].sysfs : nullptr;
}

void FuseTransport::open_sysfs(fuse_req_t req, const SysfsFile& f, fuse_file_info* fi) {
  // Every read and write goes to the daemon: contents are per open, never the page cache's.
  fi->direct_io = 1;
  fi->keep_cache = 0;
  const pid_t tid = fuse_req_ctx(req)->pid;
  auto content = sysfs_.open(f, fi->flags, opener_privileged(tid));
  if (!content) {
    logger("cuse")->debug("open of {} (flags {:#x}) by {}: {}", f.path, fi->flags, tid,
                          errno_name(content.error()));
    return (void)fuse_reply_err(req, content.error());
  }
  // What all open sysfs files hold together is bounded: a program that opens a big page table's
  // file many times gets ENOMEM, not the daemon's memory.
  const u64 bytes = content->size();
  if (sysfs_bytes_.fetch_add(bytes) + bytes > kSysfsBytesMax) {
    sysfs_bytes_.fetch_sub(bytes);
    logger("cuse")->info("open of {} by {}: the open sysfs files would hold more than {:#x} "
                         "bytes: ENOMEM", f.path, tid, kSysfsBytesMax);
    return (void)fuse_reply_err(req, ENOMEM);
  }
  std::unique_ptr<SysfsHandle> h;
  try {
    h = std::make_unique<SysfsHandle>(content.take(), this);
  } catch (const std::bad_alloc&) {
    sysfs_bytes_.fetch_sub(bytes);
    return (void)fuse_reply_err(req, ENOMEM);
  }
  fi->fh = reinterpret_cast<uint64_t>(h.get());
  if (fuse_reply_open(req, fi) == -ENOENT) return;  // the caller is gone: h gives the bytes back
  h.release();  // the kernel's now, until op_release
}

// ---- the raw channel: passthrough -------------------------------------------------------------

ssize_t FuseTransport::channel_read(int fd, void* buf, size_t len, void* userdata) {
  const ssize_t n = ::read(fd, buf, len);
  if (n == 0) {  // as libfuse's own read: the connection is gone
    errno = ENODEV;
    return -1;
  }
  if (n > 0) {
    if (auto offer = passthrough::parse_init_request(buf, static_cast<size_t>(n))) {
      auto& t = *static_cast<FuseTransport*>(userdata);
      t.kernel_passthrough_ = offer->passthrough;
      t.init_unique_ = offer->unique;
    }
  }
  return n;
}

ssize_t FuseTransport::channel_writev(int fd, iovec* iov, int count, void* userdata) {
  auto& t = *static_cast<FuseTransport*>(userdata);
  const auto header = passthrough::reply_header(iov, count);
  bool asked = false;
  if (header && header->error == 0) {
    if (t.init_unique_ != 0 && header->unique == t.init_unique_) {
      t.init_unique_ = 0;
      // Backing files need CAP_SYS_ADMIN: without it, mmap stays off (ENODEV, as before).
      if (t.kernel_passthrough_ && geteuid() == 0) asked = passthrough::ask_passthrough(iov, count);
    } else if (t_open_backing >= 0) {
      passthrough::mark_open_passthrough(iov, count, t_open_backing);
    }
  }
  if (asked) {
    std::lock_guard lock(t.backing_mu_);
    t.bar_mmap_pending_ = true;
  }
  const ssize_t r = ::writev(fd, iov, count);
  if (asked) {
    const int e = errno;
    if (r >= 0) t.start_bar_mmap(fd);  // the kernel has taken INIT's reply: passthrough is on
    {
      std::lock_guard lock(t.backing_mu_);
      t.bar_mmap_pending_ = false;
    }
    t.backing_cv_.notify_all();
    errno = e;
  }
  return r;
}

void FuseTransport::start_bar_mmap(int fuse_fd) {
  auto log = logger("cuse");
  // Tests widen the window in which OPENs arrive before the backing files are registered.
  if (const char* ms = std::getenv("VFIO_EMU_TEST_BAR_MMAP_DELAY_MS"))
    std::this_thread::sleep_for(std::chrono::milliseconds(std::strtoul(ms, nullptr, 10) % 10000));
  // A throwaway backing file first: if the kernel refuses, nothing has changed.
  const int probe = ::memfd_create("vfio-emu passthrough probe", MFD_CLOEXEC);
  if (probe < 0) return;
  auto id = passthrough::backing_open(fuse_fd, probe);
  ::close(probe);
  if (!id) {
    log->warn("FUSE passthrough refused by the kernel ({}): device BARs cannot be mapped "
              "(mmap gives ENODEV)", errno_name(id.error()));
    return;
  }
  passthrough::backing_close(fuse_fd, *id);
  if (Status st = core::enable_bar_mmap(emu_); !st) {
    log->error("cannot create the BAR memory of the devices ({}): BARs cannot be mapped",
               errno_name(st.error()));
    return;
  }
  std::lock_guard lock(backing_mu_);
  for (const Inode& in : inodes_) {
    if (in.node == nullptr) continue;
    const int fd = core::device_bar_fd(emu_, *in.node);
    if (fd < 0) continue;
    auto made = passthrough::backing_open(fuse_fd, fd);
    if (!made) {
      log->error("{}: FUSE_DEV_IOC_BACKING_OPEN of its BAR memory failed ({}): mmap of it gives "
                 "ENODEV", in.node->path, errno_name(made.error()));
      continue;
    }
    backing_ids_[in.node] = *made;
  }
  register_resource_backing(fuse_fd);
  bar_mmap_ = true;
  log->info("FUSE passthrough: BARs of {} device nodes and {} resource files can be mapped",
            backing_ids_.size(), resource_backing_ids_.size());
}

// The resource files of mappable BARs get the device's BAR memory as backing file too. The kernel
// maps a backing file at the offset the program asked for, and the memory holds BAR n at its VFIO
// region offset n << 40 (devices/bar_window.h): only a BAR at offset 0, BAR0, lines up with its
// resource file. backing_mu_ held.
void FuseTransport::register_resource_backing(int fuse_fd) {
  auto log = logger("cuse");
  for (const SysfsFile& f : sysfs_.files()) {
    if (!resource_has_mmap(f)) continue;
    core::Device& d = *f.device;
    int fd = -1;
    {
      std::lock_guard lock(d.regions_mu);
      if (d.bar_file != nullptr && d.bar_file->window(f.bar) != nullptr) fd = d.bar_file->fd();
    }
    if (fd < 0) {
      log->info("{}: BAR{} of the {} model cannot be mapped: mmap of it gives ENODEV", f.path,
                f.bar, d.model->name());
      continue;
    }
    if (core::vfio_pci_index_to_offset(f.bar) != 0) {
      log->info("{}: BAR{} is at {:#x} in the BAR memory, not at 0: mmap of it gives ENODEV",
                f.path, f.bar, core::vfio_pci_index_to_offset(f.bar));
      continue;
    }
    auto made = passthrough::backing_open(fuse_fd, fd);
    if (!made) {
      log->error("{}: FUSE_DEV_IOC_BACKING_OPEN of its BAR memory failed ({}): mmap of it gives "
                 "ENODEV", f.path, errno_name(made.error()));
      continue;
    }
    resource_backing_ids_[&f] = *made;
  }
}

int FuseTransport::backing_id(const core::NodeInfo* node) {
  return backing_id(node, backing_ids_, node->path);
}

int FuseTransport::backing_id(const SysfsFile* file) {
  return backing_id(file, resource_backing_ids_, file->path);
}

template <typename Key>
int FuseTransport::backing_id(const Key* key, const std::map<const Key*, int>& ids,
                              const std::string& path) {
  std::unique_lock lock(backing_mu_);
  // Waits on this daemon's own set-up (a few ioctls on /dev/fuse), never on a request.
  if (bar_mmap_pending_ &&
      !backing_cv_.wait_for(lock, std::chrono::seconds(10), [this] { return !bar_mmap_pending_; }))
    logger("cuse")->warn("{}: opened before the BAR memory was registered: mmap gives ENODEV",
                         path);
  if (!bar_mmap_) return -1;
  auto it = ids.find(key);
  return it == ids.end() ? -1 : it->second;
}

void FuseTransport::op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FuseTransport& t = self(req);
  if (t.sysfs_of(ino) != nullptr) return (void)fuse_reply_err(req, 0);
  // The daemon's own close of an fd it took to identify a file is not a client closing it.
  if (fuse_req_ctx(req)->pid != gettid() && t.threads_.tgid_of(fuse_req_ctx(req)->pid) != getpid())
    t.service_.files().flushed(*handle_of(fi)->file);
  fuse_reply_err(req, 0);
}

void FuseTransport::op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FuseTransport& t = self(req);
  if (t.sysfs_of(ino) != nullptr) {
    delete reinterpret_cast<SysfsHandle*>(fi->fh);  // gives its bytes back
    return (void)fuse_reply_err(req, 0);
  }
  serve_release(t.emu_, t.service_.files(), req, fi);
}

void FuseTransport::op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            fuse_file_info* fi) {
  FuseTransport& t = self(req);
  if (const SysfsFile* f = t.sysfs_of(ino); f != nullptr && is_resource_file(*f)) {
    // kernfs_file_read_iter: at most a page per read.
    std::array<u8, kSysfsWriteMax> buf;
    auto r = t.sysfs_.bin_read(*f, static_cast<u64>(off), buf.data(), std::min(size, buf.size()));
    if (!r) return (void)fuse_reply_err(req, r.error());
    return (void)fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *r);
  }
  if (t.sysfs_of(ino) != nullptr) {
    // The contents the open computed; past their end, nothing (end of file).
    const std::string& text = reinterpret_cast<SysfsHandle*>(fi->fh)->content;
    const size_t at = off < 0 ? text.size() : std::min(text.size(), static_cast<size_t>(off));
    return (void)fuse_reply_buf(req, text.data() + at, std::min(size, text.size() - at));
  }
  std::vector<char> buf(size);
  auto r = t.emu_.read(*handle_of(fi)->file, static_cast<u64>(off), buf.data(), size);
  if (!r) return (void)fuse_reply_err(req, r.error());
  fuse_reply_buf(req, buf.data(), *r);
}

void FuseTransport::op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                             fuse_file_info* fi) {
  FuseTransport& t = self(req);
  if (const SysfsFile* f = t.sysfs_of(ino)) {
    // kernfs_fop_write_iter: a sysfs attribute's store sees at most PAGE_SIZE bytes.
    const size_t len = f->kind == SysfsKind::kDomainTranslation ? size : std::min(size, kSysfsWriteMax);
    auto r = is_resource_file(*f)
                 ? t.sysfs_.bin_write(*f, static_cast<u64>(off), reinterpret_cast<const u8*>(buf), len)
                 : t.sysfs_.store(*f, std::string_view(buf, len));
    if (!r) return (void)fuse_reply_err(req, r.error());
    return (void)fuse_reply_write(req, *r);
  }
  auto r = t.emu_.write(*handle_of(fi)->file, static_cast<u64>(off), buf, size);
  if (!r) return (void)fuse_reply_err(req, r.error());
  fuse_reply_write(req, *r);
}

void FuseTransport::op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* arg,
                             fuse_file_info* fi, unsigned flags, const void* in_buf,
                             size_t in_bufsz, size_t out_bufsz) {
  FuseTransport& t = self(req);
  if (t.sysfs_of(ino) != nullptr) return (void)fuse_reply_err(req, ENOTTY);
  if (flags & FUSE_IOCTL_DIR) return (void)fuse_reply_err(req, ENOTTY);
  (void)in_buf;  // FUSE ioctls are restricted: the kernel sends no data, only the pointer
  (void)in_bufsz;
  (void)out_bufsz;
  Handle* h = handle_of(fi);
  IoctlRequest rq;
  rq.file = h->file;
  rq.node_name = h->node_name;
  rq.caller = t.caller_of(req);
  rq.cmd = cmd;
  rq.arg = reinterpret_cast<u64>(arg);
  serve_ioctl(t.service_, req, rq);
}

// ---- session ---------------------------------------------------------------------------------

Status FuseTransport::mount() {
  auto log = logger("cuse");
  std::error_code ec;
  // The parent is resolved, not dir_ itself: a stat of a dead mount point fails (ENOTCONN).
  std::filesystem::path abs = std::filesystem::absolute(dir_, ec).lexically_normal();
  if (!ec && abs.filename().empty()) abs = abs.parent_path();  // "dir/"
  if (!ec) std::filesystem::create_directories(abs.parent_path(), ec);
  const std::string canonical =
      ec ? std::string() : (std::filesystem::canonical(abs.parent_path(), ec) / abs.filename()).string();
  if (ec) {
    log->error("cannot create or resolve {}: {}", dir_, ec.message());
    return err(ec.value());
  }
  // A vfio-emu mount already there: left by a daemon that was killed (dead: removed, as the
  // kernel would have on a clean exit), or served by a live daemon (not mounted over).
  if (mount_type(canonical) == "fuse.vfio-emu") {
    switch (probe_mount(canonical)) {
      case MountState::kDead:
        if (umount2(canonical.c_str(), MNT_DETACH) != 0) {
          log->error("{}: a dead vfio-emu mount is there and cannot be removed: {}", canonical,
                     std::strerror(errno));
          return err(EBUSY);
        }
        log->warn("{}: removed the dead vfio-emu mount of a daemon that did not stop cleanly",
                  canonical);
        break;
      case MountState::kAlive:
        log->error("{}: another vfio-emud serves this directory", canonical);
        return err(EBUSY);
      case MountState::kNotAnswering:
        log->error("{}: a vfio-emu mount is there whose daemon does not answer (stopped?); "
                   "not mounting over it", canonical);
        return err(EBUSY);
    }
  }
  if (::mkdir(canonical.c_str(), 0755) != 0 && errno != EEXIST) {
    const int e = errno;
    log->error("cannot create {}: {}", canonical, std::strerror(e));
    return err(e);
  }
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.lookup = op_lookup;
    o.getattr = op_getattr;
    o.readdir = op_readdir;
    o.open = op_open;
    o.flush = op_flush;
    o.release = op_release;
    o.read = op_read;
    o.write = op_write;
    o.ioctl = op_ioctl;
    o.setattr = op_setattr;
    return o;
  }();
  // allow_other: every user's programs reach the nodes; default_permissions: the kernel
  // enforces the nodes' modes (groups and devices root-only, like Linux's). A daemon that is not
  // root mounts through fusermount3, which allows allow_other only with user_allow_other in
  // /etc/fuse.conf; without it only the daemon's own user reaches the nodes, which is what
  // `vfio-emu run` as that user needs.
  const bool root = geteuid() == 0;
  const char* opts = root ? "allow_other,default_permissions,fsname=vfio-emu,subtype=vfio-emu"
                          : "default_permissions,fsname=vfio-emu,subtype=vfio-emu";
  if (!root) log->info("not root: the nodes are reachable by uid {} only", geteuid());
  const char* argv[] = {"vfio-emud", "-o", opts};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  se_ = fuse_session_new(&args, &ops, sizeof(ops), this);
  fuse_opt_free_args(&args);  // what option parsing copied
  if (se_ == nullptr) return err(EIO);
  if (fuse_session_mount(se_, dir_.c_str()) != 0) {
    log->error("cannot mount FUSE at {} (is /dev/fuse there, are we root?)", dir_);
    return err(EIO);
  }
  mounted_ = true;
  static const fuse_custom_io io = [] {
    fuse_custom_io i{};
    i.read = channel_read;
    i.writev = channel_writev;
    return i;
  }();
  if (fuse_session_custom_io(se_, &io, fuse_session_fd(se_)) != 0) {
    log->error("cannot take the FUSE channel (fuse_session_custom_io)");
    return err(EIO);
  }
  // Not stat(dir_): that would be a request to this very filesystem, whose loop is not running
  // yet. The kernel's mount table names the device number without asking us.
  mount_dev_ = mount_device(canonical);
  if (mount_dev_ == 0) {
    log->error("cannot find the FUSE mount at {} in /proc/self/mountinfo", dir_);
    return err(EIO);
  }
  log->info("FUSE transport: {} nodes under {}", emu_.nodes().size(), dir_);
  return {};
}

int FuseTransport::run() {
  if (fuse_set_signal_handlers(se_) != 0) return 1;
  // Only this thread takes the stop signals (vfio_emud.cc blocked them before starting any
  // helper thread): its wait in the loop is what a signal must interrupt.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  // Identifying an fd makes this daemon call into itself: there must always be a free worker.
  fuse_loop_cfg_set_max_threads(cfg, 64);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  const int r = fuse_session_loop_mt(se_, cfg);
  fuse_loop_cfg_destroy(cfg);
  fuse_remove_signal_handlers(se_);
  // Unmounting closes the session's /dev/fuse fd first, and with it the kernel aborts the
  // connection: every request still waiting fails with ENOTCONN at once, the daemon's own (a
  // deferred call identifying an fd) included. Only then can the deferred calls be waited for.
  if (mounted_) {
    fuse_session_unmount(se_);
    mounted_ = false;
  }
  service_.stop_deferred();
  return r;
}

}  // namespace vfio_emu::cuse
