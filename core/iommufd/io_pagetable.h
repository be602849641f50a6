// The IO page table of one IOAS (Linux's struct io_pagetable, drivers/iommu/iommufd/
// io_pagetable.c and pages.c): the areas user space mapped, the reserved and allowed IOVA ranges,
// the IOVA alignment, and the domains every area is replicated into.
//
// All of it is used under the owning Ioas::mu. A Pages object (the user memory of one MAP) can be
// shared by areas of several IOASes (IOAS_COPY), so it has its own mutex, taken after Ioas::mu.
//
// Pinning. The emulator pins nothing, but it does what pinning would observe: an area is "pinned"
// while its IOAS has at least one domain; pinning checks that the pages are mapped in the source
// process with the access the mapping needs (EFAULT otherwise) and charges them to
// RLIMIT_MEMLOCK (ENOMEM), each page of a Pages object once however many areas and domains use
// it, as Linux's iopt_pages does.
//
// This layer knows no ioctl. An operation that fails returns the errno Linux returns and, in
// `*why` (when not null), one line saying why with the operands in hex; the ioctl handler that
// asked logs that line with reject_message().
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/iova_list.h"
#include "iommu/domain.h"

namespace vfio_emu::core {

class LockedMemory;

namespace iopt {

using iommu::IovaRange;
using iommu::kU64Max;

constexpr u64 kPageSize = 4096;
// HPAGE_SIZE on x86-64: the largest alignment automatic IOVA allocation looks for.
constexpr u64 kHugePageSize = u64{2} << 20;

// Linux's IOPT_PAGES_ACCOUNT_*: where pinned pages are charged.
enum class AccountMode : u8 {
  kNone,  // the mapping process had CAP_IPC_LOCK
  kUser,  // per user (user_struct->locked_vm): the iommufd default
  kMm,    // per process (mm->locked_vm), shared with type1: IOMMU_OPTION_RLIMIT_MODE = 1
};

// The key under which LockedMemory keeps the per-user count of `uid`. LockedMemory is keyed by
// pid; user keys are negative so they never meet a pid.
pid_t user_account_key(uid_t uid);

// Who maps and pins now: the ioctl's caller, for its mappings, its limits and the accounting.
struct Pinner {
  CallerEnv* env = nullptr;  // the caller's mappings, limits and capabilities
  pid_t pid = 0;
  uid_t uid = 0;
};

// The user memory of one IOAS_MAP / VFIO_IOMMU_MAP_DMA (iopt_pages): page-aligned, refcounted by
// the areas that use it.
class Pages {
 public:
  Pages(LockedMemory& locked, u64 uptr, u64 npages, bool writable, AccountMode mode,
        pid_t source_pid, uid_t source_uid, u64 memlock_limit);
  ~Pages();
  Pages(const Pages&) = delete;
  Pages& operator=(const Pages&) = delete;

  const u64 uptr;    // page-aligned start in the source process
  const u64 npages;
  const bool writable;
  const AccountMode account;
  const pid_t source_pid;
  const uid_t source_uid;

  // Pins page indexes `pages` for `holder` (an area id). Pages already pinned for another holder
  // are neither checked nor charged again.
  // Errors: EFAULT (a newly pinned page is not accessible in the source process),
  //   ENOMEM (RLIMIT_MEMLOCK). On error nothing changed.
  Status pin(u64 holder, IovaRange pages, const Pinner& who, std::string* why);
  void unpin(u64 holder);
  // Moves `holder`'s pin to two holders that split its range (iopt_area_split); charges nothing.
  void split(u64 holder, u64 lhs, IovaRange lhs_pages, u64 rhs, IovaRange rhs_pages);
  u64 pinned_pages() const;

 private:
  IovaList pinned_union() const;  // under mu_
  pid_t account_key() const;

