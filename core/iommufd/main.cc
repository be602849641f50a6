// The iommufd context: objects by id, IOMMU_DESTROY, IOMMU_OPTION, open and release of /dev/iommu
// (drivers/iommu/iommufd/main.c).
#include <linux/capability.h>

#include <vector>

#include "core/emulator.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/ioctls.h"
#include "core/iommufd/user_copy.h"
#include "core/node_type.h"
#include "core/reject.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::core {

using namespace uapi;

std::string_view obj_type_name(ObjType t) {
  switch (t) {
    case ObjType::kIoas: return "IOAS";
    case ObjType::kHwptPaging: return "HWPT";
    case ObjType::kDevice: return "device";
  }
  return "?";
}

IommufdCtx::IommufdCtx(Emulator& e, u64 file_id) : emu(e), id(file_id) {}

IommufdCtx::~IommufdCtx() {
  std::lock_guard lock(mu);
  // Devices hold the context, so none is left; HWPTs hold their IOAS, so they go first.
  std::vector<std::shared_ptr<Hwpt>> hwpts;
  for (const auto& [obj_id, obj] : objects)
    if (obj->type == ObjType::kHwptPaging) hwpts.push_back(std::static_pointer_cast<Hwpt>(obj));
  for (const auto& h : hwpts) {
    h->users = 0;
    hwpt_destroy(*this, h);
  }
  vfio_ioas.reset();
  objects.clear();
}

Result<u32> IommufdCtx::insert(std::shared_ptr<IommufdObject> obj, IoctlCall& call) {
  // What Linux's GFP_KERNEL_ACCOUNT allocation of the object would meet in the memory cgroup.
  const u32 limit = emu.limits().iommufd_objects;
  if (objects.size() >= limit)
    return reject(call, ENOMEM, "iommufd {:#x}: {} object: {:#x} objects, the limit "
                  "(iommufd_objects)", id, obj_type_name(obj->type), objects.size());
  auto allocated = ids_.alloc();
  if (!allocated)
    return reject(call, EBUSY, "iommufd {:#x}: every object id up to {:#x} is in use", id,
                  0x7fffffff);
  obj->id = *allocated;
  objects.emplace(obj->id, std::move(obj));
  return *allocated;
}

void IommufdCtx::erase(u32 obj_id) {
  auto it = objects.find(obj_id);
  if (it == objects.end()) return;
  if (vfio_ioas && vfio_ioas.get() == it->second.get()) vfio_ioas.reset();
  objects.erase(it);
  ids_.free(obj_id);
}

IommufdCtx& ctx_of(File& f) { return *static_cast<IommufdFile&>(f).ctx; }

Result<std::shared_ptr<Ioas>> get_ioas(IommufdCtx& ctx, u32 ioas_id, IoctlCall& call) {
  std::lock_guard lock(ctx.mu);
  auto ioas = ctx.get<Ioas>(ioas_id, ObjType::kIoas);
  if (!ioas) return reject(call, ENOENT, "no IOAS {:#x}", ioas_id);
  return ioas;
}

std::shared_ptr<IommufdCtx> make_iommufd_ctx(Emulator& emu, u64 id) {
  return std::make_shared<IommufdCtx>(emu, id);
}

void release_iommufd_file(Emulator&, IommufdFile& f) {
  // iommufd_fops_release runs when the last reference goes: the file's, or later that of the
  // last bound device or group.
  f.ctx.reset();
}

pid_t iommufd_user_lock_key(uid_t uid) { return iopt::user_account_key(uid); }

namespace {

class IommufdNodeType final : public NodeType {
 public:
  Result<std::shared_ptr<File>> open(Emulator& emu, const NodeInfo&, u64 id, const Caller& caller,
                                     u64*) const override {
    return std::shared_ptr<File>(
        std::make_shared<IommufdFile>(id, caller.pid, make_iommufd_ctx(emu, id)));
  }
  void release(Emulator& emu, const std::shared_ptr<File>& file) const override {
    release_iommufd_file(emu, static_cast<IommufdFile&>(*file));
  }
  // Numbers below IOMMUFD_CMD_BASE are the VFIO container compatibility layer's.
  Result<Route> route(Emulator&, File&, IoctlCall& call) const override {
    Route r;
    if ((call.cmd & 0xff) < uapi::IOMMUFD_CMD_BASE) r.backend = Backend::kIommufdCompat;
    return r;
  }
};

}  // namespace

