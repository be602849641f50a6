#include "tests/cuse/emud_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace vfio_emu::test {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPoll = std::chrono::milliseconds(5);

}  // namespace

std::string EmudProcess::binary() {
  const char* env = std::getenv("VFIO_EMUD");
  return env != nullptr && env[0] != '\0' ? env : "build/cuse/vfio-emud";
}

Result<std::unique_ptr<EmudProcess>> EmudProcess::launch(const std::vector<std::string>& args,
                                                         const std::vector<int>& inherit,
                                                         int stderr_fd) {
  std::unique_ptr<EmudProcess> p(new EmudProcess());
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp") +
                      "/vfio-emud-test.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return err(errno);
  p->dir_ = templ;
  p->control_ = p->dir_ + "/control.sock";
  p->log_path_ = p->dir_ + "/stderr.log";
  const int log_fd = ::open(p->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) return err(errno);

  // Everything the child needs is prepared here: after fork only async-signal-safe calls.
  std::vector<std::string> argv_s{binary()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  for (const char* a : {"--foreground", "--control"}) argv_s.emplace_back(a);
  argv_s.push_back(p->control_);
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    const int e = errno;
    ::close(log_fd);
    return err(e);
  }
  if (pid == 0) {
    dup2(stderr_fd >= 0 ? stderr_fd : log_fd, STDERR_FILENO);
    for (int fd : inherit) fcntl(fd, F_SETFD, 0);
    execv(argv[0], argv.data());
    static const char msg[] = "emud_process: exec of the daemon failed\n";
    (void)!::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(127);
  }
  ::close(log_fd);
  p->pid_ = pid;
  return p;
}

Result<std::unique_ptr<EmudProcess>> EmudProcess::start(const std::vector<std::string>& args,
                                                        const std::vector<int>& inherit,
                                                        std::chrono::milliseconds ready_timeout) {
  auto p = TRY(launch(args, inherit));
  TRY(p->wait_ready(ready_timeout));
  return p;
}

EmudProcess::~EmudProcess() {
  if (pid_ > 0 && running()) {
    kill(SIGKILL);
    (void)wait_exit(std::chrono::seconds(5));
  }
  const std::string text = log();
  if (!text.empty())
    std::fprintf(stderr, "---- vfio-emud %d stderr ----\n%s---- end of vfio-emud %d ----\n",
                 pid_, text.c_str(), pid_);
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string EmudProcess::log() const {
  std::ifstream f(log_path_);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool EmudProcess::running() {
  if (status_ >= 0 || pid_ <= 0) return false;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) != pid_) return true;
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return false;
}

void EmudProcess::kill(int sig) {
  if (running()) ::kill(pid_, sig);
}

Status EmudProcess::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (log().find("vfio-emud: ready\n") != std::string::npos) return {};
    if (!running()) return err(ECHILD);
    if (Clock::now() > deadline) return err(ETIMEDOUT);
    std::this_thread::sleep_for(kPoll);
  }
}

Result<int> EmudProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (running()) {
    if (Clock::now() > deadline) return err(ETIMEDOUT);
    std::this_thread::sleep_for(kPoll);
  }
  return status_;
}

}  // namespace vfio_emu::test
