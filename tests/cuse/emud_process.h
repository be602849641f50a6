// A vfio-emud started by a test: fork + exec of the real binary with --foreground and a control
// socket in a private temporary directory, its stderr captured in a file there. start() returns
// once the daemon has printed "vfio-emud: ready" (or failed); the destructor kills it if it is
// still running and copies its log to our stderr, where `meson test --print-errorlogs` shows it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace vfio_emu::test {

class EmudProcess {
 public:
  // The binary: $VFIO_EMUD (meson sets it), else build/cuse/vfio-emud.
  static std::string binary();

  // Starts `binary() args... --foreground --control DIR/control.sock`. The fds in `inherit` are
  // left open in the daemon under the same numbers (everything else of ours is close-on-exec
  // there). Errors: ETIMEDOUT (no "ready" within `ready_timeout`), ECHILD (it exited first;
  // its log then goes to our stderr), the errno of mkdtemp/fork.
  static Result<std::unique_ptr<EmudProcess>> start(
      const std::vector<std::string>& args, const std::vector<int>& inherit,
      std::chrono::milliseconds ready_timeout = std::chrono::seconds(10));
  // Starts it without waiting for "ready", and keeps the object whatever the daemon does, so the
  // test can look at its exit status and log. With `stderr_fd` >= 0 the daemon's stderr is that
  // fd instead of the log file (log() and wait_ready() then see nothing). Errors: those of
  // mkdtemp/fork.
  static Result<std::unique_ptr<EmudProcess>> launch(const std::vector<std::string>& args,
                                                      const std::vector<int>& inherit,
                                                      int stderr_fd = -1);
  ~EmudProcess();
  EmudProcess(const EmudProcess&) = delete;
  EmudProcess& operator=(const EmudProcess&) = delete;

  // Waits for "vfio-emud: ready" on its stderr. Errors: ETIMEDOUT, ECHILD (it exited).
  Status wait_ready(std::chrono::milliseconds timeout);
  // Waits for the daemon to exit; returns its exit status, or 128 + the signal that killed it.
  // Errors: ETIMEDOUT.
  Result<int> wait_exit(std::chrono::milliseconds timeout);
  // Whether it is still running (reaps it if not).
  bool running();
  void kill(int sig);

  pid_t pid() const { return pid_; }
  std::string log() const;  // its stderr so far
  const std::string& control_socket() const { return control_; }

 private:
  EmudProcess() = default;

  pid_t pid_ = -1;
  int status_ = -1;  // exit status once reaped
  std::string dir_, control_, log_path_;
};

}  // namespace vfio_emu::test
