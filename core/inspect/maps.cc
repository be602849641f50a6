#include "core/inspect/maps.h"

#include <fmt/core.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "core/inspect/leaf_runs.h"
#include "core/inspect/world.h"
#include "core/iommufd/ctx.h"

namespace vfio_emu::core::inspect {
namespace {

Json map_row(const std::string& source, u64 iova, u64 last, u64 vaddr, pid_t pid, Prot prot,
             const char* state) {
  return {{"source", source},     {"iova", hex(iova)}, {"last", hex(last)},
          {"size", last - iova + 1}, {"vaddr", hex(vaddr)}, {"pid", pid},
          {"prot", prot_name(prot)}, {"state", state}};
}

// Where a page of `maps` ended: the source of its last row ('c' container ID, 'i' iommufd
// context ID's IOAS SUB, 'd' domain ID) and the row's last IOVA. Sources come in this order
// (containers before contexts), so rows after the cursor are those of later sources and those
// of the same source starting after `last`. Written "c1:0x1fffff", "i8:2:0x2fff", "d3:0xfff".
struct MapCursor {
  char kind;
  u64 id, sub, last;
};

std::string cursor_text(const MapCursor& c) {
  return c.kind == 'i' ? fmt::format("i{}:{}:{:#x}", c.id, c.sub, c.last)
                       : fmt::format("{}{}:{:#x}", c.kind, c.id, c.last);
}

std::optional<MapCursor> parse_cursor(const std::string& text) {
  if (text.empty() || (text[0] != 'c' && text[0] != 'i' && text[0] != 'd')) return std::nullopt;
  MapCursor c{text[0], 0, 0, 0};
  const size_t fields = c.kind == 'i' ? 3 : 2;
  u64* out[3] = {&c.id, c.kind == 'i' ? &c.sub : &c.last, &c.last};
  size_t pos = 1;
  for (size_t i = 0; i < fields; ++i) {
    const size_t end = i + 1 < fields ? text.find(':', pos) : text.size();
    if (end == std::string::npos || end == pos) return std::nullopt;
    const std::string field = text.substr(pos, end - pos);
    char* stop = nullptr;
    errno = 0;
    *out[i] = std::strtoull(field.c_str(), &stop, i + 1 < fields ? 10 : 16);
    if (errno != 0 || *stop != '\0' || !std::isxdigit(static_cast<unsigned char>(field[0])))
      return std::nullopt;
    pos = end + 1;
  }
  return c;
}

// Rows up to `max`; once full, the next row offered is refused and tells that more follow.
struct MapRows {
  explicit MapRows(size_t max_rows) : max(max_rows) {}

  size_t max;
  Json rows = Json::array();
  std::optional<MapCursor> last;
  bool more = false;

