// The client side of vfio-emud's control socket (tools/control-protocol.md): a Unix stream
// socket, one JSON object per line each way. Every failure is a value naming its exit code and a
// one-line message; nothing blocks longer than the timeout except a followed trace, which waits
// for records until the daemon goes away or the caller says stop.
#pragma once

#include <nlohmann/json.hpp>
#include <poll.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tools/exit_codes.h"

namespace vfio_emu::tools {

using Json = nlohmann::ordered_json;

// What a request came to: the daemon's "result", or why there is none.
struct Outcome {
  ExitCode code = kExitOk;
  std::string message;  // one line, without the "vfio-emu: " prefix or the errno; empty when ok
  std::string err_no;   // the daemon's errno name ("ENOENT") when it answered {"ok": false}
  Json result;

  bool ok() const { return code == kExitOk; }
  static Outcome failure(ExitCode code, std::string message) {
    Outcome o;
    o.code = code;
    o.message = std::move(message);
    return o;
  }
};

class ControlClient {
 public:
  ControlClient(std::string socket_path, std::chrono::milliseconds timeout);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends one request and returns its reply's result. Connects on first use.
  // Failures: kExitNotRunning (no socket, refused), kExitPermission (EACCES/EPERM on connect),
  //   kExitUnknownId (the daemon answered ENOENT), kExitUsage (the daemon answered EINVAL),
  //   kExitProtocol (timeout, closed connection, a line that is not a reply, other errnos).
  Outcome request(const Json& request);

  // Sends a streaming request (trace with "follow": true) and calls `on_result` with the result
  // of each reply line, as they come, without a receive timeout. Stops with kExitOk when
  // `on_result` returns false or any of `stop_when` reports one of its events (e.g. a signalfd
  // becoming readable, a stdout pipe whose reader went away); with kExitNotRunning when the
  // daemon closes the stream; otherwise fails as request() does.
  Outcome follow(const Json& request, const std::function<bool(const Json&)>& on_result,
                 std::vector<pollfd> stop_when);

 private:
  Outcome connect();
  Outcome send_line(const std::string& line);
  // Reads the next line into *line. With `stop_when` (follow) there is no timeout, and an event
  // on one of those fds ends the wait: kExitOk with *stopped set.
  Outcome read_line(std::string* line, const std::vector<pollfd>* stop_when, bool* stopped);
  Outcome parse_reply(const std::string& line);

  std::string path_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buffer_;  // bytes received after the last complete line
};

}  // namespace vfio_emu::tools
