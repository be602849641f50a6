// vfio-emud: serves the emulated /dev/vfio and /dev/iommu nodes through CUSE or FUSE.
//
//   vfio-emud [--transport auto|cuse|fuse] [--config FILE] [--dev-dir DIR] [--cuse-prefix P]
//             [--cuse-fd NODE=FD]... [--arg-access auto|direct|retry] [--control SOCKET]
//             [--control-request-timeout SECONDS]
//             [--log-level trace|debug|info|warn|error|off] [--foreground]
//             [--dma-entry-limit N] [--table-memory SIZE] [--iommufd-objects N]
//             [--ioas-mappings N] [--open-files-per-uid N] [--allow-unsafe-interrupts]
//             [--enable-unsafe-noiommu-mode]
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/emulator.h"
#include "core/log.h"
#include "cuse/control_server.h"
#include "cuse/cuse_transport.h"
#include "cuse/fuse_transport.h"
#include "cuse/memory_trim.h"
#include "cuse/thread_groups.h"

using namespace vfio_emu;

namespace {

// sd_notify(0, "READY=1") without libsystemd: one datagram to $NOTIFY_SOCKET.
void notify_ready() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  static const char msg[] = "READY=1";
  sendto(fd, msg, sizeof(msg) - 1, 0, reinterpret_cast<sockaddr*>(&addr),
         static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  close(fd);
}

// Without --foreground: the parent returns once the child is ready (or failed), so a script can
// start the daemon and use the nodes right away.
int ready_pipe = -1;

void daemonize() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return;
  const pid_t pid = fork();
  if (pid < 0) return;
  if (pid > 0) {
    close(p[1]);
    char c = 0;
    const ssize_t n = read(p[0], &c, 1);
    _exit(n == 1 && c == 'R' ? 0 : 1);
  }
  close(p[0]);
  ready_pipe = p[1];
  setsid();
  const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) dup2(null, STDIN_FILENO);
}

