#include "tests/cuse/cuse_kernel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace vfio_emu::test {
namespace {

constexpr std::size_t kPageSize = 4096;
constexpr std::size_t kInitInfoMax = 4096;  // CUSE_INIT_INFO_MAX
// The largest message a daemon may send us: ioctl out data or a read, plus the headers.
constexpr std::size_t kMaxMessage = 2 * 1024 * 1024;

using Clock = std::chrono::steady_clock;

std::uint64_t total(const auto& iovs) {
  std::uint64_t n = 0;
  for (const auto& v : iovs) n += v.len;
  return n;
}

template <class V>
std::vector<iovec> to_iovecs(const V& iovs, std::uint64_t limit) {
  std::vector<iovec> out;
  for (const auto& v : iovs) {
    if (limit == 0) break;
    const std::uint64_t len = std::min(v.len, limit);
    if (len != 0) out.push_back(iovec{reinterpret_cast<void*>(v.base), len});
    limit -= len;
  }
  return out;
}

// copy_page_from_iter over the caller's in-iovecs. False at a fault.
template <class V>
bool copy_from_caller(const V& iovs, std::uint8_t* dst, std::uint64_t len) {
  if (len == 0) return true;
  const std::vector<iovec> remote = to_iovecs(iovs, len);
  iovec local{dst, len};
  const ssize_t n = process_vm_readv(getpid(), &local, 1, remote.data(), remote.size(), 0);
  return n >= 0 && static_cast<std::uint64_t>(n) == len;
}

// copy_folio_to_iter of the reply data into the caller's out-iovecs. False at a fault.
template <class V>
bool copy_to_caller(const V& iovs, const std::uint8_t* src, std::uint64_t len) {
  if (len == 0) return true;
  const std::vector<iovec> remote = to_iovecs(iovs, len);
  iovec local{const_cast<std::uint8_t*>(src), len};
  const ssize_t n = process_vm_writev(getpid(), &local, 1, remote.data(), remote.size(), 0);
  return n >= 0 && static_cast<std::uint64_t>(n) == len;
}

// strstrip: leading and trailing white space off, in place.
std::string strip(std::string s) {
  const char* ws = " \t\n\v\f\r";
  const std::size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// cuse_parse_devinfo: packed "key=value\0" strings; only DEVNAME counts. Errors: EINVAL.
Result<std::string> parse_devinfo(const std::uint8_t* p, std::size_t len, std::string* why) {
  std::string devname;
  std::size_t i = 0;
  while (true) {
    while (i < len && p[i] == '\0') ++i;
    if (i == len) break;
    if (p[len - 1] != '\0') {
      *why = "CUSE_INIT: device info not properly terminated";
      return err(EINVAL);
    }
    const std::string entry(reinterpret_cast<const char*>(p + i));
    i += entry.size();
    const std::size_t eq = entry.find('=');
    const std::string key = strip(entry.substr(0, eq));
    const std::string val = eq == std::string::npos ? std::string() : strip(entry.substr(eq + 1));
    if (key.empty()) {
      *why = "CUSE_INIT: zero length info key";
      return err(EINVAL);
    }
    if (key == "DEVNAME") devname = val;  // the kernel logs any other key and goes on
  }
  if (devname.empty()) {
    *why = "CUSE_INIT: DEVNAME unspecified";
    return err(EINVAL);
  }
  return devname;
}

}  // namespace

CuseKernel::CuseKernel(int fd, std::chrono::milliseconds reply_timeout)
    : fd_(fd), timeout_(reply_timeout) {}

CuseKernel::~CuseKernel() { close(); }

void CuseKernel::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool CuseKernel::message_waiting(std::chrono::milliseconds wait) const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(wait.count())) == 1 && (p.revents & POLLIN);
}

Err CuseKernel::protocol_error(int code, std::string what) {
  problem_ = std::move(what);
  return err(code);
}

// ---- messages --------------------------------------------------------------------------------

Status CuseKernel::send_request(std::uint64_t unique, std::uint32_t opcode, std::uint64_t nodeid,
                                std::initializer_list<std::pair<const void*, std::size_t>> pieces) {
  if (fd_ < 0) return err(ENOTCONN);
  fuse_in_header h{};
  std::vector<iovec> iov{iovec{&h, sizeof(h)}};
  std::size_t len = sizeof(h);
  for (const auto& [data, size] : pieces) {
    if (size == 0) continue;
    iov.push_back(iovec{const_cast<void*>(data), size});
    len += size;
  }
  h.len = static_cast<std::uint32_t>(len);
  h.opcode = opcode;
  h.unique = unique;
  h.nodeid = nodeid;
  h.uid = geteuid();  // current_fsuid()
  h.gid = getegid();
  h.pid = static_cast<std::uint32_t>(caller_pid_.value_or(gettid()));
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(len))
    return protocol_error(ENOTCONN, fmt::format("sending opcode {}: {}", opcode,
                                                n < 0 ? std::strerror(errno) : "short send"));
  return {};
}

