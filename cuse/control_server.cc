#include "cuse/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/inspect.h"
#include "core/log.h"
#include "core/reject.h"

namespace vfio_emu::cuse {
namespace {

constexpr size_t kMaxLine = 64 * 1024;  // a request is a short JSON object
constexpr int kMaxClients = 32;

// An id, address or count given as a JSON number or as a string ("0x7f00...", "42").
std::optional<u64> get_u64(const Json& request, const char* key, std::string* error) {
  auto it = request.find(key);
  if (it == request.end() || it->is_null()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<u64>();
  if (it->is_number_integer() && it->get<std::int64_t>() >= 0)
    return static_cast<u64>(it->get<std::int64_t>());
  if (it->is_string()) {
    const std::string& t = it->get_ref<const std::string&>();
    char* end = nullptr;
    errno = 0;
    const u64 v = std::strtoull(t.c_str(), &end, 0);
    if (!t.empty() && t[0] != '-' && end != nullptr && *end == '\0' && errno == 0) return v;
  }
  *error = std::string("\"") + key + "\" must be a non-negative integer or a \"0x...\" string";
  return std::nullopt;
}

bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

ControlServer::ControlServer(core::Emulator& emu, std::string path, std::string transport)
    : emu_(emu), path_(std::move(path)), transport_(std::move(transport)) {
  add_commands();
}

ControlServer::~ControlServer() {
  if (stop_pipe_[1] >= 0) (void)!write(stop_pipe_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(path_.c_str());
  }
  for (int fd : stop_pipe_)
    if (fd >= 0) close(fd);
}

void ControlServer::set_node_dir(std::string dir) {
  std::lock_guard lock(dir_mu_);
  node_dir_ = std::move(dir);
}

Status ControlServer::start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path)) return err(ENAMETOOLONG);
  std::error_code ec;
  const auto parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::memcpy(addr.sun_path, path_.c_str(), path_.size());
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return err(errno);
  // A stale socket from a dead daemon is replaced; a live one is not stolen.
  if (connect(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    logger("control")->error("{}: another daemon is serving it", path_);
    return err(EADDRINUSE);
  }
  close(listen_fd_);
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(path_.c_str());
  const mode_t old = umask(0077);  // owner-only from the first moment
  const int r = bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (r != 0 || chmod(path_.c_str(), 0600) != 0 || listen(listen_fd_, 16) != 0) return err(errno);
  if (pipe2(stop_pipe_, O_CLOEXEC) != 0) return err(errno);
  thread_ = std::thread([this] { serve(); });
  logger("control")->info("control socket {}", path_);
  return {};
}

void ControlServer::serve() {
  std::vector<std::thread> clients;
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (!(fds[0].revents & POLLIN)) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (clients_.load() >= kMaxClients) {
      send_all(fd, R"({"ok":false,"error":"too many clients","errno":"EBUSY"})" "\n");
      close(fd);
      continue;
    }
    ++clients_;
    clients.emplace_back([this, fd] {
      client(fd);
      close(fd);
      --clients_;
    });
  }
  for (auto& t : clients) t.join();
}

void ControlServer::client(int fd) {
  // A silent client is dropped after a while; a stuck reader cannot hold the daemon either.
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::string buf;
  char chunk[4096];
  for (;;) {
    const size_t nl = buf.find('\n');
    if (nl == std::string::npos) {
      if (buf.size() > kMaxLine) {
        send_all(fd, R"({"ok":false,"error":"request line too long","errno":"E2BIG"})" "\n");
        return;
      }
      pollfd p[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (poll(p, 2, 30000) <= 0 || p[1].revents) return;
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
      continue;
    }
    const std::string line = buf.substr(0, nl);
    buf.erase(0, nl + 1);
    Json reply;
    Json request = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded() || !request.is_object()) {
      reply = {{"ok", false}, {"error", "not a JSON object"}, {"errno", "EINVAL"}};
    } else if (request.value("cmd", "") == "trace" && request.value("follow", false)) {
      follow_trace(fd, request);
      return;
    } else {
      reply = dispatch(request);
    }
    if (!send_all(fd, reply.dump() + "\n")) return;
  }
}

// `trace` with "follow": one line per record, as they come, until the client goes away.
void ControlServer::follow_trace(int fd, const Json& request) {
  std::string error;
  core::TraceLog& log = emu_.trace();
  const u64 last = log.last_seq();
  u64 seq = get_u64(request, "since", &error).value_or(last > 20 ? last - 20 : 0);
  if (!error.empty()) {
    send_all(fd, Json{{"ok", false}, {"error", error}, {"errno", "EINVAL"}}.dump() + "\n");
    return;
  }
  for (;;) {
    for (const auto& r : log.since(seq, 1000)) {
      seq = r.seq;
      if (!send_all(fd, Json{{"ok", true}, {"result", core::inspect::trace_record(r)}}.dump() + "\n"))
        return;
    }
    log.wait(seq, std::chrono::milliseconds(500));
    // A client that closed its end, or a daemon that stops, ends the stream.
    pollfd p[2] = {{fd, POLLIN | POLLRDHUP, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(p, 2, 0) > 0 && (p[0].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR) || p[1].revents))
      return;
  }
}

