#include "cuse/cuse_transport.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <cstring>

#include "core/log.h"
#include "cuse/transport.h"

namespace vfio_emu::cuse {
namespace {

// fuse_session_custom_io: one whole request per read; EOF becomes ENODEV, a clean end.
ssize_t channel_read(int fd, void* buf, size_t len, void*) {
  const ssize_t n = ::read(fd, buf, len);
  if (n == 0) {
    errno = ENODEV;
    return -1;
  }
  return n;
}

ssize_t channel_writev(int fd, iovec* iov, int count, void*) { return ::writev(fd, iov, count); }

void wake(int) {}  // SIGUSR1 only interrupts the session loop's wait

}  // namespace

CuseTransport::CuseTransport(core::Emulator& emu, ThreadGroups& threads, std::string prefix,
                             ArgAccess access)
    : emu_(emu), service_(emu, *this, threads, access), prefix_(std::move(prefix)) {}

CuseTransport::~CuseTransport() {
  abort_connections();
  service_.stop_deferred();  // they answer through the sessions
  for (auto& s : sessions_)
    if (s->se != nullptr) fuse_session_destroy(s->se);  // closes the channel
}

CuseTransport::Session& CuseTransport::session(fuse_req_t req) {
  return *static_cast<Session*>(fuse_req_userdata(req));
}

bool CuseTransport::is_ours(const struct stat& st) const {
  if (!S_ISCHR(st.st_mode)) return false;
  std::lock_guard lock(rdev_mu_);
  return rdevs_.count(st.st_rdev) != 0;
}

// ---- operations ------------------------------------------------------------------------------

void CuseTransport::op_init_done(void* userdata) {
  auto& s = *static_cast<Session*>(userdata);
  ++s.transport->inited_;
  if (s.socket) return;  // a test channel: no device node in this kernel
  // The kernel picked the device number; learn it to recognise our nodes in fd arguments.
  struct stat st {};
  const std::string path = "/dev/" + s.devname;
  if (stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode)) {
    std::lock_guard lock(s.transport->rdev_mu_);
    s.transport->rdevs_.insert(st.st_rdev);
  } else {
    logger("cuse")->warn("CUSE node {} did not appear; fd arguments naming it will be refused",
                         path);
  }
}

void CuseTransport::op_open(fuse_req_t req, fuse_file_info* fi) {
  Session& s = session(req);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  const core::Caller caller = s.transport->service_.caller_from(ctx->pid, ctx->uid, ctx->gid);
  fi->direct_io = 1;
  fi->nonseekable = 1;
  serve_open(s.transport->emu_, s.transport->service_.files(), req, fi, *s.node, caller);
}

void CuseTransport::op_release(fuse_req_t req, fuse_file_info* fi) {
  Session& s = session(req);
  serve_release(s.transport->emu_, s.transport->service_.files(), req, fi);
}

void CuseTransport::op_read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi) {
  Handle* h = handle_of(fi);
  Status st = cuse_rw_check(session(req).transport->emu_, *h->file, h->node_name, size, off, false);
  if (!st) return (void)fuse_reply_err(req, st.error());
  fuse_reply_buf(req, nullptr, 0);
}

void CuseTransport::op_write(fuse_req_t req, const char*, size_t size, off_t off,
                             fuse_file_info* fi) {
  Handle* h = handle_of(fi);
  Status st = cuse_rw_check(session(req).transport->emu_, *h->file, h->node_name, size, off, true);
  if (!st) return (void)fuse_reply_err(req, st.error());
  fuse_reply_write(req, 0);
}

void CuseTransport::op_ioctl(fuse_req_t req, int cmd, void* arg, fuse_file_info* fi,
                             unsigned flags, const void* in_buf, size_t in_bufsz,
                             size_t out_bufsz) {
  Session& s = session(req);
  Handle* h = handle_of(fi);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  const core::Caller caller = s.transport->service_.caller_from(ctx->pid, ctx->uid, ctx->gid);
  IoctlRequest rq;
  rq.file = h->file;
  rq.node_name = h->node_name;
  rq.caller = caller;
  rq.cmd = static_cast<u32>(cmd);
  rq.arg = reinterpret_cast<u64>(arg);
  rq.unrestricted = flags & FUSE_IOCTL_UNRESTRICTED;
  rq.in = static_cast<const u8*>(in_buf);
  rq.in_size = in_bufsz;
  rq.out_size = out_bufsz;
  serve_ioctl(s.transport->service_, req, rq);
}

// ---- sessions --------------------------------------------------------------------------------

Status CuseTransport::add_session(const core::NodeInfo& node, int fd, bool socket) {
  static const cuse_lowlevel_ops ops = [] {
    cuse_lowlevel_ops o{};
    o.init_done = op_init_done;
    o.open = op_open;
    o.release = op_release;
    o.read = op_read;
    o.write = op_write;
    o.ioctl = op_ioctl;
    return o;
  }();
  auto s = std::make_unique<Session>();
  s->transport = this;
  s->node = &node;
  s->devname = prefix_ + node.path;
  s->fd = fd;
  s->socket = socket;
  const std::string devinfo = "DEVNAME=" + s->devname;
  const char* dev_info_argv[] = {devinfo.c_str()};
  cuse_info ci{};
  ci.dev_major = 0;  // the kernel picks a free major
  ci.dev_minor = 0;
  ci.dev_info_argc = 1;
  ci.dev_info_argv = dev_info_argv;
  ci.flags = CUSE_UNRESTRICTED_IOCTL;
  const char* argv[] = {"vfio-emud"};
  fuse_args args = FUSE_ARGS_INIT(1, const_cast<char**>(argv));
  s->se = cuse_lowlevel_new(&args, &ci, &ops, s.get());
  if (s->se == nullptr) return err(EIO);
  static const fuse_custom_io io = [] {
    fuse_custom_io i{};
    i.read = channel_read;
    i.writev = channel_writev;
    return i;
  }();
  if (fuse_session_custom_io(s->se, &io, fd) != 0) return err(EIO);
  sessions_.push_back(std::move(s));
  return {};
}

