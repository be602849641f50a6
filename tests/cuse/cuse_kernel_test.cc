// CuseKernel itself, against a scripted daemon: the checks of fs/fuse/cuse.c and fs/fuse/ioctl.c
// that it plays must really fail when a daemon breaks the protocol, or the daemon tests prove
// nothing.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/cuse/cuse_kernel.h"

namespace vfio_emu::test {
namespace {

using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

struct Request {
  fuse_in_header h;
  Bytes body;
  template <class T>
  T as() const {
    T t{};
    std::memcpy(&t, body.data(), std::min(sizeof(T), body.size()));
    return t;
  }
};

template <class... T>
Bytes message(const Request& r, int error, const T&... parts) {
  Bytes out(sizeof(fuse_out_header));
  (out.insert(out.end(), reinterpret_cast<const std::uint8_t*>(&parts),
              reinterpret_cast<const std::uint8_t*>(&parts) + sizeof(parts)),
   ...);
  fuse_out_header oh{static_cast<std::uint32_t>(out.size()), -error, r.h.unique};
  std::memcpy(out.data(), &oh, sizeof(oh));
  return out;
}

Bytes append(Bytes m, const void* p, std::size_t n) {
  m.insert(m.end(), static_cast<const std::uint8_t*>(p), static_cast<const std::uint8_t*>(p) + n);
  fuse_out_header oh;
  std::memcpy(&oh, m.data(), sizeof(oh));
  oh.len = static_cast<std::uint32_t>(m.size());
  std::memcpy(m.data(), &oh, sizeof(oh));
  return m;
}

fuse_ioctl_out retry_out(std::uint32_t in_iovs, std::uint32_t out_iovs) {
  return fuse_ioctl_out{0, FUSE_IOCTL_RETRY, in_iovs, out_iovs};
}

// The daemon's end of a channel: each request gets what `answer` returns (nothing: no reply).
class ScriptedDaemon {
 public:
  using Answer = std::function<std::optional<Bytes>(const Request&)>;

  explicit ScriptedDaemon(Answer answer, std::chrono::milliseconds timeout = 5s)
      : answer_(std::move(answer)) {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    kernel_ = std::make_unique<CuseKernel>(sv[0], timeout);
    fd_ = sv[1];
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedDaemon() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  CuseKernel& kernel() { return *kernel_; }
  std::vector<Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    Bytes buf(1 << 20);
    while (true) {
      const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) return;
      Request r;
      std::memcpy(&r.h, buf.data(), sizeof(r.h));
      r.body.assign(buf.begin() + sizeof(r.h), buf.begin() + n);
      {
        std::lock_guard lock(mu_);
        requests_.push_back(r);
      }
      if (auto reply = answer_(r)) send(fd_, reply->data(), reply->size(), MSG_NOSIGNAL);
    }
  }

  Answer answer_;
  std::unique_ptr<CuseKernel> kernel_;
  int fd_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Request> requests_;
};

Bytes init_reply(const Request& r, std::uint32_t major, std::uint32_t flags, const char* info,
                 std::size_t info_len) {
  cuse_init_out out{};
  out.major = major;
  out.minor = 31;
  out.flags = flags;
  out.max_read = 131072;
  out.max_write = 1 << 20;
  return append(message(r, 0, out), info, info_len);
}

TEST_CASE("CuseKernel: CUSE_INIT is checked as cuse_process_init_reply does", "[harness]") {
  struct Case {
    const char* what;
    std::uint32_t major, flags;
    std::string info;
    int error;
  };
  const Case cases[] = {
      {"good", 7, CUSE_UNRESTRICTED_IOCTL, std::string("DEVNAME=vfio/vfio\0", 18), 0},
      {"unknown keys are ignored", 7, CUSE_UNRESTRICTED_IOCTL,
       std::string("MODE=0666\0DEVNAME=vfio/vfio\0", 28), 0},
      {"no DEVNAME", 7, CUSE_UNRESTRICTED_IOCTL, std::string("NAME=x\0", 7), EINVAL},
      {"empty DEVNAME", 7, CUSE_UNRESTRICTED_IOCTL, std::string("DEVNAME=\0", 9), EINVAL},
      {"not NUL-terminated", 7, CUSE_UNRESTRICTED_IOCTL, "DEVNAME=vfio/vfio", EINVAL},
      {"protocol 8", 8, CUSE_UNRESTRICTED_IOCTL, std::string("DEVNAME=vfio/vfio\0", 18), EPROTO},
      {"restricted ioctls", 7, 0, std::string("DEVNAME=vfio/vfio\0", 18), EPROTO},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    ScriptedDaemon d([&](const Request& r) -> std::optional<Bytes> {
      return init_reply(r, c.major, c.flags, c.info.data(), c.info.size());
    });
    auto devname = d.kernel().init();
    CHECK(devname.error() == c.error);
    if (c.error == 0) CHECK(*devname == "vfio/vfio");
    const auto reqs = d.requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].h.opcode == CUSE_INIT);
    const auto in = reqs[0].as<cuse_init_in>();
    CHECK(in.major == 7);
    CHECK(in.minor == 31);
    CHECK(in.flags == CUSE_UNRESTRICTED_IOCTL);
  }
}

