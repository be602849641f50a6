// Reaching the calling process from the daemon: its memory (process_vm_readv/writev on the
// caller's thread id), its mappings and their permissions (PROCMAP_QUERY on /proc/<pid>/maps,
// Linux 6.11+, with a text fallback), its RLIMIT_MEMLOCK (prlimit) and capabilities (capget).
//
// All of it needs ptrace-attach rights over the caller: the daemon runs as root.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "base/result.h"
#include "iommu/types.h"

namespace vfio_emu::cuse {

using iommu::u64;

// Copies len bytes at `addr` in process/thread `tid`. Errors: EFAULT (unmapped or unreadable),
// EPERM/ESRCH (cannot reach the process).
Status process_read(pid_t tid, u64 addr, void* dst, std::size_t len);
Status process_write(pid_t tid, u64 addr, const void* src, std::size_t len);
// Copies what it can of the len bytes at `addr` in `tid` (up to the first fault, in one
// process_vm_readv); returns how many bytes that was, 0 on any error.
std::size_t process_read_some(pid_t tid, u64 addr, void* dst, std::size_t len);

// How many bytes from `addr` (at most len) lie in consecutive mappings of `pid` that allow the
// access a DMA with `prot` needs: readable for kProtRead, writable for kProtWrite (what pinning
// with or without FOLL_WRITE requires). A mapping of a file for which `unpinnable(st_dev,
// st_ino)` says true (as /proc/<pid>/maps shows the file) ends the range too: the daemon's device
// nodes, whose mappings are BARs, which Linux maps VM_PFNMAP and pin_user_pages() refuses. The
// kernel's own VM_IO/PFNMAP mappings are not told apart.
// `store_trapped(st_dev, st_ino)`: a shared mapping of such a file that lacks write permission
// but may be made writable (VM_MAYWRITE) counts as writable: `vfio-emu run` maps a BAR whose
// stores it traps read-only though the program asked for PROT_WRITE (tools/store_watch.h).
u64 dma_accessible(pid_t pid, u64 addr, u64 len, iommu::Prot prot,
                   const std::function<bool(dev_t, u64)>& unpinnable = {},
                   const std::function<bool(dev_t, u64)>& store_trapped = {});

// Calls `page_size` with the page size of each mapping of `pid` that covers part of
// [addr, addr+len), in address order: the huge page size for hugetlb mappings
// (vma_kernel_pagesize), the base page size otherwise; stops when it returns false, or at the
// first address no mapping covers. Calls it for nothing when the kernel has no PROCMAP_QUERY
// (before 6.11) or the process is gone.
void for_each_mapping_page_size(pid_t pid, u64 addr, u64 len,
                                const std::function<bool(u64)>& page_size);

// core::CallerEnv::pinned_page_shift for process `pid`: Linux's mm_iommu_do_alloc walk over
// the pages of [addr, addr+len), a mapping at a time (for_each_mapping_page_size).
u32 pinned_page_shift(pid_t pid, u64 addr, u64 len, u32 natural_shift, u32 base_shift);

// RLIMIT_MEMLOCK of `pid` in bytes; kU64Max when unlimited or unknown.
u64 memlock_limit(pid_t pid);

// Whether thread `tid` has capability `cap` in its effective set.
bool has_capability(pid_t tid, int cap);

// The thread-group id of thread `tid` (from /proc/<tid>/status), or 0 if it is gone.
pid_t thread_group_of(pid_t tid);

// A pidfd of thread `tid` (PIDFD_THREAD, Linux 6.9+; before that, only a thread-group leader has
// one), or -1 with errno set.
int pidfd_open_thread(pid_t tid);

// Whether the process or thread of `pidfd` is still alive (not a reused pid: the pidfd is of the
// one it was opened for).
bool pidfd_alive(int pidfd);

}  // namespace vfio_emu::cuse
