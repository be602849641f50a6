// The VFIO container emulation on an iommufd fd (drivers/iommu/iommufd/vfio_compat.c; spec §5.9)
// and IOMMU_VFIO_IOAS. Every VFIO container ioctl works on the compat IOAS, which the first group
// joining through VFIO_GROUP_SET_CONTAINER creates (or IOMMU_VFIO_IOAS SET chooses).
//
// Since Linux 6.18 an UNMAP_DMA of an empty range succeeds with size 0, as type1 does
// ("iommufd: Make vfio_compat's unmap succeed if the range is already empty"); IOMMU_IOAS_UNMAP
// still says ENOENT.
#include <linux/capability.h>

#include <algorithm>

#include "core/emulator.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/ioctls.h"
#include "core/iommufd/user_copy.h"
#include "core/reject.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/vfio_iommu_rules.h"

namespace vfio_emu::core {

using namespace uapi;

Status iommufd_attach_group(Emulator& emu, const std::shared_ptr<IommufdCtx>& ctx, Group& g,
                            IoctlCall& call) {
  std::lock_guard lock(ctx->mu);
  // iommufd_vfio_compat_set_no_iommu: a no-IOMMU group puts the context in no-IOMMU mode, unless
  // it already has a compat IOAS.
  if (g.noiommu()) {
    if (ctx->vfio_ioas)
      return reject(call, EINVAL, "no-IOMMU group {}: the iommufd already has a compat IOAS "
                    "{:#x}", g.id(), ctx->vfio_ioas->id);
    ctx->no_iommu_mode = true;
    return {};
  }
  // iommufd_vfio_compat_ioas_create: an IOAS that already serves (created or SET) is kept.
  if (ctx->no_iommu_mode)
    return reject(call, EINVAL, "group {}: the iommufd is in no-IOMMU mode", g.id());
  if (ctx->vfio_ioas) return {};
  auto ioas = std::make_shared<Ioas>(emu.limits().ioas_mappings);
  TRY(ctx->insert(ioas, call));
  ctx->vfio_ioas = std::move(ioas);
  return {};
}

bool iommufd_object_exists(IommufdCtx& ctx, u32 id) {
  std::lock_guard lock(ctx.mu);
  return ctx.objects.count(id) != 0;
}

bool iommufd_has_compat_ioas(IommufdCtx& ctx) {
  std::lock_guard lock(ctx.mu);
  return ctx.vfio_ioas != nullptr;
}

void iommufd_detach_group(Emulator&, IommufdCtx&, Group&) {
  // The group only drops its reference to the context (Group::ictx); the compat IOAS stays.
}

namespace compat_ioctl {

// get_compat_ioas. Errors: ENODEV.
Result<std::shared_ptr<Ioas>> compat_ioas(IommufdCtx& ctx, IoctlCall& call) {
  std::lock_guard lock(ctx.mu);
  if (!ctx.vfio_ioas)
    return reject(call, ENODEV, "no compat IOAS (no group has done VFIO_GROUP_SET_CONTAINER "
                  "with this iommufd, and IOMMU_VFIO_IOAS did not set one)");
  return ctx.vfio_ioas;
}

// ---- IOMMU_VFIO_IOAS ---------------------------------------------------------------------------

Result<long> vfio_ioas(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_vfio_ioas>();
  call.detail = fmt::format("op={:#x} ioas={:#x}", cmd.op, cmd.ioas_id);
  if (cmd.__reserved) return reject(call, EOPNOTSUPP, "__reserved {:#x}", cmd.__reserved);
  IommufdCtx& ctx = ctx_of(file);
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET: {
      auto ioas = TRY(compat_ioas(ctx, call));
      cmd.ioas_id = ioas->id;
      call.detail += fmt::format(" -> ioas={:#x}", cmd.ioas_id);
      TRY(respond(call, sizeof(cmd)));
      return 0;
    }
    case IOMMU_VFIO_IOAS_SET: {
      auto ioas = TRY(get_ioas(ctx, cmd.ioas_id, call));
      std::lock_guard lock(ctx.mu);
      ctx.vfio_ioas = std::move(ioas);
      return 0;
    }
    case IOMMU_VFIO_IOAS_CLEAR: {
      std::lock_guard lock(ctx.mu);
      ctx.vfio_ioas.reset();
      return 0;
    }
    default:
      return reject(call, EOPNOTSUPP, "op {:#x}", cmd.op);
  }
}

// ---- the container ioctls ----------------------------------------------------------------------

Result<long> compat_get_api_version(Emulator&, File&, IoctlCall&) {
  return long{VFIO_API_VERSION};
}

Result<long> compat_check_extension(Emulator&, File& file, IoctlCall& call) {
  const u64 ext = call.arg;
  call.detail = fmt::format("ext={:#x}", ext);
  // IS_ENABLED(CONFIG_VFIO_NOIOMMU): set in the distribution kernels this emulates.
  if (ext == VFIO_NOIOMMU_IOMMU) return long{1};
  bool dma_cc = false;
  if (ext == VFIO_DMA_CC_IOMMU) {
    // 1 when every HWPT of the compat IOAS enforces cache coherency (also with none).
    auto ioas = TRY(compat_ioas(ctx_of(file), call));
    std::lock_guard lock(ioas->mu);
    dma_cc = std::all_of(ioas->hwpts.begin(), ioas->hwpts.end(),
                         [](const Hwpt* h) { return h->enforce_cache_coherency; });
  }
  // The type1 types and UNMAP_ALL: not in no-IOMMU mode.
  if (ext == VFIO_TYPE1_IOMMU || ext == VFIO_TYPE1v2_IOMMU || ext == VFIO_UNMAP_ALL) {
    std::lock_guard lock(ctx_of(file).mu);
    if (ctx_of(file).no_iommu_mode) return long{0};
  }
  // UPDATE_VADDR cannot be done safely.
  return type1_check_extension(static_cast<u32>(ext), false, dma_cc);
}

Result<long> compat_set_iommu(Emulator&, File& file, IoctlCall& call) {
  const u64 type = call.arg;
  call.detail = fmt::format("type={:#x}", type);
  IommufdCtx& ctx = ctx_of(file);
  bool no_iommu;
  {
    std::lock_guard lock(ctx.mu);
    no_iommu = ctx.no_iommu_mode;
  }
  if (type == VFIO_NOIOMMU_IOMMU && no_iommu) {
    if (!call.env->capable(CAP_SYS_RAWIO))
      return reject(call, EPERM, "VFIO_NOIOMMU_IOMMU needs CAP_SYS_RAWIO");
    return long{0};
  }
  if ((type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU) || no_iommu)
    return reject(call, EINVAL, "type {:#x}: only VFIO_TYPE1_IOMMU and VFIO_TYPE1v2_IOMMU are "
                  "emulated", type);
  auto ioas = TRY(compat_ioas(ctx, call));
  // Type1 (v1) may unmap inside a mapping: emulated by never using large IOPTEs.
  if (type == VFIO_TYPE1_IOMMU) {
    std::lock_guard lock(ioas->mu);
    std::string why;
    Status st = ioas->iopt.disable_large_pages(&why);
    if (!st) return reject_message(call, st.error(), why);
  }
  return long{0};
}

// iommufd_get_pagesizes: the domains' page sizes, adjusted as type1 does, at least the IOVA
// alignment.
u64 compat_pagesizes(const iopt::IoPagetable& iopt) {
  u64 bitmap = iommu::kU64Max;
  for (const iommu::Domain* d : iopt.domains()) bitmap &= d->page_sizes();
  return std::max(type1_pgsize_bitmap(bitmap), iopt.iova_alignment());
}

Result<long> compat_get_info(Emulator&, File& file, IoctlCall& call) {
  auto info = call.ucmd_as<vfio_iommu_type1_info>();  // argsz >= 16 (ArgRule::kArgsz)
  call.detail = fmt::format("argsz={:#x}", info.argsz);
  const u32 head = std::min<u32>(info.argsz, sizeof(info));
  auto ioas = TRY(compat_ioas(ctx_of(file), call));
  std::lock_guard lock(ioas->mu);
  info.flags = VFIO_IOMMU_INFO_PGSIZES;
  info.iova_pgsizes = compat_pagesizes(ioas->iopt);
  info.cap_offset = 0;

  // The capabilities are written straight into the caller's buffer, each as far as it fits:
  // DMA_AVAIL (avail = U32_MAX), then IOVA_RANGE, each 8-byte aligned.
  const IovaList ranges = ioas->iopt.usable_ranges();
  constexpr u64 kAvailAt = sizeof(vfio_iommu_type1_info);                  // 24
  constexpr u64 kRangesAt = kAvailAt + ((sizeof(vfio_iommu_type1_info_dma_avail) + 7) & ~7ULL);
  const u64 range_cap = sizeof(vfio_iommu_type1_info_cap_iova_range) +
                        ranges.size() * sizeof(vfio_iova_range);
  const u64 total = kRangesAt + range_cap;
  TRY(call.mem->will_write(call.arg, std::min<u64>(info.argsz, total)));
  auto room_at = [&](u64 at) -> u64 { return info.argsz > at ? info.argsz - at : 0; };
  auto put = [&](u64 at, const void* p, u64 n) { return copy_to_user(call, call.arg + at, p, n); };

  vfio_iommu_type1_info_dma_avail avail{};
  avail.header.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
  avail.header.version = 1;
  avail.avail = 0xffffffffu;
  if (room_at(kAvailAt) >= sizeof(avail)) TRY(put(kAvailAt, &avail, sizeof(avail)));

  const u64 room = room_at(kRangesAt);
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (room < sizeof(vfio_iommu_type1_info_cap_iova_range) + (i + 1) * sizeof(vfio_iova_range))
      continue;
    const vfio_iova_range r{ranges[i].first, ranges[i].last};
    TRY(put(kRangesAt + sizeof(vfio_iommu_type1_info_cap_iova_range) + i * sizeof(r), &r,
            sizeof(r)));
  }
  if (room >= range_cap) {
    vfio_iommu_type1_info_cap_iova_range cap{};
    cap.header.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
    cap.header.version = 1;
    cap.nr_iovas = static_cast<u32>(ranges.size());
    TRY(put(kRangesAt, &cap, sizeof(cap)));
  }
  if (info.argsz >= kRangesAt) {  // link DMA_AVAIL to IOVA_RANGE
    const u32 next = kRangesAt;
    TRY(put(kAvailAt + offsetof(vfio_info_cap_header, next), &next, sizeof(next)));
  }