  LockedMemory& locked_;
  const u64 memlock_limit_;  // RLIMIT_MEMLOCK of the source process when it mapped
  mutable std::mutex mu_;
  std::map<u64, IovaRange> holders_;
  u64 charged_pages_ = 0;
};

// One mapped range (iopt_area): a slice of a Pages object at an IOVA.
struct Area {
  u64 id = 0;  // unique for the daemon's lifetime: the pin holder
  u64 iova = 0;
  u64 last = 0;
  std::shared_ptr<Pages> pages;
  u64 start_byte = 0;  // offset of iova's byte from pages->uptr
  Prot prot = 0;       // kProtRead/kProtWrite as user space asked (kProtCache is added on map)
  u64 length() const { return last - iova + 1; }
  u64 user_va() const { return pages->uptr + start_byte; }
  u64 page_offset() const { return start_byte % kPageSize; }
  IovaRange page_indexes() const {
    return IovaRange{start_byte / kPageSize, (start_byte + (last - iova)) / kPageSize};
  }
  // The byte offset in pages of `iova` inside the area (iopt_area_start_byte).
  u64 start_byte_at(u64 at) const { return start_byte + (at - iova); }
};

// A slice of user memory to map (iopt_pages_list): `length` bytes from start_byte of pages.
struct Slice {
  std::shared_ptr<Pages> pages;
  u64 start_byte = 0;
  u64 length = 0;
};

struct Reserved {
  IovaRange range;
  const void* owner;  // the HWPT (its aperture) or the device (its reserved regions)
};

class IoPagetable {
 public:
  // Holds at most `max_areas` areas: what Linux's GFP_KERNEL_ACCOUNT area allocations would meet
  // in the memory cgroup (ENOMEM).
  explicit IoPagetable(u64 max_areas) : max_areas_(max_areas) {}
  // Unmaps every area (the IOAS is gone); the domains must already have left.
  ~IoPagetable();
  IoPagetable(const IoPagetable&) = delete;
  IoPagetable& operator=(const IoPagetable&) = delete;

  const std::map<u64, Area>& areas() const { return areas_; }
  // The lowest area overlapping [first, last], or nullptr.
  const Area* area_overlapping(u64 first, u64 last) const;
  const std::vector<Reserved>& reserved() const { return reserved_; }
  const IovaList& allowed() const { return allowed_; }
  u64 iova_alignment() const { return iova_alignment_; }
  bool large_pages_disabled() const { return disable_large_pages_; }
  const std::vector<iommu::Domain*>& domains() const { return domains_; }

  // The IOVA that is not reserved, [0, U64_MAX] minus the reserved ranges (IOAS_IOVA_RANGES).
  IovaList usable_ranges() const;

  // iopt_map_pages: maps the slices back to back at *iova (chosen by the kernel when
  // `alloc_iova`, then written to *iova) and fills the domains.
  // Errors: ENOMEM (one area per slice would pass max_areas), EINVAL (length misaligned,
  //   alignment, reserved), EEXIST, EOVERFLOW, ENOSPC, EPERM (write to read-only pages),
  //   EFAULT/ENOMEM (pinning), or a domain's map error. All-or-nothing.
  Status map(const Pinner& who, const std::vector<Slice>& slices, u64 length, u64* iova,
             Prot prot, bool alloc_iova, std::string* why);
  // iopt_map_user_pages: alloc_user_pages() for `who`, then map() of the one slice.
  Status map_user_pages(LockedMemory& locked, const Pinner& who, bool account_per_process,
                        u64 user_va, u64 length, u64* iova, Prot prot, bool alloc_iova,
                        std::string* why);

  // iopt_unmap_iova_range over [first, last]: removes the areas inside, lowest first, and stops
  // with ENOENT at one that sticks out (those removed before stay removed). An empty range is
  // success with *unmapped = 0. *unmapped is set on error too.
  Status unmap(u64 first, u64 last, u64* unmapped, std::string* why);

  // iopt_get_pages: the slices under [iova, iova + length - 1], which contiguous areas must
  // cover. Errors: EINVAL (length 0), EOVERFLOW, ENOENT.
  Result<std::vector<Slice>> get_pages(u64 iova, u64 length, std::string* why) const;

