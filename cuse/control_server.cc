#include "cuse/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <list>
#include <memory>
#include <optional>

#include <fmt/core.h>

#include "core/device.h"
#include "core/inspect/check.h"
#include "core/inspect/list.h"
#include "core/inspect/maps.h"
#include "core/inspect/page_table.h"
#include "core/inspect/records.h"
#include "core/inspect/stats.h"
#include "core/log.h"
#include "base/errno_name.h"
#include "cuse/control_arguments.h"

namespace vfio_emu::cuse {
namespace {

constexpr size_t kMaxLine = 64 * 1024;  // a request is a short JSON object
constexpr size_t kMaxClients = 32;
constexpr std::chrono::seconds kFollowSendTimeout{30};
// Rows of a `maps` or `pt` reply, unless the request asks for fewer: a reply is built whole in
// memory (~1.5 KB per row as JSON); 300,000 mappings in one reply took the daemon from 84 to
// 541 MB (issue 12).
constexpr size_t kPageRows = 1000;
constexpr size_t kMaxPageRows = 10000;

Json failure(const std::string& error, int err_no) {
  return {{"ok", false}, {"error", error}, {"errno", std::string(errno_name(err_no))}};
}

// Replies never throw on their way out: a string that is not UTF-8 is sent with U+FFFD.
std::string reply_line(const Json& reply) {
  return reply.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// The start of a request line for the log: printable ASCII as it is, other bytes in hex.
std::string printable(std::string_view line) {
  std::string out;
  for (const char c : line.substr(0, 120)) {
    if (c >= 0x20 && c < 0x7f)
      out += c;
    else
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
  }
  if (line.size() > 120) out += fmt::format("... ({} bytes)", line.size());
  return out;
}

using Clock = std::chrono::steady_clock;

// Milliseconds until `deadline` for poll(), rounded up so that a wait never ends early.
int ms_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60 * 60 * 1000));
}

// Sends all of `s` by `deadline`: a reader that takes a reply a byte at a time cannot hold its
// connection beyond that. False if the time ran out, the client went away or `stop_fd` fired.
bool send_all(int fd, const std::string& s, Clock::time_point deadline, int stop_fd) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    pollfd p[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
    const int timeout = ms_until(deadline);
    if (timeout == 0 || poll(p, 2, timeout) < 0 || p[1].revents) return false;
  }
  return true;
}

// A last word before closing (EBUSY, E2BIG, ETIMEDOUT): sent if the socket takes it now.
void send_notice(int fd, const std::string& s) {
  (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

ControlServer::ControlServer(core::Emulator& emu, std::string path, std::string transport,
                             std::chrono::milliseconds request_timeout)
    : emu_(emu),
      path_(std::move(path)),
      transport_(std::move(transport)),
      request_timeout_(request_timeout) {
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
  if (reap_fd_ >= 0) close(reap_fd_);
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
  reap_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (reap_fd_ < 0) return err(errno);
  thread_ = std::thread([this] { serve(); });
  logger("control")->info("control socket {}", path_);
  return {};
}

// A connection's thread; `finished` is set as its last act, so joining it then does not wait.
struct ControlServer::ClientThread {
  std::thread thread;
  std::atomic<bool> finished{false};
};

void ControlServer::serve() {
  // Finished connections are joined as soon as they say so (reap_fd_), not at shutdown: each
  // kept its thread's stack mapped until then, and the daemon ran out of threads (issue 12).
  std::list<std::unique_ptr<ClientThread>> clients;
  auto reap = [&clients] {
    for (auto it = clients.begin(); it != clients.end();) {
      if ((*it)->finished.load()) {
        (*it)->thread.join();
        it = clients.erase(it);
      } else {
        ++it;
      }
    }
  };
  for (;;) {
    pollfd fds[3] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}, {reap_fd_, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (fds[2].revents) {
      u64 count;
      (void)!read(reap_fd_, &count, sizeof(count));
    }
    reap();
    if (!(fds[0].revents & POLLIN)) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors or memory: the connection stays queued; retry in a while rather
      // than spin on a listening socket that stays readable.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pollfd stop = {stop_pipe_[0], POLLIN, 0};
        poll(&stop, 1, 100);
      }
      continue;
    }
    if (clients.size() >= kMaxClients) {
      send_notice(fd, R"({"ok":false,"error":"too many clients","errno":"EBUSY"})" "\n");
      close(fd);
      continue;
    }
    try {
      clients.push_back(std::make_unique<ClientThread>());
      ClientThread* self = clients.back().get();
      self->thread = std::thread([this, fd, self] {
        // The last line of defence: whatever escapes a client ends that client only.
        try {
          client(fd);
        } catch (const std::exception& e) {
          logger("control")->error("control client: {}", e.what());
        } catch (...) {
          logger("control")->error("control client: unknown exception");
        }
        close(fd);
        self->finished.store(true);
        const u64 one = 1;
        (void)!write(reap_fd_, &one, sizeof(one));
      });
    } catch (const std::exception& e) {  // no memory or no thread for it (a thread limit)
      if (!clients.empty() && !clients.back()->thread.joinable()) clients.pop_back();
      logger("control")->warn("control client: not served: {}", e.what());
      send_notice(fd, R"({"ok":false,"error":"the daemon cannot serve another client now","errno":"EAGAIN"})" "\n");
      close(fd);
    }
  }
  for (auto& c : clients) c->thread.join();
}