void announce_ready() {
  notify_ready();
  std::fprintf(stderr, "vfio-emud: ready\n");
  std::fflush(stderr);
  if (ready_pipe >= 0) {
    (void)!write(ready_pipe, "R", 1);
    close(ready_pipe);
    ready_pipe = -1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vfio-emud: the emulated VFIO and iommufd device nodes"};
  std::string transport = "auto", config, dev_dir = "/run/vfio-emu/dev", cuse_prefix;
  std::vector<std::string> cuse_fds;
  std::string arg_access = "auto", control = "/run/vfio-emu/control.sock", log_level = "info";
  bool foreground = false;
  app.add_option("--transport", transport, "auto (CUSE if /dev/cuse opens, else FUSE), cuse, fuse")
      ->check(CLI::IsMember({"auto", "cuse", "fuse"}));
  app.add_option("--config", config, "topology file (TOML); the built-in machine if absent");
  app.add_option("--dev-dir", dev_dir, "FUSE: where to mount the nodes");
  app.add_option("--cuse-prefix", cuse_prefix, "CUSE: prefix of the device names under /dev");
  app.add_option("--cuse-fd", cuse_fds, "CUSE: serve NODE on the already-open channel FD")
      ->type_name("NODE=FD");
  app.add_option("--arg-access", arg_access, "CUSE: how ioctl arguments are reached")
      ->check(CLI::IsMember({"auto", "direct", "retry"}));
  app.add_option("--control", control, "the control socket the vfio-emu tool talks to");
  double control_request_timeout =
      std::chrono::duration<double>(cuse::ControlServer::kDefaultRequestTimeout).count();
  app.add_option("--control-request-timeout", control_request_timeout,
                 "seconds a control client has for each request line (from connecting or from "
                 "the previous reply) and for taking each reply")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_flag("--foreground", foreground, "stay in the foreground");
  // Limits (core/resource_limits.h): a flag wins over the topology file's [limits], which wins
  // over the defaults.
  std::optional<core::u32> dma_entry_limit, iommufd_objects, ioas_mappings, open_files_per_uid;
  std::optional<std::string> table_memory;
  app.add_option("--dma-entry-limit", dma_entry_limit,
                 "type1 mappings per container (default 65535)");
  app.add_option("--table-memory", table_memory,
                 "IOMMU page-table bytes of all domains together, e.g. 1G (default 1G)")
      ->type_name("SIZE");
  app.add_option("--iommufd-objects", iommufd_objects,
                 "objects per iommufd context (default 65536)");
  app.add_option("--ioas-mappings", ioas_mappings, "mappings per IOAS (default 1048576)");
  app.add_option("--open-files-per-uid", open_files_per_uid,
                 "open node files per uid, root exempt (default 4096)");
  bool allow_unsafe_interrupts = false;
  app.add_flag("--allow-unsafe-interrupts", allow_unsafe_interrupts,
               "use devices behind units without interrupt remapping (the module parameter of "
               "vfio_iommu_type1 and iommufd)");
  bool enable_unsafe_noiommu_mode = false;
  app.add_flag("--enable-unsafe-noiommu-mode", enable_unsafe_noiommu_mode,
               "give devices behind no IOMMU no-IOMMU groups (vfio/noiommu-N, CAP_SYS_RAWIO "
               "only; the module parameter of vfio)");
  CLI11_PARSE(app, argc, argv);

  set_log_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("[%H:%M:%S.%e] [%n] [%l] %v");
  auto log = logger("vfio-emud");

  core::Topology topology = core::Topology::builtin();
  if (!config.empty()) {
    std::string error;
    auto t = core::Topology::load(config, &error);
    if (!t) {
      std::fprintf(stderr, "vfio-emud: %s\n", error.c_str());
      return 2;
    }
    topology = std::move(*t);
  }
  core::Limits& limits = topology.limits;
  if (dma_entry_limit) limits.dma_entry_limit = *dma_entry_limit;
  if (iommufd_objects) limits.iommufd_objects = *iommufd_objects;
  if (ioas_mappings) limits.ioas_mappings = *ioas_mappings;
  if (open_files_per_uid) limits.open_files_per_uid = *open_files_per_uid;
  if (allow_unsafe_interrupts) limits.allow_unsafe_interrupts = true;
  if (enable_unsafe_noiommu_mode) limits.enable_unsafe_noiommu_mode = true;
  if (table_memory && !core::parse_size(*table_memory, &limits.table_memory)) {
    std::fprintf(stderr, "vfio-emud: --table-memory wants a size like 512M or 1G, not '%s'\n",
                 table_memory->c_str());
    return 2;
  }
  log->info("limits: dma_entry_limit {:#x}, table_memory {:#x}, iommufd_objects {:#x}, "
            "ioas_mappings {:#x}, open_files_per_uid {:#x}", limits.dma_entry_limit,
            limits.table_memory, limits.iommufd_objects, limits.ioas_mappings,
            limits.open_files_per_uid);
  std::map<std::string, int> channels;
  for (const std::string& spec : cuse_fds) {
    const size_t eq = spec.rfind('=');
    char* end = nullptr;
    const long fd = eq == std::string::npos ? -1 : std::strtol(spec.c_str() + eq + 1, &end, 10);
    if (fd < 0 || end == nullptr || *end != '\0') {
      std::fprintf(stderr, "vfio-emud: --cuse-fd wants NODE=FD, not '%s'\n", spec.c_str());
      return 2;
    }
    channels[spec.substr(0, eq)] = static_cast<int>(fd);
  }
  if (!channels.empty()) transport = "cuse";
  if (transport == "auto") {
    const int fd = open("/dev/cuse", O_RDWR | O_CLOEXEC);
    transport = fd >= 0 ? "cuse" : "fuse";
    if (fd >= 0) close(fd);
    log->info("transport auto: {} ({})", transport,
              fd >= 0 ? "/dev/cuse opens" : "no /dev/cuse in this kernel");
  }
  const cuse::ArgAccess access = arg_access == "direct" ? cuse::ArgAccess::kDirect
                                 : arg_access == "retry" ? cuse::ArgAccess::kRetry
                                                         : cuse::ArgAccess::kAuto;

  if (!foreground) daemonize();
  // Every caller's fd the daemon fetches, and its caches of pidfds and /proc files, take fds: use
  // what the hard limit allows (as systemd gives services), not the 1024 of a login shell.
  if (rlimit lim{}; getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  // The stop signals go to the main thread only (FUSE: its wait in the session loop; CUSE: its
  // sigtimedwait). A helper thread that took one would run the handler where nobody waits for
  // it, and the daemon would not stop. Threads started from here on inherit the mask; the FUSE
  // transport unblocks the signals in this thread alone (libfuse's own workers block them).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  core::Emulator emu(std::move(topology));
  cuse::ThreadGroups threads;
  cuse::MemoryTrimmer trimmer;  // freed mapping records go back to the kernel while idle
  cuse::ControlServer control_server(
      emu, control, transport,
      std::chrono::milliseconds(static_cast<long long>(control_request_timeout * 1000 + 0.5)));
  if (Status st = control_server.start(); !st) {
    log->error("control socket {}: errno {}", control, st.error());
    return 1;
  }
  if (transport == "fuse") {
    cuse::FuseTransport fuse(emu, threads, dev_dir);
    if (!fuse.mount()) return 1;
    control_server.set_node_dir(dev_dir);
    announce_ready();
    const int r = fuse.run();
    log->info("stopped");
    return r == 0 ? 0 : 1;
  }
  cuse::CuseTransport cuse_transport(emu, threads, cuse_prefix, access);
  if (!cuse_transport.start(channels)) return 1;
  control_server.set_node_dir(channels.empty() ? "/dev/" + cuse_prefix : std::string());
  const int r = cuse_transport.run(announce_ready);
  log->info("stopped");
  return r;
}
