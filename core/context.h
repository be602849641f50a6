// What an ioctl handler may know and touch of the process that called it.
//
// The transport (cuse/) implements these against the real caller (process_vm_readv/writev, the
// CUSE retry protocol, pidfd_getfd, /proc); core unit tests implement them in-process.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/unique_fd.h"
#include "base/result.h"
#include "iommu/types.h"

namespace vfio_emu::core {

using iommu::Prot;
using iommu::u16;
using iommu::u32;
using iommu::u64;
using iommu::u8;

struct Caller {
  pid_t tid = 0;   // the calling thread, as the request names it (0: not visible to us)
  pid_t pid = 0;   // its thread-group leader: the "process" that owns mappings
  uid_t uid = 0;
  gid_t gid = 0;
  // CAP_SYS_RAWIO in its effective set, for open(2) only (a no-IOMMU node needs it); ioctls ask
  // CallerEnv::capable at the time of the call.
  bool cap_sys_rawio = false;
};

// The caller's memory, reached through the argument pointer.
class UserMemory {
 public:
  virtual ~UserMemory() = default;
  // Copies len bytes at the caller's `addr`. Errors: EFAULT; kNeedRetry.
  virtual Status read(u64 addr, void* dst, std::size_t len) = 0;
  // An optimisation, for a struct whose length is itself in caller memory: copies as many of
  // the len bytes at `addr` as one cheap access can (0 when the transport cannot read ahead
  // without changing what the caller sees, as CUSE retry cannot). Never fails; bytes it did not
  // copy are then read with read(), which reports the errors.
  virtual std::size_t read_ahead(u64 /*addr*/, void* /*dst*/, std::size_t /*len*/) { return 0; }
  // Announces a write the handler will make after it has changed state, so that a transport
  // that must ask for output buffers in advance (CUSE retry) can do so while the handler can
  // still be re-run. Errors: kNeedRetry.
  virtual Status will_write(u64 addr, std::size_t len) = 0;
  // Copies len bytes to the caller's `addr`. Errors: EFAULT.
  virtual Status write(u64 addr, const void* src, std::size_t len) = 0;
};

class File;

// Turns an fd number passed in an ioctl argument into one of our open files.
class FdResolver {
 public:
  virtual ~FdResolver() = default;
  // Errors: EBADF if `fd` is not an open fd of the caller; kNeedDefer (see above). Returns
  // nullptr for an fd that is open but is not one of our nodes (the handler decides the errno, as
  // Linux does).
  virtual Result<std::shared_ptr<File>> resolve(int fd) = 0;
  // The daemon's own duplicate of the caller's `fd` if it is an eventfd (VFIO_DEVICE_SET_IRQS,
  // which Linux takes with eventfd_ctx_fdget). A file of any other kind is never taken (closing a
  // file of a stalled filesystem would block). Errors: EBADF if `fd` is not an open fd of the
  // caller, or if the caller's fds cannot be reached (another pid namespace, the CUSE retry
  // protocol, no ptrace rights), as resolve() answers then; EINVAL if it is not an eventfd.
  virtual Result<UniqueFd> take_eventfd(int /*fd*/) { return Err{EBADF}; }
};

// Facts about the caller that Linux reads from the task: mappings, limits, capabilities.
class CallerEnv {
 public:
  virtual ~CallerEnv() = default;
  // How many bytes from `addr` (up to len) lie in mappings of the caller that allow the access a
  // DMA with `prot` needs (readable for kProtRead, writable for kProtWrite), as pinning the pages
  // would require. len means all of it.
  virtual u64 dma_accessible(u64 addr, u64 len, Prot prot) = 0;
  // The same for memory that is pinned, as iommufd does with pin_user_pages(): a program's
  // mapping of a device's BAR (VM_PFNMAP in Linux) cannot be pinned and ends the range.
  // vfio_iommu_type1 maps such mappings (it follows the PFN): it asks dma_accessible().
  virtual u64 dma_pinnable(u64 addr, u64 len, Prot prot) { return dma_accessible(addr, len, prot); }
  // The largest IOMMU page shift the caller's pinned pages at [addr, addr+len) can back, as
  // mm_iommu_do_alloc (arch/powerpc/mm/book3s64/iommu_api.c) computes it from `natural_shift`
  // (__ffs(ua | size)) and the pages: with base pages of `base_shift`, walking them in order,
  // the result drops to the shift of the first page when that page is not a hugetlb page, and
  // otherwise to each hugetlb page's (a base page after a huge one keeps the huge shift, as in
  // Linux's loop). Without knowledge of the mappings: the natural shift capped at base_shift.
  virtual u32 pinned_page_shift(u64 /*addr*/, u64 /*len*/, u32 natural_shift, u32 base_shift) {
    return natural_shift < base_shift ? natural_shift : base_shift;
  }
  // RLIMIT_MEMLOCK of the caller in bytes (kU64Max: unlimited).
  virtual u64 memlock_limit() = 0;
  // Whether the caller has a capability in its effective set (CAP_IPC_LOCK, CAP_SYS_RAWIO, ...).
  virtual bool capable(int cap) = 0;
};

struct Command;

// One ioctl as the handlers see it.
struct IoctlCall {
  u32 cmd = 0;
  u64 arg = 0;  // the raw argument: a pointer or a value
  Caller caller;
  std::string_view node_name;        // "vfio/1", for log lines (the open file's own path)
  const Command* command = nullptr;  // set by the dispatcher
  std::string detail;                // decoded operands, filled by handlers for the trace
  // When the call fails because another open file holds what it wants (EBUSY, EINVAL): that
  // file's id. A transport whose closes are asynchronous (FUSE) waits for that file's release.
  u64 conflict = 0;
  UserMemory* mem = nullptr;
  FdResolver* fds = nullptr;
  CallerEnv* env = nullptr;

  // A struct argument, zero-extended, as the command's ArgRule read it (core/command.h): VFIO's
  // argsz rule, or iommufd's `size` rules (too small: EINVAL; non-zero bytes past the kernel
  // struct: E2BIG). user_size: the caller's argsz or size.
  u32 user_size = 0;
  alignas(8) std::array<u8, 256> ucmd{};
  template <class T>
  T& ucmd_as() {
    static_assert(sizeof(T) <= sizeof(ucmd));
    return *reinterpret_cast<T*>(ucmd.data());
  }
  // iommufd_ucmd_respond: copies min(user size, ksize) bytes of ucmd back. Errors: EFAULT.
  Status respond(std::size_t ksize) const {
    return mem->write(arg, ucmd.data(), user_size < ksize ? user_size : ksize);
  }
};

}  // namespace vfio_emu::core