void ControlServer::client(int fd) {
  auto log = logger("control");
  // Each request must arrive whole within request_timeout_ of the moment the daemon is ready
  // for it (the connection, or the previous reply), however its bytes trickle in; and each
  // reply must be taken within as long. So a client holds one of the kMaxClients slots only
  // while it keeps asking (issue 12: a timeout restarted by every byte let 32 clients sending a
  // byte every 20 s hold them all).
  Clock::time_point deadline = Clock::now() + request_timeout_;
  std::string buf;
  char chunk[4096];
  for (;;) {
    const size_t nl = buf.find('\n');
    if (nl == std::string::npos) {
      if (buf.size() > kMaxLine) {
        send_notice(fd, R"({"ok":false,"error":"request line too long","errno":"E2BIG"})" "\n");
        return;
      }
      const int timeout = ms_until(deadline);
      if (timeout == 0) {
        log->info("control client: no complete request within {} ms ({} bytes of one): closed",
                  request_timeout_.count(), buf.size());
        send_notice(fd, reply_line(failure(fmt::format("no complete request line within {} ms",
                                                       request_timeout_.count()),
                                           ETIMEDOUT)));
        return;
      }
      pollfd p[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      const int ready = poll(p, 2, timeout);
      if (ready < 0 && errno != EINTR) return;
      if (ready <= 0) continue;
      if (p[1].revents) return;
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
      continue;
    }
    const std::string line = buf.substr(0, nl);
    buf.erase(0, nl + 1);
    Json reply;
    // Every failure ends here, as an answer to this line: nothing a client sends may end the
    // daemon (issue 12).
    try {
      if (serve_line(fd, line, &reply) == LineOutcome::kStreamEnded) return;
    } catch (const std::bad_alloc&) {
      log->warn("control request '{}': out of memory", printable(line));
      reply = failure("out of memory", ENOMEM);
    } catch (const std::exception& e) {
      log->warn("control request '{}': {}", printable(line), e.what());
      reply = failure(std::string("bad request: ") + e.what(), EINVAL);
    }
    if (!send_all(fd, reply_line(reply), Clock::now() + request_timeout_, stop_pipe_[0])) return;
    deadline = Clock::now() + request_timeout_;
  }
}

ControlServer::LineOutcome ControlServer::serve_line(int fd, const std::string& line, Json* reply) {
  const Json request = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) {
    *reply = failure("not a JSON object", EINVAL);
    return LineOutcome::kAnswered;
  }
  const auto cmd = request.find("cmd");
  if (cmd == request.end() || !cmd->is_string()) {
    *reply = failure(cmd == request.end() ? "missing \"cmd\""
                                          : "\"cmd\" must be a string, not " + describe(*cmd),
                     EINVAL);
    return LineOutcome::kAnswered;
  }
  if (cmd->get_ref<const std::string&>() == "trace") {
    ControlArguments args(request);
    const bool follow = args.flag("follow").value_or(false);
    if (!args.ok()) {
      *reply = failure(args.error(), EINVAL);
      return LineOutcome::kAnswered;
    }
    if (follow) {
      const u64 last = emu_.trace().last_seq();
      const u64 since = args.number("since").value_or(last > 20 ? last - 20 : 0);
      if (!args.ok()) {
        *reply = failure(args.error(), EINVAL);
        return LineOutcome::kAnswered;
      }
      follow_trace(fd, since);
      return LineOutcome::kStreamEnded;
    }
  }
  *reply = dispatch(cmd->get_ref<const std::string&>(), request);
  return LineOutcome::kAnswered;
}