const NodeType& iommufd_node_type() {
  static const IommufdNodeType type;
  return type;
}

namespace iommufd_ioctl {

// ---- IOMMU_DESTROY -----------------------------------------------------------------------------

Result<long> destroy(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_destroy>();
  call.detail = fmt::format("id={:#x}", cmd.id);
  IommufdCtx& ctx = ctx_of(file);
  std::lock_guard lock(ctx.mu);
  auto it = ctx.objects.find(cmd.id);
  if (it == ctx.objects.end()) return reject(call, ENOENT, "no object {:#x}", cmd.id);
  const std::shared_ptr<IommufdObject> obj = it->second;
  if (obj->users != 0)
    return reject(call, EBUSY, "{} {:#x} is in use ({} user{})", obj_type_name(obj->type),
                  cmd.id, obj->users, obj->users == 1 ? "" : "s");
  if (obj->type == ObjType::kHwptPaging)
    hwpt_destroy(ctx, std::static_pointer_cast<Hwpt>(obj));
  else
    ctx.erase(cmd.id);  // an IOAS takes its mappings with it
  return 0;
}

// ---- IOMMU_OPTION ------------------------------------------------------------------------------

Status option_rlimit_mode(IommufdCtx& ctx, iommu_option& cmd, IoctlCall& call) {
  if (cmd.object_id != 0)
    return reject(call, EOPNOTSUPP, "RLIMIT_MODE: object_id {:#x} must be 0", cmd.object_id);
  if (cmd.op == IOMMU_OPTION_OP_GET) {
    std::lock_guard lock(ctx.mu);
    cmd.val64 = ctx.account_mm ? 1 : 0;
    return {};
  }
  if (cmd.op != IOMMU_OPTION_OP_SET) return reject(call, EOPNOTSUPP, "op {:#x}", cmd.op);
  if (!call.env->capable(CAP_SYS_RESOURCE))
    return reject(call, EPERM, "RLIMIT_MODE: setting it needs CAP_SYS_RESOURCE");
  std::lock_guard lock(ctx.mu);
  if (!ctx.objects.empty())
    return reject(call, EBUSY, "RLIMIT_MODE: the context already has {} object(s)",
                  ctx.objects.size());
  if (cmd.val64 > 1) return reject(call, EINVAL, "RLIMIT_MODE: value {:#x}", cmd.val64);
  ctx.account_mm = cmd.val64 == 1;
  return {};
}

Status option_huge_pages(IommufdCtx& ctx, iommu_option& cmd, IoctlCall& call) {
  auto ioas = TRY(get_ioas(ctx, cmd.object_id, call));
  std::lock_guard lock(ioas->mu);
  if (cmd.op == IOMMU_OPTION_OP_GET) {
    cmd.val64 = ioas->iopt.large_pages_disabled() ? 0 : 1;
    return {};
  }
  if (cmd.op != IOMMU_OPTION_OP_SET) return reject(call, EOPNOTSUPP, "op {:#x}", cmd.op);
  if (cmd.val64 == 0) {
    std::string why;
    Status st = ioas->iopt.disable_large_pages(&why);
    if (!st) return reject_message(call, st.error(), why);
    return {};
  }
  if (cmd.val64 == 1) {
    ioas->iopt.enable_large_pages();
    return {};
  }
  return reject(call, EINVAL, "HUGE_PAGES: value {:#x}", cmd.val64);
}

Result<long> option(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_option>();
  call.detail = fmt::format("option={:#x} op={:#x} object={:#x} val={:#x}", cmd.option_id, cmd.op,
                            cmd.object_id, cmd.val64);
  if (cmd.__reserved) return reject(call, EOPNOTSUPP, "__reserved {:#x}", cmd.__reserved);
  IommufdCtx& ctx = ctx_of(file);
  switch (cmd.option_id) {
    case IOMMU_OPTION_RLIMIT_MODE:
      TRY(option_rlimit_mode(ctx, cmd, call));
      break;
    case IOMMU_OPTION_HUGE_PAGES:
      TRY(option_huge_pages(ctx, cmd, call));
      break;
    default:
      return reject(call, EOPNOTSUPP, "unknown option {:#x}", cmd.option_id);
  }
  // Only val64 goes back.
  TRY(copy_to_user(call, call.arg + offsetof(iommu_option, val64), &cmd.val64, sizeof(cmd.val64)));
  return 0;
}

}  // namespace iommufd_ioctl

}  // namespace vfio_emu::core