Result<CuseKernel::Reply> CuseKernel::await_reply(std::uint64_t unique) {
  const auto deadline = Clock::now() + timeout_;
  std::vector<std::uint8_t> buf(kMaxMessage);
  while (true) {
    if (fd_ < 0) return err(ENOTCONN);
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0)
      return protocol_error(ETIMEDOUT, fmt::format("no reply to request {} within {} ms", unique,
                                                   timeout_.count()));
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return protocol_error(ENOTCONN, "the daemon closed the channel");
    if (static_cast<std::size_t>(n) > buf.size())
      return protocol_error(EIO, fmt::format("a {}-byte message, more than any request allows", n));
    if (static_cast<std::size_t>(n) < sizeof(fuse_out_header))
      return protocol_error(EIO, fmt::format("a {}-byte message, shorter than a header", n));
    fuse_out_header oh;
    std::memcpy(&oh, buf.data(), sizeof(oh));
    // fuse_dev_do_write's checks, in its order.
    if (oh.len != static_cast<std::uint32_t>(n))
      return protocol_error(EIO, fmt::format("header says {} bytes, message has {}", oh.len, n));
    if (oh.unique == 0) continue;  // a notification (FUSE_NOTIFY_POLL, ...)
    if (oh.error <= -512 || oh.error > 0)
      return protocol_error(EIO, fmt::format("reply error {} is not -errno", oh.error));
    if (oh.unique != unique) {
      problem_ = fmt::format("a reply to request {} while {} was pending", oh.unique, unique);
      continue;  // the kernel answers ENOENT to the daemon and keeps waiting
    }
    Reply r;
    r.error = -oh.error;
    r.payload.assign(buf.begin() + sizeof(oh), buf.begin() + n);
    if (r.error != 0 && !r.payload.empty())
      return protocol_error(EIO, fmt::format("error {} with {} payload bytes", r.error,
                                             r.payload.size()));
    return r;
  }
}

Result<CuseKernel::Reply> CuseKernel::exchange(
    std::uint32_t opcode, std::uint64_t nodeid,
    std::initializer_list<std::pair<const void*, std::size_t>> pieces) {
  const std::uint64_t unique = next_unique_++;
  TRY(send_request(unique, opcode, nodeid, pieces));
  return await_reply(unique);
}

// ---- CUSE_INIT -------------------------------------------------------------------------------

Status CuseKernel::send_init() {
  cuse_init_in in{};
  in.major = kProtoMajor;
  in.minor = kProtoMinor;
  in.flags = CUSE_UNRESTRICTED_IOCTL;
  init_unique_ = next_unique_++;
  return send_request(init_unique_, CUSE_INIT, 0, {{&in, sizeof(in)}});
}

Result<std::string> CuseKernel::finish_init() {
  Reply r = TRY(await_reply(init_unique_));
  if (r.error != 0) return protocol_error(r.error, fmt::format("CUSE_INIT failed: {}", r.error));
  // Two out args: cuse_init_out, and the info strings (out_argvar, at most CUSE_INIT_INFO_MAX).
  if (r.payload.size() < sizeof(cuse_init_out) ||
      r.payload.size() > sizeof(cuse_init_out) + kInitInfoMax)
    return protocol_error(EIO, fmt::format("CUSE_INIT reply of {} bytes", r.payload.size()));
  cuse_init_out out;
  std::memcpy(&out, r.payload.data(), sizeof(out));
  if (out.major != 7 || out.minor < 11)
    return protocol_error(EPROTO, fmt::format("CUSE_INIT reply speaks {}.{}", out.major, out.minor));
  max_read_ = std::max<std::uint32_t>(out.max_read, kPageSize);
  max_write_ = std::max<std::uint32_t>(out.max_write, kPageSize);
  unrestricted_ = out.flags & CUSE_UNRESTRICTED_IOCTL;
  std::string why;
  auto devname = parse_devinfo(r.payload.data() + sizeof(out), r.payload.size() - sizeof(out), &why);
  if (!devname) return protocol_error(devname.error(), why);
  if (!unrestricted_)
    return protocol_error(EPROTO, fmt::format("CUSE_INIT flags {:#x}: no CUSE_UNRESTRICTED_IOCTL",
                                              out.flags));
  return devname;
}