// `trace` with "follow": one line per record, as they come, until the client goes away.
void ControlServer::follow_trace(int fd, u64 since) {
  core::TraceLog& log = emu_.trace();
  u64 seq = since;
  for (;;) {
    for (const auto& r : log.since(seq, 1000)) {
      seq = r.seq;
      // A follower may pause its reader for a while (a pager); it holds its slot anyway.
      const auto deadline = Clock::now() + std::max<Clock::duration>(request_timeout_, kFollowSendTimeout);
      if (!send_all(fd, reply_line({{"ok", true}, {"result", core::inspect::trace_record(r)}}),
                    deadline, stop_pipe_[0]))
        return;
    }
    log.wait(seq, std::chrono::milliseconds(500));
    // A client that closed its end, or a daemon that stops, ends the stream.
    pollfd p[2] = {{fd, POLLIN | POLLRDHUP, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(p, 2, 0) > 0 && (p[0].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR) || p[1].revents))
      return;
  }
}

Json ControlServer::dispatch(const std::string& cmd, const Json& request) {
  auto it = commands_.find(cmd);
  if (it == commands_.end()) return failure("unknown command " + describe(Json(cmd)), ENOTTY);
  std::string error;
  int err_no = 0;
  Json result = it->second(request, &error, &err_no);
  if (!error.empty()) return failure(error, err_no);
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
  // A wrong argument is EINVAL, with the message naming it.
  auto bad = [](const ControlArguments& args, std::string* error, int* err_no) -> Json {
    *error = args.error();
    *err_no = EINVAL;
    return nullptr;
  };
  commands_["maps"] = [this, wrap, bad](const Json& rq, std::string* error, int* err_no) -> Json {
    ControlArguments args(rq);
    core::inspect::MapFilter f;
    f.container = args.number("container");
    f.domain = args.number("domain");
    f.ioas = args.ioas("ioas");
    if (auto pid = args.number("pid")) {
      if (*pid > static_cast<u64>(std::numeric_limits<pid_t>::max())) args.fail("\"pid\" is too large");
      f.pid = static_cast<pid_t>(*pid);
    }
    core::inspect::MapPage page;
    page.after = args.cursor("after");
    page.max = args.page_size("max", kPageRows, kMaxPageRows);
    if (!args.ok()) return bad(args, error, err_no);
    auto r = core::inspect::maps(emu_, f, page);
    // EINVAL is an ambiguous IOAS or a bad cursor: a first page of one row tells which.
    if (!r && r.error() == EINVAL && page.after && core::inspect::maps(emu_, f, {std::nullopt, 1})) {
      *error = "\"after\" is not a \"next\" of this request's pages";
      return *err_no = EINVAL, nullptr;
    }
    const char* what = f.container ? "container" : f.ioas ? "IOAS" : "domain";
    return wrap(std::move(r), what, error, err_no);
  };
  commands_["pt"] = [this, wrap, bad](const Json& rq, std::string* error, int* err_no) -> Json {
    ControlArguments args(rq);
    const auto domain = args.number("domain");
    const u64 first = args.number("first").value_or(0);
    const u64 last = args.number("last").value_or(iommu::kU64Max);
    const size_t max = args.page_size("max", kPageRows, kMaxPageRows);
    if (args.ok() && (!domain || first > last)) args.fail("pt needs \"domain\" (and first <= last)");
    if (!args.ok()) return bad(args, error, err_no);
    return wrap(core::inspect::page_table(emu_, *domain, first, last, max), "domain", error, err_no);
  };
  commands_["translate"] = [this, wrap, bad](const Json& rq, std::string* error, int* err_no) -> Json {
    ControlArguments args(rq);
    const auto domain = args.number("domain");
    const auto iova = args.number("iova");
    const std::string access = args.choice("access", {"read", "write"}).value_or("read");
    if (args.ok() && (!domain || !iova)) args.fail("translate needs \"domain\" and \"iova\"");
    if (!args.ok()) return bad(args, error, err_no);
    return wrap(core::inspect::translate(emu_, *domain, *iova,
                                         access == "read" ? iommu::Access::kRead
                                                          : iommu::Access::kWrite),
                "domain", error, err_no);
  };
  commands_["trace"] = [this, bad](const Json& rq, std::string* error, int* err_no) -> Json {
    ControlArguments args(rq);
    const u64 since = args.number("since").value_or(0);
    const u64 max = args.number("max").value_or(1000);
    if (!args.ok()) return bad(args, error, err_no);
    Json records = Json::array();
    for (const auto& r : emu_.trace().since(since, max)) records.push_back(core::inspect::trace_record(r));
    return {{"records", records}, {"last_seq", emu_.trace().last_seq()}};
  };
  // `vfio-emu run` trapped a program's store to a mapped BAR (tools/store_watch.h): the model
  // takes it before the program runs on (core/device.h device_bar_store).
  commands_["store"] = [this, bad](const Json& rq, std::string* error, int* err_no) -> Json {
    ControlArguments args(rq);
    const auto bar = args.number("bar");
    const auto offset = args.number("offset");
    const auto width = args.number("width");
    const auto value = args.number("value");
    const auto bdf = rq.find("bdf");
    if (args.ok() && (bdf == rq.end() || !bdf->is_string() || !bar || !offset || !width || !value))
      args.fail("store needs \"bdf\" (a string), \"bar\", \"offset\", \"width\" and \"value\"");
    if (!args.ok()) return bad(args, error, err_no);
    for (const auto& g : emu_.groups()) {
      core::Device* d = g->device_by_name(bdf->get_ref<const std::string&>());
      if (d == nullptr) continue;
      const Status done = core::device_bar_store(*d, static_cast<u32>(std::min<u64>(*bar, 6)),
                                                 *offset, *value,
                                                 static_cast<u32>(std::min<u64>(*width, 16)));
      if (done) return Json::object();
      *error = fmt::format("store of {:#x} to {:#x} of BAR {} of {} refused", *value, *offset,
                           *bar, d->spec().bdf);
      return *err_no = done.error(), nullptr;
    }
    *error = "unknown device " + describe(*bdf);
    return *err_no = ENOENT, nullptr;
  };
  commands_["faults"] = [this, bad](const Json& rq, std::string* error, int* err_no) -> Json {
    ControlArguments args(rq);
    const u64 since = args.number("since").value_or(0);
    const u64 max = args.number("max").value_or(1000);
    if (!args.ok()) return bad(args, error, err_no);
    Json records = Json::array();
    for (const auto& r : emu_.faults().since(since, max)) records.push_back(core::inspect::fault_record(r));
    return {{"faults", records}, {"last_seq", emu_.faults().last_seq()}};
  };
}

}  // namespace vfio_emu::cuse
