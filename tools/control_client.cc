#include "tools/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vfio_emu::tools {
namespace {

// `maps` and `pt` replies are pages of at most 10,000 rows (a few MB); `list` of a daemon with
// very many open files is the longest reply. Anything far beyond that is not a reply.
constexpr size_t kMaxReplyBytes = size_t{1} << 30;

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

ControlClient::ControlClient(std::string socket_path, std::chrono::milliseconds timeout)
    : path_(std::move(socket_path)), timeout_(timeout) {}

ControlClient::~ControlClient() {
  if (fd_ >= 0) close(fd_);
}

Outcome ControlClient::connect() {
  if (fd_ >= 0) return {};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path))
    return Outcome::failure(kExitUsage, "control socket path '" + path_ + "' is empty or too long");
  std::memcpy(addr.sun_path, path_.c_str(), path_.size());
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Outcome::failure(kExitProtocol, "socket: " + errno_text(errno));
  // Bounds connect() (a daemon whose backlog is full), send() and recv().
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count();
  timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int r;
  do {
    r = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (r != 0 && errno == EINTR);
  if (r == 0) return {};
  const int e = errno;
  close(fd_);
  fd_ = -1;
  switch (e) {
    case ENOENT:
    case ENOTDIR:
      return Outcome::failure(kExitNotRunning,
                              "the daemon is not running: no control socket at " + path_);
    case ECONNREFUSED:
      return Outcome::failure(kExitNotRunning, "the daemon is not running: " + path_ +
                                                   " refuses connections (stale socket)");
    case EACCES:
    case EPERM:
      return Outcome::failure(kExitPermission, "permission denied on the control socket " + path_ +
                                                   " (it is owner-only: run as the daemon's user)");
    case EAGAIN:
    case ETIMEDOUT:
      return Outcome::failure(kExitProtocol, "timed out connecting to " + path_);
    default:
      return Outcome::failure(kExitProtocol, "connect " + path_ + ": " + errno_text(e));
  }
}

Outcome ControlClient::send_line(const std::string& line) {
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n >= 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return Outcome::failure(kExitProtocol, "timed out sending to the daemon");
    if (errno == EPIPE || errno == ECONNRESET)
      return Outcome::failure(kExitProtocol, "the daemon closed the connection");
    return Outcome::failure(kExitProtocol, "send: " + errno_text(errno));
  }
  return {};
}

Outcome ControlClient::read_line(std::string* line, const std::vector<pollfd>* stop_when,
                                 bool* stopped) {
  for (;;) {
    const size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      line->assign(buffer_, 0, nl);
      buffer_.erase(0, nl + 1);
      return {};
    }
    if (buffer_.size() > kMaxReplyBytes)
      return Outcome::failure(kExitProtocol, "bad reply: a line longer than 1 GiB");
    std::vector<pollfd> fds = {{fd_, POLLIN, 0}};
    if (stop_when != nullptr) fds.insert(fds.end(), stop_when->begin(), stop_when->end());
    const int n = poll(fds.data(), fds.size(),
                       stop_when != nullptr ? -1 : static_cast<int>(timeout_.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Outcome::failure(kExitProtocol, "poll: " + errno_text(errno));
    }
    if (n == 0)
      return Outcome::failure(kExitProtocol,
                              "timed out after " + std::to_string(timeout_.count()) +
                                  " ms waiting for the daemon's reply");
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) {
        *stopped = true;
        return {};
      }
    }
    char chunk[65536];
    const ssize_t got = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno != ECONNRESET) return Outcome::failure(kExitProtocol, "recv: " + errno_text(errno));
    }
    if (got <= 0) {
      // A followed stream ends when the daemon stops; a request must get its reply first.
      if (stop_when != nullptr && buffer_.empty())
        return Outcome::failure(kExitNotRunning, "the daemon closed the stream (it stopped?)");
      return Outcome::failure(kExitProtocol, buffer_.empty()
                                                 ? "the daemon closed the connection without a reply"
                                                 : "bad reply: the connection closed mid-line");
    }
    buffer_.append(chunk, static_cast<size_t>(got));
  }
}

Outcome ControlClient::parse_reply(const std::string& line) {
  Json reply = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object())
    return Outcome::failure(kExitProtocol, "bad reply: not a JSON object");
  auto ok = reply.find("ok");
  if (ok == reply.end() || !ok->is_boolean())
    return Outcome::failure(kExitProtocol, "bad reply: no boolean \"ok\"");
  if (ok->get<bool>()) {
    auto result = reply.find("result");
    if (result == reply.end()) return Outcome::failure(kExitProtocol, "bad reply: no \"result\"");
    Outcome o;
    o.result = std::move(*result);
    return o;
  }
  const auto error = reply.find("error");
  const auto err_no = reply.find("errno");
  Outcome o;
  o.message = error != reply.end() && error->is_string() ? error->get<std::string>()
                                                          : std::string("request failed");
  o.err_no = err_no != reply.end() && err_no->is_string() ? err_no->get<std::string>() : "";
  o.code = o.err_no == "ENOENT" ? kExitUnknownId : o.err_no == "EINVAL" ? kExitUsage : kExitProtocol;
  return o;
}

Outcome ControlClient::request(const Json& request) {
  if (Outcome o = connect(); !o.ok()) return o;
  if (Outcome o = send_line(request.dump() + "\n"); !o.ok()) return o;
  std::string line;
  bool stopped = false;
  if (Outcome o = read_line(&line, nullptr, &stopped); !o.ok()) return o;
  return parse_reply(line);
}

Outcome ControlClient::follow(const Json& request, const std::function<bool(const Json&)>& on_result,
                              std::vector<pollfd> stop_when) {
  if (Outcome o = connect(); !o.ok()) return o;
  if (Outcome o = send_line(request.dump() + "\n"); !o.ok()) return o;
  for (;;) {
    std::string line;
    bool stopped = false;
    Outcome o = read_line(&line, &stop_when, &stopped);
    if (!o.ok() || stopped) return o;
    o = parse_reply(line);
    if (!o.ok()) return o;
    if (!on_result(o.result)) return {};
  }
}

}  // namespace vfio_emu::tools