  if (info.argsz >= total) info.cap_offset = sizeof(info);
  const u32 caller_argsz = info.argsz;
  info.argsz = static_cast<u32>(total);  // always the exact size, unlike type1
  info.flags |= VFIO_IOMMU_INFO_CAPS;
  info.pad = 0;
  TRY(put(0, &info, head));
  call.detail = fmt::format("argsz={:#x} -> {:#x} pgsizes={:#x} iovas={}", caller_argsz,
                            info.argsz, info.iova_pgsizes, ranges.size());
  return 0;
}

Result<long> compat_map_dma(Emulator& emu, File& file, IoctlCall& call) {
  vfio_iommu_type1_dma_map map;
  TRY(dma_map_argument(call, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, &map));
  // No READ/WRITE check: flags 0 maps with IOMMU_CACHE alone (a domain then refuses it).
  const Prot prot = dma_map_prot(map.flags);
  IommufdCtx& ctx = ctx_of(file);
  auto ioas = TRY(compat_ioas(ctx, call));
  u64 iova = map.iova;
  TRY(map_user_pages(emu, ctx, *ioas, call, map.vaddr, map.size, &iova, prot, false));
  return 0;
}

Result<long> compat_unmap_dma(Emulator&, File& file, IoctlCall& call) {
  constexpr u32 minsz = offsetof(vfio_iommu_type1_dma_unmap, size) + 8;  // 24
  // Announced before the read so that CUSE retry fetches and maps the struct in one round.
  TRY(call.mem->will_write(call.arg, minsz));
  TRY(read_argsz_struct(call, minsz));
  // Only VFIO_DMA_UNMAP_FLAG_ALL is emulated.
  vfio_iommu_type1_dma_unmap unmap;
  TRY(dma_unmap_argument(call, VFIO_DMA_UNMAP_FLAG_ALL, &unmap));
  auto ioas = TRY(compat_ioas(ctx_of(file), call));
  std::lock_guard lock(ioas->mu);
  u64 unmapped = 0;
  Status st;
  std::string why;
  if (unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
    if (unmap.iova != 0 || unmap.size != 0)
      return reject(call, EINVAL, "ALL needs iova and size 0 (iova {:#x} size {:#x})", unmap.iova,
                    unmap.size);
    st = ioas->iopt.unmap(0, iommu::kU64Max, &unmapped, &why);
    if (!st) st = reject_message(call, st.error(), why);
  } else {
    if (ioas->iopt.large_pages_disabled()) {
      // Type1 v1: cut the mappings at both edges first (not at 0), so unmapping inside works.
      // Room for both new areas is made sure of first, so that running out of it splits
      // nothing.
      const u64 last = unmap.iova + unmap.size - 1;
      const u64 more = ioas->iopt.areas_added_by_cut(last) +
                       (unmap.iova != 0 ? ioas->iopt.areas_added_by_cut(unmap.iova - 1) : 0);
      st = ioas->iopt.check_room(more, &why);
      if (st) st = ioas->iopt.cut(last, &why);
      if (st && unmap.iova != 0) st = ioas->iopt.cut(unmap.iova - 1, &why);
      if (!st) return reject_message(call, st.error(), why);
    }
    st = unmap_iova(call, ioas->iopt, unmap.iova, unmap.size, &unmapped);
  }
  // The struct goes back with the bytes unmapped so far, even on error.
  unmap.size = unmapped;
  call.detail += fmt::format(" -> unmapped={:#x}", unmapped);
  TRY(copy_to_user(call, call.arg, &unmap, minsz));
  if (!st) return Err{st.error()};
  return 0;
}

}  // namespace compat_ioctl

}  // namespace vfio_emu::core