// A daemon that has answered CUSE_INIT and then runs `ioctl` for every FUSE_IOCTL.
std::unique_ptr<ScriptedDaemon> ioctl_daemon(
    std::function<std::optional<Bytes>(const Request&, const fuse_ioctl_in&)> ioctl,
    std::chrono::milliseconds timeout = 5s) {
  auto d = std::make_unique<ScriptedDaemon>(
      [ioctl](const Request& r) -> std::optional<Bytes> {
        if (r.h.opcode == CUSE_INIT)
          return init_reply(r, 7, CUSE_UNRESTRICTED_IOCTL, "DEVNAME=x", 10);
        return ioctl(r, r.as<fuse_ioctl_in>());
      },
      timeout);
  REQUIRE(d->kernel().init().ok());
  return d;
}

TEST_CASE("CuseKernel: a struct with a pointer takes 3 rounds, as in libfuse's cuse example",
          "[harness]") {
  struct Arg {
    std::uint64_t buf;
    std::uint64_t len;
  };
  char data[16] = "abcdefghijklmno";
  Arg arg{reinterpret_cast<std::uint64_t>(data), sizeof(data)};
  auto d = ioctl_daemon([&](const Request& r, const fuse_ioctl_in& in) -> std::optional<Bytes> {
    if (in.in_size == 0) {  // round 1: ask for the struct
      fuse_ioctl_iovec iov{in.arg, sizeof(Arg)};
      return message(r, 0, retry_out(1, 0), iov);
    }
    Arg a;
    std::memcpy(&a, r.body.data() + sizeof(in), sizeof(a));
    if (in.out_size == 0) {  // round 2: the struct is here; ask for the buffer both ways
      fuse_ioctl_iovec iovs[2] = {{in.arg, sizeof(Arg)}, {a.buf, a.len}};
      return message(r, 0, retry_out(1, 1), iovs);
    }
    char upper[16];  // round 3: answer into the buffer
    for (int i = 0; i < 16; ++i) upper[i] = static_cast<char>(std::toupper(data[i]));
    return message(r, 0, fuse_ioctl_out{7, 0, 0, 0}, upper);
  });
  const IoctlOutcome o = d->kernel().ioctl(42, 0x1234, &arg);
  CHECK(o.ret == 7);
  CHECK(o.rounds == 3);
  CHECK(std::string(data) == "ABCDEFGHIJKLMNO");
  const auto reqs = d->requests();
  REQUIRE(reqs.size() == 4);
  std::uint64_t unique = reqs[0].h.unique;
  for (size_t i = 1; i < reqs.size(); ++i) {
    const auto in = reqs[i].as<fuse_ioctl_in>();
    CHECK(reqs[i].h.opcode == FUSE_IOCTL);
    CHECK(reqs[i].h.nodeid == 0);
    CHECK(reqs[i].h.pid == static_cast<std::uint32_t>(gettid()));
    CHECK(reqs[i].h.uid == geteuid());
    CHECK(reqs[i].h.unique > unique);
    unique = reqs[i].h.unique;
    CHECK(in.fh == 42);
    CHECK(in.cmd == 0x1234);
    CHECK(in.flags == FUSE_IOCTL_UNRESTRICTED);
    CHECK(reqs[i].h.len == sizeof(fuse_in_header) + sizeof(in) + in.in_size);
  }
  CHECK(reqs[1].as<fuse_ioctl_in>().in_size == 0);
  CHECK(reqs[2].as<fuse_ioctl_in>().in_size == 16);
  CHECK(reqs[3].as<fuse_ioctl_in>().in_size == 16);
  CHECK(reqs[3].as<fuse_ioctl_in>().out_size == 16);
}

