// The iommufd object model inside the module (Linux's iommufd_private.h): the context of one open
// of /dev/iommu, its objects by id, and the handlers each file of the module contributes.
//
// Locking, in order (core/objects.h): Emulator::mu, IommufdCtx::mu, Ioas::mu, Pages' mutex.
//   IommufdCtx::mu  the object table, every object's `users`, attachments (which HWPT a device
//                   uses, which HWPTs an IOAS has), the compat IOAS, the accounting mode.
//   Ioas::mu        the IOAS's IO page table and its hwpts list (changed with both held).
// MAP/UNMAP/COPY take IommufdCtx::mu only to look the IOAS up, then Ioas::mu alone, so IOASes
// never contend; two Ioas mutexes are never held together.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "core/command.h"
#include "core/id_allocator.h"
#include "core/iommufd/io_pagetable.h"
#include "core/iommufd/iommufd.h"

namespace vfio_emu::core {

enum class ObjType : u8 { kIoas, kHwptPaging, kDevice };
std::string_view obj_type_name(ObjType t);

// iommufd_object.
class IommufdObject {
 public:
  explicit IommufdObject(ObjType t) : type(t) {}
  virtual ~IommufdObject() = default;
  IommufdObject(const IommufdObject&) = delete;
  IommufdObject& operator=(const IommufdObject&) = delete;

  const ObjType type;
  u32 id = 0;
  // Long-term references from other objects and from VFIO (Linux's obj->users minus the
  // table's own): DESTROY refuses with EBUSY while it is not 0. Under IommufdCtx::mu.
  u32 users = 0;
};

class Hwpt;

// IOMMUFD_OBJ_IOAS.
class Ioas final : public IommufdObject {
 public:
  // At most `max_mappings` areas (Limits::ioas_mappings).
  explicit Ioas(u32 max_mappings) : IommufdObject(ObjType::kIoas), iopt(max_mappings) {}
  std::mutex mu;
  iopt::IoPagetable iopt;      // under mu
  std::vector<Hwpt*> hwpts;    // hwpt_list: every paging HWPT on this IOAS (under both mutexes)
};

// IOMMUFD_OBJ_HWPT_PAGING: an IOMMU domain on one unit, filled with its IOAS's areas.
class Hwpt final : public IommufdObject {
 public:
  Hwpt() : IommufdObject(ObjType::kHwptPaging) {}
  std::shared_ptr<Ioas> ioas;
  std::shared_ptr<HwDomain> domain;  // used under ioas->mu
  bool auto_domain = false;          // created by an attach to an IOAS; goes with its last device
  bool enforce_cache_coherency = false;
  bool pasid_compat = false;         // allocated with IOMMU_HWPT_ALLOC_PASID
  // `users` counts the devices attached.
};

// IOMMUFD_OBJ_DEVICE: a device bound through its cdev.
class IommufdDevice final : public IommufdObject {
 public:
  explicit IommufdDevice(Device* d) : IommufdObject(ObjType::kDevice), dev(d) {}
  Device* const dev;
  std::shared_ptr<Hwpt> hwpt;  // the attached HWPT, if any (under IommufdCtx::mu)
};

class IommufdCtx {
 public:
  IommufdCtx(Emulator& emu, u64 id);
  // iommufd_fops_release: everything still in the table goes, HWPTs before their IOASes.
  ~IommufdCtx();
  IommufdCtx(const IommufdCtx&) = delete;
  IommufdCtx& operator=(const IommufdCtx&) = delete;

  Emulator& emu;
  const u64 id;  // the id of the file that opened it, for log lines and domain owners

  std::mutex mu;
  // Under mu:
  std::map<u32, std::shared_ptr<IommufdObject>> objects;
  std::shared_ptr<Ioas> vfio_ioas;  // the IOAS of the VFIO compatibility ioctls
  bool account_mm = false;          // IOMMU_OPTION_RLIMIT_MODE: 0 per user, 1 per process
  bool no_iommu_mode = false;       // a no-IOMMU group joined (VFIO_NOIOMMU_IOMMU only)