  // iopt_set_allow_iova. Errors: EADDRINUSE (an allowed range meets a reserved one; the old list
  // is kept).
  Status set_allowed(IovaList allowed, std::string* why);

  // iopt_reserve_iova. Errors: EADDRINUSE (it meets an area or an allowed range).
  Status reserve(IovaRange r, const void* owner, std::string_view what, std::string* why);
  void remove_reserved(const void* owner);

  // iopt_table_add_domain: raises the IOVA alignment to the domain's smallest page, reserves
  // what lies outside its aperture (owner `owner`) and fills it with every area (pinning them if
  // it is the first domain). Errors: EINVAL (page size above PAGE_SIZE), EADDRINUSE (an area is
  // misaligned for the domain or lies outside its aperture), EFAULT/ENOMEM (pinning), the
  // domain's map error. All-or-nothing.
  Status add_domain(const Pinner& who, iommu::Domain& domain, const void* owner,
                    std::string* why);
  // iopt_table_remove_domain: unmaps every area from it (unpinning with the last domain).
  void remove_domain(iommu::Domain& domain, const void* owner);

  // iopt_disable_large_pages. Errors: EINVAL (domains already have mappings), EADDRINUSE.
  Status disable_large_pages(std::string* why);
  void enable_large_pages();

  // iopt_cut_iova for one IOVA: splits the area holding `at` so that `at` is its last byte.
  // Errors: EINVAL (the cut is not aligned), ENOMEM (one more area would pass max_areas).
  Status cut(u64 at, std::string* why);
  // How many areas cut(at) would add: 1 if `at` lies inside an area and is not its first or last
  // byte, else 0.
  u64 areas_added_by_cut(u64 at) const;

  // Errors: ENOMEM if `more` areas would pass max_areas.
  Status check_room(u64 more, std::string* why) const;

 private:
  // iopt_alloc_iova: the first hole that fits. Errors: EOVERFLOW, EINVAL, ENOSPC.
  Result<u64> alloc_iova(u64 addr, u64 length, std::string* why) const;
  // iopt_check_iova. Errors: EINVAL, EOVERFLOW, EEXIST.
  Status check_iova(u64 iova, u64 length, std::string* why) const;
  bool reserved_overlaps(u64 first, u64 last) const;
  // Reserved ranges and areas merged, clipped to [first, last].
  IovaList used_in(u64 first, u64 last) const;
  // Maps `a` into `d` (page by page when large pages are disabled). All-or-nothing.
  Status map_into(iommu::Domain& d, const Area& a, std::string* why) const;
  // Pins and maps a new area into every domain. All-or-nothing.
  Status fill(const Pinner& who, const Area& a, std::string* why);
  void unfill(const Area& a);
  Status check_alignment(u64 alignment, std::string* why) const;
  u64 computed_alignment() const;

  const u64 max_areas_;
  std::map<u64, Area> areas_;  // by iova, never overlapping
  std::vector<Reserved> reserved_;
  IovaList allowed_;  // sorted, disjoint
  u64 iova_alignment_ = 1;
  bool disable_large_pages_ = false;
  std::vector<iommu::Domain*> domains_;
};

// iopt_alloc_user_pages: the Pages of [user_va, user_va + length), charged to `who`'s user, or
// to its process with `account_per_process` (IOMMU_OPTION_RLIMIT_MODE), or to no one when it has
// CAP_IPC_LOCK. Errors: EOVERFLOW (user_va + length wraps), EINVAL (length 0 or above
// SIZE_MAX - PAGE_SIZE).
Result<std::shared_ptr<Pages>> alloc_user_pages(LockedMemory& locked, const Pinner& who,
                                                bool account_per_process, u64 user_va,
                                                u64 length, bool writable, std::string* why);

// Sorted, merged union of possibly overlapping or adjacent ranges.
IovaList merge_ranges(std::vector<IovaRange> ranges);

}  // namespace iopt
}  // namespace vfio_emu::core