TEST_CASE("CuseKernel: fuse_do_ioctl's limits and checks", "[harness]") {
  void* none = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(none != MAP_FAILED);
  const auto unmapped = reinterpret_cast<std::uint64_t>(none);
  static std::vector<std::uint8_t> big(CuseKernel::kMaxBytesPerDirection + 1);
  const auto big_addr = reinterpret_cast<std::uint64_t>(big.data());

  struct Case {
    const char* what;
    std::function<std::optional<Bytes>(const Request&, const fuse_ioctl_in&)> answer;
    long ret;
    int rounds;
  };
  const Case cases[] = {
      {"an error reply", [](const Request& r, const fuse_ioctl_in&) { return message(r, EPERM); },
       -EPERM, 1},
      {"ENOSYS becomes ENOTTY",
       [](const Request& r, const fuse_ioctl_in&) { return message(r, ENOSYS); }, -ENOTTY, 1},
      {"a result of -ENOSYS becomes ENOTTY",
       [](const Request& r, const fuse_ioctl_in&) {
         return message(r, 0, fuse_ioctl_out{-ENOSYS, 0, 0, 0});
       },
       -ENOTTY, 1},
      {"a reply shorter than fuse_ioctl_out",
       [](const Request& r, const fuse_ioctl_in&) { return message(r, 0, std::uint32_t{0}); },
       -EIO, 1},
      {"a retry whose iovec array is not count * 16 bytes",
       [](const Request& r, const fuse_ioctl_in&) {
         return message(r, 0, retry_out(2, 0), fuse_ioctl_iovec{r.h.unique, 4});
       },
       -EIO, 1},
      {"more than 256 iovecs",
       [](const Request& r, const fuse_ioctl_in&) { return message(r, 0, retry_out(200, 57)); },
       -ENOMEM, 1},
      {"more than 128 KiB in",
       [&](const Request& r, const fuse_ioctl_in&) {
         const fuse_ioctl_iovec iov[2] = {{big_addr, 65536}, {big_addr, 65537}};
         return message(r, 0, retry_out(2, 0), iov);
       },
       -ENOMEM, 1},
      {"more than 128 KiB out",
       [&](const Request& r, const fuse_ioctl_in&) {
         return message(r, 0, retry_out(0, 1), fuse_ioctl_iovec{big_addr, big.size()});
       },
       -ENOMEM, 1},
      {"an in-iovec the caller cannot read: EFAULT before round 2 is sent",
       [&](const Request& r, const fuse_ioctl_in&) {
         return message(r, 0, retry_out(1, 0), fuse_ioctl_iovec{unmapped, 8});
       },
       -EFAULT, 1},
      {"an out-iovec the caller cannot write",
       [&](const Request& r, const fuse_ioctl_in& in) -> std::optional<Bytes> {
         if (in.out_size == 0) return message(r, 0, retry_out(0, 1), fuse_ioctl_iovec{unmapped, 8});
         return message(r, 0, fuse_ioctl_out{0, 0, 0, 0}, std::uint64_t{1});
       },
       -EFAULT, 2},
      {"more reply bytes than out-iovecs",
       [&](const Request& r, const fuse_ioctl_in& in) -> std::optional<Bytes> {
         if (in.out_size == 0) return message(r, 0, retry_out(0, 1), fuse_ioctl_iovec{big_addr, 4});
         return message(r, 0, fuse_ioctl_out{0, 0, 0, 0}, std::uint64_t{1});
       },
       -EIO, 2},
      {"a daemon that never stops asking",
       [&](const Request& r, const fuse_ioctl_in&) {
         return message(r, 0, retry_out(0, 1), fuse_ioctl_iovec{big_addr, 4});
       },
       -ELOOP, CuseKernel::kMaxIoctlRounds},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    auto d = ioctl_daemon(c.answer);
    const IoctlOutcome o = d->kernel().ioctl(1, 0x3b70, big_addr);
    CHECK(o.ret == c.ret);
    CHECK(o.rounds == c.rounds);
  }
  munmap(none, 4096);
}

TEST_CASE("CuseKernel: a daemon that does not answer gives ETIMEDOUT, not a hang", "[harness]") {
  auto d = ioctl_daemon([](const Request&, const fuse_ioctl_in&) { return std::nullopt; }, 200ms);
  const auto start = std::chrono::steady_clock::now();
  CHECK(d->kernel().ioctl(1, 0x3b64, std::uint64_t{0}).ret == -ETIMEDOUT);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
}

TEST_CASE("CuseKernel: READ in max_read chunks, a reply longer than asked is EIO", "[harness]") {
  std::size_t longer = 0;
  ScriptedDaemon d([&](const Request& r) -> std::optional<Bytes> {
    if (r.h.opcode == CUSE_INIT) return init_reply(r, 7, CUSE_UNRESTRICTED_IOCTL, "DEVNAME=x", 10);
    const auto in = r.as<fuse_read_in>();
    Bytes data(in.size + longer, static_cast<std::uint8_t>(in.offset >> 12));
    return append(message(r, 0), data.data(), data.size());
  });
  REQUIRE(d.kernel().init().ok());
  std::vector<std::uint8_t> buf(3 * 131072);
  auto n = d.kernel().read(5, buf.data(), buf.size());
  REQUIRE(n.ok());
  CHECK(*n == buf.size());
  CHECK(d.requests().size() == 1 + 3);
  CHECK(buf[131072 * 2] == 131072 * 2 >> 12);
  longer = 1;
  CHECK(d.kernel().read(5, buf.data(), 16).error() == EIO);
}

}  // namespace
}  // namespace vfio_emu::test
