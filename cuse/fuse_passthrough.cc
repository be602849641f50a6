#include "cuse/fuse_passthrough.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace vfio_emu::cuse::passthrough {

namespace {

// include/uapi/linux/fuse.h
constexpr u32 kOpInit = 26;                       // FUSE_INIT
constexpr u32 kInitExt = 1u << 30;                // FUSE_INIT_EXT
constexpr u32 kPassthroughFlags2 = 1u << (37 - 32);  // FUSE_PASSTHROUGH (1ULL << 37)
constexpr u32 kOpenPassthrough = 1u << 7;         // FOPEN_PASSTHROUGH

struct InHeader {   // fuse_in_header
  u32 len;
  u32 opcode;
  u64 unique;
  u64 nodeid;
  u32 uid, gid, pid;
  u16 total_extlen;
  u16 padding;
};
static_assert(sizeof(InHeader) == 40);

struct InitIn {     // fuse_init_in (the part read)
  u32 major;
  u32 minor;
  u32 max_readahead;
  u32 flags;
  u32 flags2;
};

struct OutHeader {  // fuse_out_header
  u32 len;
  std::int32_t error;
  u64 unique;
};
static_assert(sizeof(OutHeader) == 16);

// fuse_init_out: flags at 12, flags2 at 32, max_stack_depth at 36 (7.40).
constexpr size_t kInitOutFlags = 12;
constexpr size_t kInitOutFlags2 = 32;
constexpr size_t kInitOutMaxStackDepth = 36;

struct OpenOut {    // fuse_open_out (7.40: padding became backing_id)
  u64 fh;
  u32 open_flags;
  std::int32_t backing_id;
};
static_assert(sizeof(OpenOut) == 16);

struct BackingMap { // fuse_backing_map
  std::int32_t fd;
  u32 flags;
  u64 padding;
};
constexpr unsigned long kIocBackingOpen = _IOW(229, 1, BackingMap);  // FUSE_DEV_IOC_BACKING_OPEN
constexpr unsigned long kIocBackingClose = _IOW(229, 2, u32);       // FUSE_DEV_IOC_BACKING_CLOSE

u32 get32(const u8* p) {
  u32 v;
  std::memcpy(&v, p, 4);
  return v;
}
void put32(u8* p, u32 v) { std::memcpy(p, &v, 4); }

}  // namespace

std::optional<InitOffer> parse_init_request(const void* buf, size_t len) {
  if (len < sizeof(InHeader) + sizeof(InitIn)) return std::nullopt;
  InHeader h;
  std::memcpy(&h, buf, sizeof(h));
  if (h.opcode != kOpInit) return std::nullopt;
  InitIn in;
  std::memcpy(&in, static_cast<const u8*>(buf) + sizeof(h), sizeof(in));
  InitOffer offer;
  offer.unique = h.unique;
  offer.major = in.major;
  offer.minor = in.minor;
  offer.passthrough = (in.flags & kInitExt) && (in.flags2 & kPassthroughFlags2);
  return offer;
}

std::optional<ReplyHeader> reply_header(const iovec* iov, int count) {
  if (count < 1 || iov[0].iov_len < sizeof(OutHeader)) return std::nullopt;
  OutHeader h;
  std::memcpy(&h, iov[0].iov_base, sizeof(h));
  return ReplyHeader{h.unique, h.error};
}

bool ask_passthrough(const iovec* iov, int count) {
  if (count < 2 || iov[1].iov_len < kInitOutMaxStackDepth + 4) return false;
  u8* p = static_cast<u8*>(iov[1].iov_base);
  put32(p + kInitOutFlags, get32(p + kInitOutFlags) | kInitExt);
  put32(p + kInitOutFlags2, get32(p + kInitOutFlags2) | kPassthroughFlags2);
  put32(p + kInitOutMaxStackDepth, 1);
  return true;
}

bool mark_open_passthrough(const iovec* iov, int count, int backing_id) {
  if (count != 2 || iov[1].iov_len != sizeof(OpenOut)) return false;
  OpenOut out;
  std::memcpy(&out, iov[1].iov_base, sizeof(out));
  out.open_flags |= kOpenPassthrough;
  out.backing_id = backing_id;
  std::memcpy(iov[1].iov_base, &out, sizeof(out));
  return true;
}

Result<int> backing_open(int fuse_fd, int fd) {
  BackingMap map{fd, 0, 0};
  const int id = ::ioctl(fuse_fd, kIocBackingOpen, &map);
  if (id < 0) return err(errno);
  return id;
}

void backing_close(int fuse_fd, int id) {
  u32 v = static_cast<u32>(id);
  ::ioctl(fuse_fd, kIocBackingClose, &v);
}

}  // namespace vfio_emu::cuse::passthrough
