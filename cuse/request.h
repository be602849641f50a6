// Serving one ioctl from a FUSE or CUSE request: reaching the caller's memory (directly with
// process_vm_readv/writev, or through the CUSE retry protocol), resolving fd numbers the caller
// passes, and turning the core's answer into the reply the kernel expects.
#pragma once

#include <sys/stat.h>
#include <sys/uio.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/context.h"
#include "core/emulator.h"
#include "cuse/open_files.h"

namespace vfio_emu::cuse {

using core::u32;
using core::u64;
using core::u8;

enum class ArgAccess : u8 {
  kAuto,    // direct; a request whose caller cannot be reached falls back to retry
  kDirect,  // process_vm_readv/writev on the caller's thread: one round trip
  kRetry,   // the kernel's FUSE_IOCTL_RETRY protocol (CUSE only): 2-3 round trips
};

// tid -> tgid. Entries hold a pidfd of the thread, so a reused tid is never mistaken for the
// thread it replaced.
class ThreadGroups {
 public:
  ~ThreadGroups();
  // The thread-group id of `tid`, or 0 if the thread is gone or not visible.
  pid_t tgid_of(pid_t tid);

 private:
  struct Entry {
    int pidfd;
    pid_t tgid;
  };
  std::mutex mu_;
  std::unordered_map<pid_t, Entry> cache_;
};

// What the transport knows about its nodes, for proving that an fd is one of ours.
class NodeIdentity {
 public:
  virtual ~NodeIdentity() = default;
  // True if a file with these stat results is one of our nodes (FUSE: our mount's st_dev and a
  // node inode; CUSE: a character device with one of our device numbers).
  virtual bool is_ours(const struct stat& st) const = 0;
};

// The state the retry protocol keeps between the rounds of one ioctl of one thread: the kernel
// sends back the data of the iovecs asked for, in order, but not the iovecs themselves.
class RetryRounds {
 public:
  struct Pending {
    u64 fh = 0;
    u32 cmd = 0;
    u64 arg = 0;
    std::vector<iovec> in;
    std::vector<iovec> out;
  };
  // The iovecs of the previous round of `tid`'s ioctl, if the request continues it.
  bool take(pid_t tid, u64 fh, u32 cmd, u64 arg, size_t in_size, size_t out_size, Pending* p);
  void put(pid_t tid, Pending p);

