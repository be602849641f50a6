// The control socket: the `vfio-emu` tool's way into a running daemon.
//
// Protocol (tools/control-protocol.md): a Unix stream socket, owner-only (0600). The client sends
// one JSON object per line, {"cmd": "maps", ...arguments}; the daemon answers each with one JSON
// object per line, {"ok": true, "result": ...} or {"ok": false, "error": "message",
// "errno": "ENOENT"}. "trace" with "follow": true keeps streaming one record per line until the
// client closes. Input is untrusted (issue 12): lines are bounded in size and in time, every
// malformed request is answered, never fatal, and a finished connection leaves nothing behind.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/emulator.h"

namespace vfio_emu::cuse {

using Json = nlohmann::ordered_json;
using core::u64;

class ControlServer {
 public:
  static constexpr std::chrono::milliseconds kDefaultRequestTimeout{10000};

  // `request_timeout`: how long a client may take to send a whole request line (counted from
  // the connection or the previous reply), and to take a whole reply.
  ControlServer(core::Emulator& emu, std::string path, std::string transport,
                std::chrono::milliseconds request_timeout = kDefaultRequestTimeout);
  ~ControlServer();

  // Creates the socket (and its directory) and starts serving. Errors: errno.
  Status start();
  void set_node_dir(std::string dir);

  // A request handler: returns the result, or sets *error (and *err_no) and returns null.
  using Command = std::function<Json(const Json& request, std::string* error, int* err_no)>;

 private:
  enum class LineOutcome { kAnswered, kStreamEnded };
  struct ClientThread;

  void serve();
  void client(int fd);
  // Serves one request line: sets *reply, or streams (trace --follow) until the stream ends.
  LineOutcome serve_line(int fd, const std::string& line, Json* reply);
  void follow_trace(int fd, u64 since);
  Json dispatch(const std::string& cmd, const Json& request);
  void add_commands();

  core::Emulator& emu_;
  std::string path_;
  std::string transport_;
  const std::chrono::milliseconds request_timeout_;
  std::mutex dir_mu_;
  std::string node_dir_;
  std::map<std::string, Command> commands_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int reap_fd_ = -1;  // eventfd: a client thread finished and can be joined
  std::thread thread_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace vfio_emu::cuse
