// IOAS ioctls: ALLOC, IOVA_RANGES, ALLOW_IOVAS, MAP, MAP_FILE, COPY, UNMAP, CHANGE_PROCESS
// (drivers/iommu/iommufd/ioas.c; spec §5.3-§5.8).
#include <map>
#include <vector>

#include "core/emulator.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/ioctls.h"
#include "core/iommufd/user_copy.h"
#include "core/reject.h"
#include "core/uapi/iommufd.h"

namespace vfio_emu::core {

using namespace uapi;
using iommu::IovaRange;
using iommu::kU64Max;

namespace ioas_ioctl {

constexpr u32 kMapFlags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE |
                          IOMMU_IOAS_MAP_READABLE;

// conv_iommu_prot (IOMMU_CACHE is added when the domains are programmed).
Prot prot_of(u32 flags) {
  Prot p = 0;
  if (flags & IOMMU_IOAS_MAP_WRITEABLE) p |= iommu::kProtWrite;
  if (flags & IOMMU_IOAS_MAP_READABLE) p |= iommu::kProtRead;
  return p;
}

// The checks IOAS_MAP, IOAS_MAP_FILE and IOAS_COPY share, in their order: known flags and zero
// reserved bits (EOPNOTSUPP), IOVAs and length below ULONG_MAX (EOVERFLOW), some access (EINVAL).
Status check_map_request(IoctlCall& call, u32 flags, u32 reserved,
                         std::initializer_list<u64> below_ulong_max) {
  if ((flags & ~kMapFlags) || reserved)
    return reject(call, EOPNOTSUPP, "flags {:#x} reserved {:#x}", flags, reserved);
  for (u64 v : below_ulong_max)
    if (v >= kU64Max) return reject(call, EOVERFLOW, "{:#x} is not below ULONG_MAX", v);
  if (!(flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
    return reject(call, EINVAL, "flags {:#x}: neither READABLE nor WRITEABLE", flags);
  return {};
}

Result<long> ioas_alloc(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_alloc>();
  call.detail = fmt::format("flags={:#x}", cmd.flags);
  if (cmd.flags) return reject(call, EOPNOTSUPP, "flags {:#x} must be 0", cmd.flags);
  IommufdCtx& ctx = ctx_of(file);
  std::lock_guard lock(ctx.mu);
  cmd.out_ioas_id = TRY(ctx.insert(std::make_shared<Ioas>(ctx.emu.limits().ioas_mappings), call));
  Status st = respond(call, sizeof(cmd));
  if (!st) {
    ctx.erase(cmd.out_ioas_id);
    return Err{st.error()};
  }
  call.detail += fmt::format(" -> ioas={:#x}", cmd.out_ioas_id);
  return 0;
}

Result<long> ioas_iova_ranges(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_iova_ranges>();
  call.detail = fmt::format("ioas={:#x} num_iovas={:#x} allowed_iovas={:#x}", cmd.ioas_id,
                            cmd.num_iovas, cmd.allowed_iovas);
  if (cmd.__reserved) return reject(call, EOPNOTSUPP, "__reserved {:#x}", cmd.__reserved);
  auto ioas = TRY(get_ioas(ctx_of(file), cmd.ioas_id, call));
  std::lock_guard lock(ioas->mu);
  const u32 max_iovas = cmd.num_iovas;
  const IovaList ranges = ioas->iopt.usable_ranges();
  cmd.out_iova_alignment = ioas->iopt.iova_alignment();
  const u64 fits = std::min<u64>(max_iovas, ranges.size());
  TRY(call.mem->will_write(cmd.allowed_iovas, fits * sizeof(iommu_iova_range)));
  for (u64 i = 0; i < fits; ++i) {
    const iommu_iova_range elm{ranges[i].first, ranges[i].last};
    TRY(copy_to_user(call, cmd.allowed_iovas + i * sizeof(elm), &elm, sizeof(elm)));
  }
  cmd.num_iovas = static_cast<u32>(ranges.size());
  TRY(respond(call, sizeof(cmd)));
  if (ranges.size() > max_iovas)
    return reject(call, EMSGSIZE, "{} ranges, room for {}", ranges.size(), max_iovas);
  return 0;
}

// iommufd_ioas_load_iovas: reads num ranges, each start < last and disjoint from the others.
Result<IovaList> load_iovas(IoctlCall& call, u64 uptr, u32 num) {
  std::map<u64, u64> loaded;  // first -> last
  // Read in large chunks (one CUSE retry round for any sane count; the buffer stays bounded for
  // an insane one); at a fault, fall back to one range at a time so that a bad range before the
  // fault still wins, as Linux reads them one by one.
  constexpr u32 kChunk = 64 * 1024;
  std::vector<iommu_iova_range> buf(std::min(num, kChunk));
  for (u32 done = 0; done < num;) {
    const u32 n = std::min(kChunk, num - done);
    const u64 at = uptr + u64{done} * sizeof(buf[0]);
    u32 have = n;
    Status st = call.mem->read(at, buf.data(), n * sizeof(buf[0]));
    if (!st) {
      if (st.error() != EFAULT) return Err{st.error()};
      for (have = 0; have < n; ++have) {
        st = call.mem->read(at + u64{have} * sizeof(buf[0]), &buf[have], sizeof(buf[0]));
        if (!st) break;
      }
      if (!st && st.error() != EFAULT) return Err{st.error()};
    }
    for (u32 i = 0; i < have; ++i) {
      const iommu_iova_range& r = buf[i];
      if (r.start >= r.last)
        return reject(call, EINVAL, "range {}: start {:#x} >= last {:#x}", done + i, r.start,
                      r.last);
      auto next = loaded.upper_bound(r.start);
      const bool hits_prev = next != loaded.begin() && std::prev(next)->second >= r.start;
      const bool hits_next = next != loaded.end() && next->first <= r.last;
      if (hits_prev || hits_next)
        return reject(call, EINVAL, "range {}: {:#x}..{:#x} overlaps another", done + i, r.start,
                      r.last);
      loaded.emplace(r.start, r.last);
    }
    if (have < n)
      return reject(call, EFAULT, "reading range {} at {:#x}", done + have,
                    at + u64{have} * sizeof(buf[0]));
    done += n;
  }
  IovaList out;
  for (const auto& [first, last] : loaded) out.push_back(IovaRange{first, last});
  return out;
}

Result<long> ioas_allow_iovas(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_allow_iovas>();
  call.detail = fmt::format("ioas={:#x} num_iovas={:#x} allowed_iovas={:#x}", cmd.ioas_id,
                            cmd.num_iovas, cmd.allowed_iovas);
  if (cmd.__reserved) return reject(call, EOPNOTSUPP, "__reserved {:#x}", cmd.__reserved);
  auto ioas = TRY(get_ioas(ctx_of(file), cmd.ioas_id, call));
  IovaList allowed = TRY(load_iovas(call, cmd.allowed_iovas, cmd.num_iovas));
  std::lock_guard lock(ioas->mu);
  std::string why;
  Status st = ioas->iopt.set_allowed(std::move(allowed), &why);
  if (!st) return reject_message(call, st.error(), why);
  return 0;
}

Result<long> ioas_map(Emulator& emu, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_map>();
  call.detail = fmt::format("ioas={:#x} flags={:#x} user_va={:#x} length={:#x} iova={:#x}",
                            cmd.ioas_id, cmd.flags, cmd.user_va, cmd.length, cmd.iova);
  TRY(check_map_request(call, cmd.flags, cmd.__reserved, {cmd.iova, cmd.length}));
  auto ioas = TRY(get_ioas(ctx_of(file), cmd.ioas_id, call));
  u64 iova = cmd.iova;
  TRY(map_user_pages(emu, ctx_of(file), *ioas, call, cmd.user_va, cmd.length, &iova,
                     prot_of(cmd.flags), !(cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA)));
  cmd.iova = iova;
  note_result(call, " -> iova={:#x}", iova);
  // Linux leaves the mapping in place when the struct cannot be written back.
  TRY(respond(call, sizeof(cmd)));
  return 0;
}

Result<long> ioas_map_file(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_map_file>();
  call.detail = fmt::format("ioas={:#x} flags={:#x} fd={} start={:#x} length={:#x} iova={:#x}",
                            cmd.ioas_id, cmd.flags, cmd.fd, cmd.start, cmd.length, cmd.iova);
  TRY(check_map_request(call, cmd.flags, 0, {cmd.iova, cmd.length}));
  auto ioas = TRY(get_ioas(ctx_of(file), cmd.ioas_id, call));
  auto resolved = call.fds->resolve(cmd.fd);
  if (!resolved) return reject(call, resolved.error(), "fd {} is not an open file", cmd.fd);
  return reject(call, EOPNOTSUPP, "fd {}: a user-space emulator cannot reach a file's pages; "
                "map it with mmap and IOMMU_IOAS_MAP", cmd.fd);
}

Result<long> ioas_copy(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_copy>();
  call.detail = fmt::format("flags={:#x} dst_ioas={:#x} src_ioas={:#x} length={:#x} "
                            "dst_iova={:#x} src_iova={:#x}", cmd.flags, cmd.dst_ioas_id,
                            cmd.src_ioas_id, cmd.length, cmd.dst_iova, cmd.src_iova);
  TRY(check_map_request(call, cmd.flags, 0, {cmd.length, cmd.src_iova, cmd.dst_iova}));
  IommufdCtx& ctx = ctx_of(file);
  std::vector<iopt::Slice> slices;
  {
    auto src = TRY(get_ioas(ctx, cmd.src_ioas_id, call));
    std::lock_guard lock(src->mu);
    std::string why;
    auto got = src->iopt.get_pages(cmd.src_iova, cmd.length, &why);
    if (!got) return reject_message(call, got.error(), why);
    slices = got.take();
  }
  auto dst = TRY(get_ioas(ctx, cmd.dst_ioas_id, call));
  u64 iova = cmd.dst_iova;
  {
    std::lock_guard lock(dst->mu);
    std::string why;
    Status st = dst->iopt.map(pinner_of(call), slices,
                              cmd.length, &iova, prot_of(cmd.flags),
                              !(cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA), &why);
    if (!st) return reject_message(call, st.error(), why);
  }
  cmd.dst_iova = iova;
  note_result(call, " -> dst_iova={:#x}", iova);
  TRY(respond(call, sizeof(cmd)));
  return 0;
}

Result<long> ioas_unmap(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_unmap>();
  call.detail = fmt::format("ioas={:#x} iova={:#x} length={:#x}", cmd.ioas_id, cmd.iova,
                            cmd.length);
  auto ioas = TRY(get_ioas(ctx_of(file), cmd.ioas_id, call));
  std::lock_guard lock(ioas->mu);
  u64 unmapped = 0;
  if (cmd.iova == 0 && cmd.length == kU64Max) {  // unmap everything; an empty IOAS is success
    std::string why;
    Status st = ioas->iopt.unmap(0, kU64Max, &unmapped, &why);
    if (!st) return reject_message(call, st.error(), why);
  } else {
    if (cmd.iova >= kU64Max || cmd.length >= kU64Max)
      return reject(call, EOVERFLOW, "iova {:#x} length {:#x}: must be below ULONG_MAX "
                    "(iova 0 length U64_MAX unmaps everything)", cmd.iova, cmd.length);
    TRY(unmap_iova(call, ioas->iopt, cmd.iova, cmd.length, &unmapped));
    if (unmapped == 0)
      return reject(call, ENOENT, "nothing is mapped in {:#x}..{:#x}", cmd.iova,
                    cmd.iova + (cmd.length - 1));
  }
  cmd.length = unmapped;
  call.detail += fmt::format(" -> unmapped={:#x}", unmapped);
  TRY(respond(call, sizeof(cmd)));
  return 0;
}

Result<long> ioas_change_process(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_ioas_change_process>();
  if (cmd.__reserved) return reject(call, EOPNOTSUPP, "__reserved {:#x}", cmd.__reserved);
  IommufdCtx& ctx = ctx_of(file);
  std::lock_guard lock(ctx.mu);
  // Only file-backed mappings can move to another process, and this emulator has none.
  for (const auto& [id, obj] : ctx.objects) {
    if (obj->type != ObjType::kIoas) continue;
    auto& ioas = static_cast<Ioas&>(*obj);
    std::lock_guard ilock(ioas.mu);
    if (!ioas.iopt.areas().empty()) {
      const iopt::Area& a = ioas.iopt.areas().begin()->second;
      return reject(call, EINVAL, "IOAS {:#x} maps user memory at iova {:#x} (vaddr {:#x}), "
                    "which cannot change process", id, a.iova, a.user_va());
    }
  }
  return 0;
}

}  // namespace ioas_ioctl

iopt::Pinner pinner_of(const IoctlCall& call) {
  return iopt::Pinner{call.env, call.caller.pid, call.caller.uid};
}

Status map_user_pages(Emulator& emu, IommufdCtx& ctx, Ioas& ioas, IoctlCall& call, u64 user_va,
                      u64 length, u64* iova, Prot prot, bool alloc_iova) {
  bool account_mm;
  {
    std::lock_guard lock(ctx.mu);
    account_mm = ctx.account_mm;
  }
  std::lock_guard lock(ioas.mu);
  std::string why;
  Status st = ioas.iopt.map_user_pages(emu.locked_memory(),
                                       pinner_of(call),
                                       account_mm, user_va, length, iova, prot, alloc_iova, &why);
  if (!st) return reject_message(call, st.error(), why);
  return {};
}

Status unmap_iova(IoctlCall& call, iopt::IoPagetable& iopt, u64 iova, u64 length,
                  u64* unmapped) {
  *unmapped = 0;
  if (length == 0) return reject(call, EINVAL, "iova {:#x}: length is zero", iova);
  u64 last;
  if (__builtin_add_overflow(iova, length - 1, &last))
    return reject(call, EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  std::string why;
  Status st = iopt.unmap(iova, last, unmapped, &why);
  if (!st) return reject_message(call, st.error(), why);
  return {};
}

}  // namespace vfio_emu::core