Json ControlServer::dispatch(const Json& request) {
  auto cmd = request.find("cmd");
  if (cmd == request.end() || !cmd->is_string())
    return {{"ok", false}, {"error", "missing \"cmd\""}, {"errno", "EINVAL"}};
  auto it = commands_.find(cmd->get<std::string>());
  if (it == commands_.end())
    return {{"ok", false}, {"error", "unknown command " + cmd->dump()}, {"errno", "ENOTTY"}};
  std::string error;
  int err_no = 0;
  Json result;
  try {
    result = it->second(request, &error, &err_no);
  } catch (const std::exception& e) {  // e.g. a JSON type mismatch in the arguments
    error = std::string("bad arguments: ") + e.what();
    err_no = EINVAL;
  }
  if (!error.empty())
    return {{"ok", false}, {"error", error}, {"errno", std::string(core::errno_name(err_no))}};
  return {{"ok", true}, {"result", std::move(result)}};
}

void ControlServer::add_commands() {
  commands_["status"] = [this](const Json&, std::string*, int*) {
    const auto uptime = std::chrono::steady_clock::now() - started_;
    std::string dir;
    {
      std::lock_guard lock(dir_mu_);
      dir = node_dir_;
    }
    size_t groups = emu_.groups().size(), devices = 0;
    for (const auto& g : emu_.groups()) devices += g->devices().size();
    Json j;
    j["version"] = "0.1.0";
    j["pid"] = getpid();
    j["transport"] = transport_;
    j["uptime_s"] = std::chrono::duration<double>(uptime).count();
    j["node_dir"] = dir;
    j["counts"] = {{"units", emu_.topology().units.size()},
                   {"groups", groups},
                   {"devices", devices},
                   {"open_files", emu_.files().size()},
                   {"domains", emu_.domains().size()}};
    return j;
  };

  // Turns an inspector Result into a reply; ENOENT means an unknown id.
  auto wrap = [](Result<Json> r, const char* what, std::string* error, int* err_no) -> Json {
    if (r) return r.take();
    *err_no = r.error();
    *error = r.error() == ENOENT ? std::string("unknown ") + what
                                 : std::string("ambiguous ") + what + " (give CTX:IOAS)";
    return nullptr;
  };
  commands_["list"] = [this](const Json&, std::string*, int*) { return core::inspect::list(emu_); };
  commands_["stats"] = [this](const Json&, std::string*, int*) { return core::inspect::stats(emu_); };
  commands_["check"] = [this](const Json&, std::string*, int*) { return core::inspect::check(emu_); };
  commands_["maps"] = [this, wrap](const Json& rq, std::string* error, int* err_no) -> Json {
    core::inspect::MapFilter f;
    f.container = get_u64(rq, "container", error);
    f.domain = get_u64(rq, "domain", error);
    if (auto pid = get_u64(rq, "pid", error)) f.pid = static_cast<pid_t>(*pid);
    if (rq.contains("ioas") && !rq["ioas"].is_null())
      f.ioas = rq["ioas"].is_string() ? rq["ioas"].get<std::string>() : rq["ioas"].dump();
    if (!error->empty()) return *err_no = EINVAL, nullptr;
    const char* what = f.container ? "container" : f.ioas ? "IOAS" : "domain";
    return wrap(core::inspect::maps(emu_, f), what, error, err_no);
  };
  commands_["pt"] = [this, wrap](const Json& rq, std::string* error, int* err_no) -> Json {
    const auto domain = get_u64(rq, "domain", error);
    const u64 first = get_u64(rq, "first", error).value_or(0);
    const u64 last = get_u64(rq, "last", error).value_or(iommu::kU64Max);
    if (!error->empty() || !domain || first > last) {
      if (error->empty()) *error = "pt needs \"domain\" (and first <= last)";
      return *err_no = EINVAL, nullptr;
    }
    return wrap(core::inspect::page_table(emu_, *domain, first, last), "domain", error, err_no);
  };
  commands_["translate"] = [this, wrap](const Json& rq, std::string* error, int* err_no) -> Json {
    const auto domain = get_u64(rq, "domain", error);
    const auto iova = get_u64(rq, "iova", error);
    const std::string access = rq.value("access", "read");
    if (!error->empty() || !domain || !iova || (access != "read" && access != "write")) {
      if (error->empty()) *error = "translate needs \"domain\", \"iova\" (and access read|write)";
      return *err_no = EINVAL, nullptr;
    }
    return wrap(core::inspect::translate(emu_, *domain, *iova,
                                         access == "read" ? iommu::Access::kRead
                                                          : iommu::Access::kWrite),
                "domain", error, err_no);
  };
  commands_["trace"] = [this](const Json& rq, std::string* error, int* err_no) -> Json {
    const u64 since = get_u64(rq, "since", error).value_or(0);
    const u64 max = get_u64(rq, "max", error).value_or(1000);
    if (!error->empty()) return *err_no = EINVAL, nullptr;
    Json records = Json::array();
    for (const auto& r : emu_.trace().since(since, max)) records.push_back(core::inspect::trace_record(r));
    return {{"records", records}, {"last_seq", emu_.trace().last_seq()}};
  };
  commands_["faults"] = [this](const Json& rq, std::string* error, int* err_no) -> Json {
    const u64 since = get_u64(rq, "since", error).value_or(0);
    const u64 max = get_u64(rq, "max", error).value_or(1000);
    if (!error->empty()) return *err_no = EINVAL, nullptr;
    Json records = Json::array();
    for (const auto& r : emu_.faults().since(since, max)) records.push_back(core::inspect::fault_record(r));
    return {{"faults", records}, {"last_seq", emu_.faults().last_seq()}};
  };
}

}  // namespace vfio_emu::cuse