Status CuseTransport::start(const std::map<std::string, int>& channel_fds) {
  auto log = logger("cuse");
  for (const auto& [name, fd] : channel_fds) {
    const core::NodeInfo* node = emu_.node(name);
    if (node == nullptr) {
      log->error("--cuse-fd {}={}: no such node (nodes are vfio/vfio, vfio/<group>, "
                 "vfio/devices/vfio<N>, iommu)", name, fd);
      return err(ENOENT);
    }
    struct stat st {};
    if (fstat(fd, &st) != 0) {
      log->error("--cuse-fd {}={}: not an open fd", name, fd);
      return err(EBADF);
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    TRY(add_session(*node, fd, S_ISSOCK(st.st_mode)));
  }
  if (channel_fds.empty()) {
    if (prefix_.empty() && (access("/dev/vfio/vfio", F_OK) == 0 || access("/dev/iommu", F_OK) == 0)) {
      log->error("real VFIO nodes exist in /dev (vfio/vfio or iommu): refusing to shadow them; "
                 "use --cuse-prefix");
      return err(EEXIST);
    }
    for (const core::NodeInfo& node : emu_.nodes()) {
      const int fd = open("/dev/cuse", O_RDWR | O_CLOEXEC);
      if (fd < 0) {
        const int e = errno;
        log->error("cannot open /dev/cuse: {}", std::strerror(e));
        return err(e);
      }
      TRY(add_session(node, fd, false));
    }
  }
  log->info("CUSE transport: {} node(s){}", sessions_.size(),
            channel_fds.empty() ? " under /dev/" + prefix_ : std::string(" on given channels"));
  return {};
}

void* CuseTransport::session_main(void* arg) {
  auto& s = *static_cast<Session*>(arg);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, 64);  // an fd identify calls back into this daemon
  fuse_loop_cfg_set_clone_fd(cfg, 0);      // impossible for CUSE
  fuse_session_loop_mt(s.se, cfg);
  fuse_loop_cfg_destroy(cfg);
  if (--s.transport->live_ == 0) pthread_kill(s.transport->main_thread_, SIGUSR2);
  return nullptr;
}

int CuseTransport::run(const std::function<void()>& on_ready) {
  // Signals: the main thread waits for them; the session threads only get SIGUSR1, which breaks
  // their wait once they are told to exit.
  struct sigaction sa {};
  sa.sa_handler = wake;
  sigaction(SIGUSR1, &sa, nullptr);  // no SA_RESTART
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR2}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  main_thread_ = pthread_self();
  live_ = static_cast<int>(sessions_.size());
  for (auto& s : sessions_) {
    if (pthread_create(&s->thread, nullptr, session_main, s.get()) == 0) s->running = true;
  }
  // Ready once every node exists; a signal (or every channel closing) ends the wait anyway.
  int sig = 0;
  bool announced = false;
  while (sig == 0) {
    if (!announced && inited_.load() == sessions_.size()) {
      on_ready();
      announced = true;
    }
    const timespec tick{0, 50 * 1000 * 1000};
    const int r = sigtimedwait(&set, nullptr, &tick);
    if (r > 0) sig = r;
  }
  if (sig != SIGUSR2)
    logger("cuse")->info("signal {}: stopping", sig);
  else
    logger("cuse")->info("every CUSE channel was closed: stopping");
  for (auto& s : sessions_) {
    fuse_session_exit(s->se);
    if (s->socket) shutdown(s->fd, SHUT_RDWR);
  }
  for (auto& s : sessions_) {
    // The loop notices the exit only when its wait is interrupted; a signal that lands before
    // it waits is lost, so keep knocking until it is done.
    while (s->running) {
      pthread_kill(s->thread, SIGUSR1);
      timespec deadline{};
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_nsec += 50 * 1000 * 1000;
      if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000;
      }
      if (pthread_timedjoin_np(s->thread, nullptr, &deadline) == 0) s->running = false;
    }
  }
  abort_connections();
  service_.stop_deferred();
  return 0;
}

void CuseTransport::abort_connections() {
  // Releasing a channel's last fd aborts its connection in the kernel: every request still
  // waiting (a deferred call identifying an fd included) fails at once with ENOTCONN, and the
  // device node goes. /dev/null takes the fd number's place, for fuse_session_destroy to close.
  const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (auto& s : sessions_) {
    if (s->aborted || s->fd < 0) continue;
    if (s->socket) shutdown(s->fd, SHUT_RDWR);
    else if (null >= 0) dup3(null, s->fd, O_CLOEXEC);
    s->aborted = true;
  }
  if (null >= 0) close(null);
}

}  // namespace vfio_emu::cuse