 private:
  std::mutex mu_;
  std::unordered_map<pid_t, Pending> pending_;
};

// Everything one ioctl (or open) needs about its caller. Implements the core's seams.
class RequestCaller final : public core::UserMemory,
                            public core::FdResolver,
                            public core::CallerEnv {
 public:
  RequestCaller(core::Emulator& emu, const NodeIdentity& nodes, const core::Caller& caller)
      : emu_(emu), nodes_(nodes), caller_(caller) {}

  // Direct access: read/write go straight to the caller. If `fallback` is set, a caller that
  // cannot be reached makes read() answer kNeedRetry, so the request can be redone in retry
  // mode; otherwise it answers EPERM.
  void use_direct(bool fallback) {
    retry_ = false;
    fallback_ = fallback;
  }
  // Retry protocol: `in` holds the data of the in-iovecs `in_iovs` (in order); out-iovecs
  // `out_iovs` may be written. Reads or writes outside them ask for another round.
  void use_retry(const std::vector<iovec>& in_iovs, const u8* in, size_t in_size,
                 const std::vector<iovec>& out_iovs);

  // After kNeedRetry: the iovecs the next round must carry.
  const std::vector<iovec>& next_in() const { return next_in_; }
  const std::vector<iovec>& next_out() const { return next_out_; }
  // After completion in retry mode: the bytes for the out-iovecs, in order.
  std::vector<u8> out_data() const;
  bool unreachable() const { return unreachable_; }

  // core::UserMemory
  Status read(u64 addr, void* dst, std::size_t len) override;
  std::size_t read_ahead(u64 addr, void* dst, std::size_t len) override;
  Status will_write(u64 addr, std::size_t len) override;
  Status write(u64 addr, const void* src, std::size_t len) override;
  // core::FdResolver: pidfd_getfd on the caller, proven ours by fstat before anything else is
  // done with it, then identified with VFIO_EMU_IDENTIFY (which this daemon answers).
  Result<std::shared_ptr<core::File>> resolve(int fd) override;
  // core::FdResolver: pidfd_getfd on the caller; the file is handed over untouched.
  Result<core::UniqueFd> take_foreign(int fd) override;
  // core::CallerEnv
  u64 dma_accessible(u64 addr, u64 len, core::Prot prot) override;
  u64 memlock_limit() override;
  bool capable(int cap) override;

 private:
  // Where [addr, addr+len) lies in the in data (retry mode), or nullptr.
  const u8* find_in(u64 addr, std::size_t len) const;
  u8* find_out(u64 addr, std::size_t len);
  void ask_in(u64 addr, std::size_t len);
  // pidfd_getfd of the caller's `fd`. Errors: EBADF (not open, or the caller is out of reach).
  Result<core::UniqueFd> fetch_caller_fd(int fd);

  core::Emulator& emu_;
  const NodeIdentity& nodes_;
  core::Caller caller_;
  bool retry_ = false;
  bool fallback_ = false;
  bool unreachable_ = false;
  std::vector<iovec> in_iovs_, out_iovs_;
  std::vector<u8> in_data_;
  std::vector<std::vector<u8>> out_shadow_;  // one per out-iovec
  std::vector<iovec> next_in_, next_out_;
};

// Limits of the kernel's ioctl retry protocol (fs/fuse/ioctl.c).
constexpr size_t kMaxRetryIovecs = 256;
constexpr size_t kMaxRetryBytes = 32 * 4096;  // fc->max_pages (32) for CUSE

}  // namespace vfio_emu::cuse

namespace vfio_emu::cuse {

// The answer to one ioctl request, in the kernel's terms.
struct IoctlReply {
  enum class Kind : u8 { kDone, kRetry } kind = Kind::kDone;
  long result = 0;             // >= 0, or -errno
  std::vector<u8> out;         // retry mode: bytes for the out-iovecs
  std::vector<iovec> in_iovs;  // kRetry: what the next round must carry
  std::vector<iovec> out_iovs;
};

// Serves ioctls for both transports.
class IoctlService {
 public:
  IoctlService(core::Emulator& emu, const NodeIdentity& nodes, ThreadGroups& threads,
               ArgAccess access)
      : emu_(emu), nodes_(nodes), threads_(threads), access_(access) {}

  // `unrestricted`: a CUSE request, which may use the retry protocol; `in`/`out_size` are the
  // request's in data and out room (zero on a first round and on FUSE).
  IoctlReply handle(const std::shared_ptr<core::File>& file, const std::string& node_name,
                    core::Caller caller, u32 cmd, u64 arg, bool unrestricted, const u8* in,
                    size_t in_size, size_t out_size);

  core::Caller caller_from(pid_t tid, uid_t uid, gid_t gid) const;
  // The transport's open files (see cuse/open_files.h).
  OpenFiles& files() { return files_; }

 private:
  IoctlReply run(const std::shared_ptr<core::File>& file, const std::string& node_name,
                 const core::Caller& caller, u32 cmd, u64 arg, RequestCaller& rc, bool retry);

  core::Emulator& emu_;
  const NodeIdentity& nodes_;
  ThreadGroups& threads_;
  ArgAccess access_;
  RetryRounds rounds_;
  OpenFiles files_;
  std::mutex unreachable_mu_;
  std::unordered_map<pid_t, bool> unreachable_;  // threads direct access failed on (auto mode)
};

}  // namespace vfio_emu::cuse