  // iommufd_object_alloc: adds `obj` under the lowest free id from 1 (xa_alloc with
  // XA_FLAGS_ALLOC1 and xa_limit_31b) and returns the id. Errors: ENOMEM (the context has
  // Limits::iommufd_objects objects), EBUSY (all 2^31 - 1 ids are in use).
  Result<u32> insert(std::shared_ptr<IommufdObject> obj, IoctlCall& call);
  // iommufd_get_object: the object `id` of type `t`, or nullptr (ENOENT).
  template <class T>
  std::shared_ptr<T> get(u32 obj_id, ObjType t) const {
    auto it = objects.find(obj_id);
    if (it == objects.end() || it->second->type != t) return nullptr;
    return std::static_pointer_cast<T>(it->second);
  }
  // Removes the object from the table (and as the compat IOAS).
  void erase(u32 obj_id);

 private:
  IdAllocator ids_{1, 0x7fffffff};  // under mu
};

// ---- shared between the files of the module (IommufdCtx::mu held where noted) ----

IommufdCtx& ctx_of(File& f);

// iommufd_get_ioas with a log line. Errors: ENOENT. Takes IommufdCtx::mu.
Result<std::shared_ptr<Ioas>> get_ioas(IommufdCtx& ctx, u32 ioas_id, IoctlCall& call);

// iommufd_hwpt_paging_alloc for `dev` on `ioas` (IommufdCtx::mu held): allocates the HWPT object
// and its domain on the device's unit, optionally attaches the device first
// (`immediate_attach`), then adds the domain to the IOAS. Errors: EOPNOTSUPP (the unit allocates
// no paging domains: TCE), ENODEV (no IOMMU: nop), ENOSPC/ENOMEM (domain), the attach's and
// add_domain's errors. All-or-nothing.
Result<std::shared_ptr<Hwpt>> hwpt_paging_alloc(IommufdCtx& ctx, const std::shared_ptr<Ioas>& ioas,
                                                IommufdDevice& dev, bool immediate_attach,
                                                IoctlCall& call);
// Removes a HWPT with no devices from its IOAS and the table (IommufdCtx::mu held).
void hwpt_destroy(IommufdCtx& ctx, const std::shared_ptr<Hwpt>& hwpt);
// iommufd_hw_pagetable_attach (IommufdCtx::mu held). Errors: EINVAL (another device of the group
// uses another HWPT; the domain is on another IOMMU unit), EADDRINUSE (the device's reserved
// regions meet mapped or allowed IOVA).
Status hwpt_attach(IommufdCtx& ctx, const std::shared_ptr<Hwpt>& hwpt, IommufdDevice& dev,
                   IoctlCall& call);

// The caller of `call` as the IO page table sees who maps and pins.
iopt::Pinner pinner_of(const IoctlCall& call);
// IoPagetable::map_user_pages on `ioas` for the caller, accounted as the context says (takes
// IommufdCtx::mu briefly, then Ioas::mu); a refusal is logged as the call's line.
Status map_user_pages(Emulator& emu, IommufdCtx& ctx, Ioas& ioas, IoctlCall& call, u64 user_va,
                      u64 length, u64* iova, Prot prot, bool alloc_iova);
// iopt_unmap_iova (Ioas::mu held). Errors: EINVAL (length 0), EOVERFLOW, ENOENT (a mapping
// sticks out of the range; not atomic). An empty range is success with *unmapped = 0.
Status unmap_iova(IoctlCall& call, iopt::IoPagetable& iopt, u64 iova, u64 length, u64* unmapped);

// Undoes hwpt_attach (IommufdCtx::mu held); an automatic HWPT goes with its last device.
void hwpt_detach(IommufdCtx& ctx, IommufdDevice& dev);

}  // namespace vfio_emu::core