Result<std::string> CuseKernel::init() {
  TRY(send_init());
  return finish_init();
}

// ---- open, release, read, write --------------------------------------------------------------

Result<std::uint64_t> CuseKernel::open(std::uint32_t flags) {
  fuse_open_in in{};
  // fuse_send_open: f_flags without O_CREAT|O_EXCL|O_NOCTTY (and O_TRUNC); open(2) adds
  // O_LARGEFILE on 64-bit.
  in.flags = (flags | O_LARGEFILE) & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC);
  Reply r = TRY(exchange(FUSE_OPEN, 0, {{&in, sizeof(in)}}));
  if (r.error != 0) return err(r.error);
  if (r.payload.size() != sizeof(fuse_open_out))
    return protocol_error(EIO, fmt::format("FUSE_OPEN reply of {} bytes", r.payload.size()));
  fuse_open_out out;
  std::memcpy(&out, r.payload.data(), sizeof(out));
  return std::uint64_t{out.fh};
}

Status CuseKernel::release(std::uint64_t fh, std::uint32_t flags) {
  fuse_release_in in{};
  in.fh = fh;
  in.flags = flags | O_LARGEFILE;
  Reply r = TRY(exchange(FUSE_RELEASE, 0, {{&in, sizeof(in)}}));
  if (r.error != 0) return err(r.error);  // the kernel ignores it; a test may not
  return {};
}

namespace {

// fuse_read_in / fuse_write_in for one chunk (the two differ only in their *_flags field).
template <class In>
In io_in(std::uint64_t fh, std::size_t pos, std::size_t chunk) {
  In in{};
  in.fh = fh;
  in.offset = pos;
  in.size = static_cast<std::uint32_t>(chunk);
  in.flags = O_RDWR | O_LARGEFILE;
  return in;
}

// fuse_direct_io: chunks of at most `max` bytes from position 0 on, until everything is moved
// or a chunk comes back short. `one(pos, chunk)` moves one chunk and returns its byte count;
// a failure after some progress returns the progress, as read(2)/write(2) do.
template <class Chunk>
Result<std::size_t> direct_io(std::size_t len, std::size_t max, Chunk one) {
  std::size_t done = 0;
  while (done < len) {
    const std::size_t chunk = std::min(len - done, max);
    auto n = one(done, chunk);
    if (!n) {
      if (done != 0) break;
      return err(n.error());
    }
    done += *n;
    if (*n < chunk) break;
  }
  return done;
}

}  // namespace

Result<std::size_t> CuseKernel::read(std::uint64_t fh, void* buf, std::size_t len) {
  return direct_io(len, max_read_, [&](std::size_t pos, std::size_t chunk) -> Result<std::size_t> {
    const auto in = io_in<fuse_read_in>(fh, pos, chunk);
    Reply r = TRY(exchange(FUSE_READ, 0, {{&in, sizeof(in)}}));
    if (r.error != 0) return err(r.error);
    if (r.payload.size() > chunk)
      return protocol_error(EIO, fmt::format("FUSE_READ of {} bytes answered with {}", chunk,
                                             r.payload.size()));
    std::memcpy(static_cast<std::uint8_t*>(buf) + pos, r.payload.data(), r.payload.size());
    return r.payload.size();
  });
}

Result<std::size_t> CuseKernel::write(std::uint64_t fh, const void* buf, std::size_t len) {
  return direct_io(len, max_write_, [&](std::size_t pos, std::size_t chunk) -> Result<std::size_t> {
    const auto in = io_in<fuse_write_in>(fh, pos, chunk);
    Reply r = TRY(exchange(FUSE_WRITE, 0, {{&in, sizeof(in)},
                                            {static_cast<const std::uint8_t*>(buf) + pos, chunk}}));
    if (r.error != 0) return err(r.error);
    fuse_write_out out;
    if (r.payload.size() != sizeof(out))
      return protocol_error(EIO, fmt::format("FUSE_WRITE reply of {} bytes", r.payload.size()));
    std::memcpy(&out, r.payload.data(), sizeof(out));
    if (out.size > chunk)
      return protocol_error(EIO, fmt::format("FUSE_WRITE of {} bytes claims {}", chunk, out.size));
    return std::size_t{out.size};
  });
}

// ---- ioctl: fuse_do_ioctl ----------------------------------------------------------------------