  bool add(const MapCursor& at, Json row) {
    if (rows.size() >= max) {
      more = true;
      return false;
    }
    rows.push_back(std::move(row));
    last = at;
    return true;
  }
  Json result() {
    return Json{{"mappings", std::move(rows)},
                {"next", more && last ? Json(cursor_text(*last)) : Json(nullptr)}};
  }
};

}  // namespace

Result<Json> maps(Emulator& emu, const MapFilter& filter, const MapPage& page) {
  std::optional<MapCursor> after;
  if (page.after) {
    after = parse_cursor(*page.after);
    // A domain's pages and the others' are not positions in the same sequence.
    if (!after || (after->kind == 'd') != filter.domain.has_value() ||
        (filter.domain && after->id != *filter.domain))
      return err(EINVAL);
  }
  MapRows out(page.max);
  auto keep = [&](pid_t pid) { return !filter.pid || *filter.pid == pid; };

  if (filter.domain) {
    auto d = find_domain(emu, *filter.domain);
    if (!d) return err(ENOENT);
    auto mu = d->owner_mu.lock();
    if (!mu) return err(ENOENT);
    std::lock_guard lock(*mu);
    if (after && after->last == kU64Max) return out.result();
    const std::string source = "domain " + std::to_string(d->id);
    for_each_run(*d->hw, after ? after->last + 1 : 0, kU64Max, [&](const Run& r) {
      return out.add(MapCursor{'d', d->id, 0, r.last},
                     map_row(source, r.iova, r.last, r.output, 0, r.prot, "mapped"));
    });
    return out.result();
  }

  std::lock_guard lock(emu.mu);
  World w = gather(emu);
  if (filter.container && !w.containers.count(*filter.container)) return err(ENOENT);
  std::optional<std::pair<u64, u32>> ioas_key;
  if (filter.ioas) {
    const std::string& s = *filter.ioas;
    const size_t colon = s.find(':');
    char* end = nullptr;
    if (colon != std::string::npos) {
      const u64 ctx = std::strtoull(s.c_str(), &end, 0);
      const u32 ioas = static_cast<u32>(std::strtoul(s.c_str() + colon + 1, &end, 0));
      ioas_key = std::pair{ctx, ioas};
    } else {
      const u32 ioas = static_cast<u32>(std::strtoul(s.c_str(), &end, 0));
      std::vector<u64> matches;
      for (auto& [id, ctx] : w.contexts) {
        std::lock_guard xlock(ctx->mu);
        if (ctx->get<Ioas>(ioas, ObjType::kIoas)) matches.push_back(id);
      }
      if (matches.size() != 1) return err(matches.empty() ? ENOENT : EINVAL);
      ioas_key = std::pair{matches[0], ioas};
    }
    if (!w.contexts.count(ioas_key->first)) return err(ENOENT);
  }

  if (!ioas_key) {
    for (auto& [id, c] : w.containers) {
      if (filter.container && *filter.container != id) continue;
      if (after && (after->kind != 'c' || id < after->id)) continue;  // before the cursor
      if (out.more) break;
      std::lock_guard clock(c->mu);
      if (!c->driver) continue;
      const bool at_cursor = after && after->id == id;
      if (at_cursor && after->last == kU64Max) continue;
      const std::string source = "container " + std::to_string(id);
      const auto container_id = id;  // clang 14 cannot capture a structured binding
      c->driver->visit_mappings(at_cursor ? after->last + 1 : 0, filter.pid,
                                [&](const MappingView& m) {
        return out.add(MapCursor{'c', container_id, 0, m.last},
                       map_row(source, m.iova, m.last, m.vaddr, m.owner, m.prot, m.state));
      });
    }
  }
  if (!filter.container) {
    for (auto& [id, ctx] : w.contexts) {
      if (ioas_key && ioas_key->first != id) continue;
      if (after && after->kind == 'i' && id < after->id) continue;  // before the cursor
      if (out.more) break;
      std::lock_guard xlock(ctx->mu);
      for (const auto& [oid, obj] : ctx->objects) {
        if (obj->type != ObjType::kIoas || (ioas_key && ioas_key->second != oid)) continue;
        const bool at_cursor = after && after->kind == 'i' && after->id == id;
        if (at_cursor && oid < after->sub) continue;
        if (out.more) break;
        auto& ioas = static_cast<Ioas&>(*obj);
        std::lock_guard ilock(ioas.mu);
        const std::string source = fmt::format("iommufd {} ioas {}", id, oid);
        const char* state = ioas.hwpts.empty() ? "recorded" : "mapped";
        const auto& areas = ioas.iopt.areas();
        auto it = at_cursor && after->sub == oid ? areas.upper_bound(after->last) : areas.begin();
        for (; it != areas.end(); ++it) {
          const auto& a = it->second;
          if (keep(a.pages->source_pid) &&
              !out.add(MapCursor{'i', id, oid, a.last},
                       map_row(source, a.iova, a.last, a.user_va(), a.pages->source_pid, a.prot, state)))
            break;
        }
      }
    }
    if (ioas_key) {
      auto& ctx = w.contexts.at(ioas_key->first);
      std::lock_guard xlock(ctx->mu);
      if (!ctx->get<Ioas>(ioas_key->second, ObjType::kIoas)) return err(ENOENT);
    }
  }
  return out.result();
}

}  // namespace vfio_emu::core::inspect