long CuseKernel::ioctl_round(std::uint64_t fh, std::uint32_t cmd, std::uint64_t arg,
                             std::vector<Iovec>& in, std::vector<Iovec>& out, bool* retry) {
  *retry = false;
  fuse_ioctl_in inarg{};
  inarg.fh = fh;
  inarg.flags = FUSE_IOCTL_UNRESTRICTED;
  inarg.cmd = cmd;
  inarg.arg = arg;
  inarg.in_size = static_cast<std::uint32_t>(total(in));
  inarg.out_size = static_cast<std::uint32_t>(total(out));
  // The reply buffer: out_size, but at least a page, which is room for the iovec array.
  const std::uint64_t out_room = std::max<std::uint64_t>(inarg.out_size, kPageSize);
  // Every round copies all in-data from the caller again.
  std::vector<std::uint8_t> in_data(inarg.in_size);
  if (!copy_from_caller(in, in_data.data(), in_data.size())) return -EFAULT;

  auto reply = exchange(FUSE_IOCTL, 0, {{&inarg, sizeof(inarg)}, {in_data.data(), in_data.size()}});
  if (!reply) return -reply.error();
  if (reply->error != 0) return reply->error == ENOSYS ? -ENOTTY : -reply->error;
  const std::vector<std::uint8_t>& p = reply->payload;
  fuse_ioctl_out outarg;
  if (p.size() < sizeof(outarg) || p.size() - sizeof(outarg) > out_room) {
    problem_ = fmt::format("FUSE_IOCTL reply of {} bytes for {} bytes of room", p.size(),
                           out_room);
    return -EIO;  // copy_out_args fails: the request ends with EIO
  }
  std::memcpy(&outarg, p.data(), sizeof(outarg));
  const std::uint8_t* data = p.data() + sizeof(outarg);
  const std::size_t transferred = p.size() - sizeof(outarg);
  if (outarg.result == -ENOSYS) outarg.result = -ENOTTY;

  if (outarg.flags & FUSE_IOCTL_RETRY) {
    if (outarg.in_iovs > kMaxIovecs || outarg.out_iovs > kMaxIovecs ||
        outarg.in_iovs + outarg.out_iovs > kMaxIovecs) {
      problem_ = fmt::format("RETRY with {} + {} iovecs", outarg.in_iovs, outarg.out_iovs);
      return -ENOMEM;
    }
    // fuse_copy_ioctl_iovec (minor >= 16): exactly one fuse_ioctl_iovec per iovec.
    const std::size_t count = outarg.in_iovs + outarg.out_iovs;
    if (transferred != count * sizeof(fuse_ioctl_iovec)) {
      problem_ = fmt::format("RETRY with {} iovecs in {} bytes", count, transferred);
      return -EIO;
    }
    std::vector<Iovec> iovs(count);
    std::memcpy(iovs.data(), data, transferred);
    in.assign(iovs.begin(), iovs.begin() + outarg.in_iovs);
    out.assign(iovs.begin() + outarg.in_iovs, iovs.end());
    // fuse_verify_ioctl_iov, for each direction.
    for (const auto* dir : {&in, &out}) {
      std::uint64_t left = kMaxBytesPerDirection;
      for (const Iovec& v : *dir) {
        if (v.len > left) {
          problem_ = fmt::format("RETRY asks for more than {} bytes in one direction",
                                 kMaxBytesPerDirection);
          return -ENOMEM;
        }
        left -= v.len;
      }
    }
    *retry = true;
    return 0;
  }
  if (transferred > inarg.out_size) {
    problem_ = fmt::format("{} reply bytes for {} bytes of out-iovecs", transferred,
                           inarg.out_size);
    return -EIO;
  }
  // The data is copied out even when the result is an error.
  if (!copy_to_caller(out, data, transferred)) return -EFAULT;
  return outarg.result;
}

IoctlOutcome CuseKernel::ioctl(std::uint64_t fh, std::uint32_t cmd, std::uint64_t arg) {
  IoctlOutcome o;
  // Unrestricted: no iovecs at first, so the first request never carries data.
  std::vector<Iovec> in, out;
  while (true) {
    if (o.rounds == kMaxIoctlRounds) {
      problem_ = fmt::format("ioctl {:#x}: still asking for retries after {} rounds", cmd,
                             o.rounds);
      o.ret = -ELOOP;
      return o;
    }
    bool retry = false;
    // A fault while gathering the in-data ends the ioctl before a request is sent.
    const std::uint64_t before = next_unique_;
    o.ret = ioctl_round(fh, cmd, arg, in, out, &retry);
    if (next_unique_ != before) ++o.rounds;
    if (!retry) return o;
  }
}

}  // namespace vfio_emu::test
