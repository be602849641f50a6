#include "core/inspect.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>

#include "core/device.h"
#include "core/reject.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/iommufd.h"
#include "core/spapr.h"
#include "core/type1.h"
#include "core/uapi/vfio.h"
#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

namespace vfio_emu::core::inspect {
namespace {

using iommu::IovaRange;
using iommu::LeafView;

// Addresses travel as hex strings: JSON readers such as jq hold numbers as doubles, which
// cannot carry a 64-bit address exactly.
std::string hex(u64 v) { return fmt::format("{:#x}", v); }

std::string prot_name(Prot p) {
  return std::string((p & iommu::kProtRead) ? "r" : "-") + ((p & iommu::kProtWrite) ? "w" : "-");
}

Json page_sizes_json(u64 bitmap) {
  Json a = Json::array();
  for (int b = 0; b < 64; ++b)
    if (bitmap & (u64{1} << b)) a.push_back(u64{1} << b);
  return a;
}

Json ranges_json(const std::vector<IovaRange>& rs) {
  Json a = Json::array();
  for (const IovaRange& r : rs) a.push_back({{"first", hex(r.first)}, {"last", hex(r.last)}});
  return a;
}

// Everything reachable, gathered under Emulator::mu.
struct World {
  std::vector<std::shared_ptr<File>> files;
  std::map<u64, std::shared_ptr<Container>> containers;
  std::map<u64, std::shared_ptr<IommufdCtx>> contexts;
};

World gather(Emulator& emu) {
  World w;
  w.files = emu.files();
  for (const auto& f : w.files) {
    if (f->kind() == NodeKind::kContainer) {
      auto& c = static_cast<ContainerFile&>(*f).container;
      w.containers[c->id()] = c;
    } else if (f->kind() == NodeKind::kIommufd) {
      auto& ctx = static_cast<IommufdFile&>(*f).ctx;
      w.contexts[ctx->id] = ctx;
    } else if (f->kind() == NodeKind::kDevice) {
      auto& df = static_cast<DeviceFile&>(*f);
      if (df.ictx) w.contexts[df.ictx->id] = df.ictx;
    }
  }
  for (const auto& g : emu.groups()) {
    if (g->container) w.containers[g->container->id()] = g->container;
    if (g->ictx) w.contexts[g->ictx->id] = g->ictx;
  }
  return w;
}

std::string node_of(const File& f) {
  switch (f.kind()) {
    case NodeKind::kContainer: return "vfio/vfio";
    case NodeKind::kIommufd: return "iommu";
    case NodeKind::kGroup: return "vfio/" + std::to_string(static_cast<const GroupFile&>(f).group->id());
    case NodeKind::kDevice:
      return "vfio/devices/" + static_cast<const DeviceFile&>(f).device->cdev_name();
  }
  return "?";
}

Json file_ref(const File* f) {
  if (f == nullptr) return nullptr;
  return {{"file", f->id()}, {"pid", f->opener()}};
}

Json unit_json(const iommu::Unit& u) {
  Json j;
  j["name"] = u.name();
  j["model"] = std::string(iommu::model_name(u.model()));
  j["page_sizes"] = page_sizes_json(u.page_sizes());
  j["reserved"] = ranges_json(u.reserved_regions());
  if (u.model() == iommu::Model::kVtd) {
    const auto& v = static_cast<const iommu::vtd::VtdUnit&>(u);
    j["aw_bits"] = v.config().aw_bits;
    j["levels"] = v.levels();
    j["max_domains"] = v.config().max_domains;
    j["domains_in_use"] = v.domains_in_use();
    j["split"] = v.config().split == iommu::SplitPolicy::kSplit ? "split" : "refuse";
    j["cap_reg"] = hex(v.cap_reg());
    j["ecap_reg"] = hex(v.ecap_reg());
  } else if (u.model() == iommu::Model::kTce) {
    const auto& t = static_cast<const iommu::tce::TceUnit&>(u);
    j["dma32_window"] = {{"start", hex(t.config().dma32_window_start)},
                         {"size", t.config().dma32_window_size}};
    j["ddw_start"] = hex(t.config().ddw_start);
    j["max_windows"] = t.config().max_windows;
    j["max_levels"] = t.config().max_levels;
  }
  return j;
}

// Which container, IOAS or domain a HwDomain serves (for the "domains" listing).
Json domain_summary(const HwDomain& d) {
  Json j;
  j["id"] = d.id;
  j["unit"] = d.unit->name();
  j["model"] = std::string(iommu::model_name(d.unit->model()));
  j["owner"] = d.owner;
  if (auto mu = d.owner_mu.lock()) {
    std::lock_guard lock(*mu);
    const auto s = d.hw->stats();
    j["levels"] = d.hw->levels();
    j["entries"] = s.entries;
    j["tables"] = s.tables;
    j["table_bytes"] = s.table_bytes;
    j["meta_bytes"] = s.meta_bytes;
    j["mapped_bytes"] = s.mapped_bytes;
    if (d.unit->model() == iommu::Model::kVtd)
      j["did"] = static_cast<const iommu::vtd::VtdDomain&>(*d.hw).domain_id();
  }
  return j;
}

std::shared_ptr<HwDomain> find_domain(Emulator& emu, u64 id) {
  for (auto& d : emu.domains())
    if (d->id == id) return d;
  return nullptr;
}

// Leaves merged into runs of contiguous IOVA, contiguous output and equal permissions.
struct Run {
  u64 iova, last, output;
  Prot prot;
};

// Calls `visit` for each present leaf intersecting [first, last], in IOVA order, until it
// returns false. Domain::walk cannot stop, so the range is walked in windows growing from 2 MiB:
// a page of a big table does not cost a walk of the whole rest of it.
void walk_until(const iommu::Domain& d, u64 first, u64 last,
                const std::function<bool(const LeafView&)>& visit) {
  bool stopped = false;
  u64 pos = first, span = u64{2} << 20;
  for (bool first_window = true;; first_window = false) {
    const u64 end = last - pos < span ? last : pos + (span - 1);
    const u64 window = pos;
    d.walk(pos, end, [&](const LeafView& l) {
      // A leaf across the window's start was visited with the window before.
      if (stopped || (!first_window && l.iova < window)) return;
      stopped = !visit(l);
    });
    if (stopped || end == last) return;
    pos = end + 1;
    if (span < (u64{1} << 62)) span *= 2;
  }
}

// The runs starting in [first, last], at most `max` of them; *more tells whether another
// follows. Every run returned is complete (its next leaf was seen, or the walk ended).
std::vector<Run> leaf_runs(const iommu::Domain& d, u64 first, u64 last, size_t max = SIZE_MAX,
                           bool* more = nullptr) {
  std::vector<Run> runs;
  bool stopped = false;
  walk_until(d, first, last, [&](const LeafView& l) {
    const Prot p = l.prot & iommu::kProtRW;
    if (!runs.empty()) {
      Run& r = runs.back();
      if (r.last + 1 == l.iova && r.output + (r.last - r.iova + 1) == l.output && r.prot == p) {
        r.last = l.iova + (l.size - 1);
        return true;
      }
    }
    if (runs.size() >= max) return !(stopped = true);
    runs.push_back(Run{l.iova, l.iova + (l.size - 1), l.output, p});
    return true;
  });
  if (more != nullptr) *more = stopped;
  return runs;
}

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

  bool full() const { return more || rows.size() >= max; }
  bool add(const MapCursor& at, Json row) {
    if (rows.size() >= max) {
      more = true;
      return false;
    }
    rows.push_back(std::move(row));
    last = at;
    return true;
  }
  // Runs of a page table (sPAPR TCEs, or a domain's leaves) after the cursor, as rows.
  void add_runs(const iommu::Domain& d, const std::optional<MapCursor>& from, char kind, u64 id,
                const std::string& source, pid_t pid, const char* state) {
    if (more) return;
    u64 first = 0;
    if (from && from->kind == kind && from->id == id) {
      if (from->last == iommu::kU64Max) return;
      first = from->last + 1;
    }
    bool runs_more = false;
    for (const Run& r : leaf_runs(d, first, iommu::kU64Max, max - rows.size(), &runs_more))
      add(MapCursor{kind, id, 0, r.last}, map_row(source, r.iova, r.last, r.output, pid, r.prot, state));
    more = more || runs_more;
  }
  Json result() {
    return Json{{"mappings", std::move(rows)},
                {"next", more && last ? Json(cursor_text(*last)) : Json(nullptr)}};
  }
};

}  // namespace

// ---- list ------------------------------------------------------------------------------------

Json list(Emulator& emu) {
  std::lock_guard lock(emu.mu);
  World w = gather(emu);
  Json j;
  j["units"] = Json::array();
  for (const auto& u : emu.topology().units) j["units"].push_back(unit_json(*u));

  j["groups"] = Json::array();
  j["devices"] = Json::array();
  for (const auto& g : emu.groups()) {
    Json gj;
    gj["id"] = g->id();
    gj["unit"] = g->unit()->name();
    gj["model"] = std::string(iommu::model_name(g->model()));
    gj["devices"] = Json::array();
    bool owned = false;
    for (const auto& d : g->devices()) {
      gj["devices"].push_back(d->spec().bdf);
      owned |= d->bound_file != nullptr;
    }
    gj["open_by"] = file_ref(g->open_file);
    gj["container"] = g->container ? Json(g->container->id()) : Json(nullptr);
    gj["iommufd"] = g->ictx ? Json(g->ictx->id) : Json(nullptr);
    gj["viable"] = g->has_iommu() || !owned;
    j["groups"].push_back(gj);
    for (const auto& d : g->devices()) {
      Json dj;
      dj["bdf"] = d->spec().bdf;
      dj["cdev"] = d->cdev_name();
      dj["group"] = g->id();
      dj["vendor"] = hex(d->spec().vendor);
      dj["device"] = hex(d->spec().device);
      dj["cdev_opens"] = d->cdev_opens;
      if (d->bound_file != nullptr) {
        const auto& df = static_cast<const DeviceFile&>(*d->bound_file);
        Json b = file_ref(&df);
        b["iommufd"] = df.ictx ? Json(df.ictx->id) : Json(nullptr);
        b["devid"] = df.devid;
        b["pt_id"] = df.pt_id;
        dj["bound"] = b;
      } else {
        dj["bound"] = nullptr;
      }
      dj["bad_state"] = d->bad_state;
      j["devices"].push_back(dj);
    }
  }

  j["containers"] = Json::array();
  for (auto& [id, c] : w.containers) {
    Json cj;
    cj["id"] = id;
    cj["files"] = Json::array();
    for (const auto& f : w.files)
      if (f->kind() == NodeKind::kContainer && static_cast<ContainerFile&>(*f).container == c)
        cj["files"].push_back(file_ref(f.get()));
    cj["groups"] = Json::array();
    for (const Group* g : c->groups) cj["groups"].push_back(g->id());
    std::lock_guard clock(c->mu);
    if (!c->driver) {
      cj["iommu"] = nullptr;
    } else {
      cj["iommu"] = std::string(c->driver->name());
      cj["domains"] = Json::array();
      for (const auto& d : c->driver->domains()) cj["domains"].push_back(d->id);
      if (c->driver->type() == uapi::VFIO_TYPE1_IOMMU ||
          c->driver->type() == uapi::VFIO_TYPE1v2_IOMMU) {
        const auto& t1 = static_cast<const Type1Driver&>(*c->driver);
        cj["mappings"] = t1.dmas().size();
        cj["iova_pgsizes"] = hex(t1.pgsize_bitmap());
        cj["iova_ranges"] = ranges_json(t1.iova_list());
      } else {
        const auto& sp = static_cast<const SpaprDriver&>(*c->driver);
        cj["owner_pid"] = sp.owner();
        cj["enabled"] = sp.enabled();
        cj["default_window_pending"] = sp.default_window_pending();
        cj["windows"] = Json::array();
        for (const auto& win : sp.windows())
          cj["windows"].push_back({{"slot", win.slot},
                                   {"start", hex(win.bus_start)},
                                   {"size", win.size},
                                   {"page_shift", win.page_shift},
                                   {"levels", win.levels}});
        cj["registered"] = Json::array();
        for (const auto& r : sp.regions())
          cj["registered"].push_back(
              {{"vaddr", hex(r.vaddr)}, {"size", r.size}, {"listed", r.listed}});
        cj["locked_bytes"] = sp.locked_bytes();
      }
    }
    j["containers"].push_back(cj);
  }

  j["iommufd"] = Json::array();
  for (auto& [id, ctx] : w.contexts) {
    Json xj;
    xj["id"] = id;
    xj["files"] = Json::array();
    for (const auto& f : w.files)
      if (f->kind() == NodeKind::kIommufd && static_cast<IommufdFile&>(*f).ctx == ctx)
        xj["files"].push_back(file_ref(f.get()));
    std::lock_guard xlock(ctx->mu);
    xj["compat_ioas"] = ctx->vfio_ioas ? Json(ctx->vfio_ioas->id) : Json(nullptr);
    xj["rlimit_mode"] = ctx->account_mm ? "process" : "user";
    xj["objects"] = Json::array();
    for (const auto& [oid, obj] : ctx->objects) {
      Json oj{{"id", oid}, {"type", std::string(obj_type_name(obj->type))}, {"users", obj->users}};
      if (obj->type == ObjType::kIoas) {
        auto& ioas = static_cast<Ioas&>(*obj);
        std::lock_guard ilock(ioas.mu);
        oj["areas"] = ioas.iopt.areas().size();
        oj["iova_alignment"] = ioas.iopt.iova_alignment();
        oj["hwpts"] = Json::array();
        for (const Hwpt* h : ioas.hwpts) oj["hwpts"].push_back(h->id);
      } else if (obj->type == ObjType::kHwptPaging) {
        auto& h = static_cast<Hwpt&>(*obj);
        oj["ioas"] = h.ioas ? Json(h.ioas->id) : Json(nullptr);
        oj["domain"] = h.domain ? Json(h.domain->id) : Json(nullptr);
        oj["unit"] = h.domain ? Json(h.domain->unit->name()) : Json(nullptr);
        oj["auto"] = h.auto_domain;
      } else if (obj->type == ObjType::kDevice) {
        auto& d = static_cast<IommufdDevice&>(*obj);
        oj["bdf"] = d.dev->spec().bdf;
        oj["hwpt"] = d.hwpt ? Json(d.hwpt->id) : Json(nullptr);
      }
      xj["objects"].push_back(oj);
    }
    j["iommufd"].push_back(xj);
  }

  j["domains"] = Json::array();
  for (const auto& d : emu.domains()) j["domains"].push_back(domain_summary(*d));

  j["files"] = Json::array();
  for (const auto& f : w.files)
    j["files"].push_back({{"id", f->id()},
                          {"node", node_of(*f)},
                          {"kind", std::string(node_kind_name(f->kind()))},
                          {"pid", f->opener()}});
  return j;
}

// ---- maps ------------------------------------------------------------------------------------

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
    out.add_runs(*d->hw, after, 'd', d->id, "domain " + std::to_string(d->id), 0, "mapped");
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
      const std::string source = "container " + std::to_string(id);
      if (c->driver->type() == uapi::VFIO_TYPE1_IOMMU ||
          c->driver->type() == uapi::VFIO_TYPE1v2_IOMMU) {
        const auto& dmas = static_cast<const Type1Driver&>(*c->driver).dmas();
        auto it = after && after->id == id ? dmas.upper_bound(after->last) : dmas.begin();
        for (; it != dmas.end(); ++it) {
          const Type1Dma& dma = it->second;
          if (!keep(dma.owner)) continue;
          const char* state =
              dma.vaddr_invalid ? "vaddr-invalid" : dma.iommu_mapped ? "mapped" : "recorded";
          if (!out.add(MapCursor{'c', id, 0, dma.last()},
                       map_row(source, dma.iova, dma.last(), dma.vaddr, dma.owner, dma.prot, state)))
            break;
        }
      } else {
        // sPAPR keeps no record of MAP calls: the TCEs are the mappings.
        const auto& sp = static_cast<const SpaprDriver&>(*c->driver);
        if (!sp.domain() || !keep(sp.owner())) continue;
        out.add_runs(*sp.domain()->hw, after, 'c', id, source, sp.owner(), "mapped");
      }
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

// ---- page tables -----------------------------------------------------------------------------

Result<Json> page_table(Emulator& emu, u64 domain, u64 first, u64 last, size_t max) {
  auto d = find_domain(emu, domain);
  if (!d) return err(ENOENT);
  auto mu = d->owner_mu.lock();
  if (!mu) return err(ENOENT);
  std::lock_guard lock(*mu);
  Json j;
  j["domain"] = d->id;
  j["unit"] = d->unit->name();
  j["model"] = std::string(iommu::model_name(d->unit->model()));
  j["levels"] = d->hw->levels();
  // The first leaf that did not fit: where the next page starts.
  std::optional<u64> next;
  size_t rows = 0;
  if (d->unit->model() == iommu::Model::kTce) {
    const auto& tce = static_cast<const iommu::tce::TceDomain&>(*d->hw);
    const auto& windows = tce.windows();
    j["windows"] = Json::array();
    for (const auto& w : windows) {
      Json wj{{"slot", w.slot},           {"start", hex(w.bus_start)}, {"size", w.size},
              {"page_shift", w.page_shift}, {"levels", w.levels},     {"level_entries", u64{1} << w.level_bits},
              {"table_bytes", w.table_bytes}};
      wj["entries"] = Json::array();
      j["windows"].push_back(wj);
    }
    // Listed by slot, filled in bus-address order: a page ends at one address.
    std::vector<size_t> by_address(windows.size());
    for (size_t i = 0; i < by_address.size(); ++i) by_address[i] = i;
    std::sort(by_address.begin(), by_address.end(),
              [&](size_t a, size_t b) { return windows[a].bus_start < windows[b].bus_start; });
    for (const size_t i : by_address) {
      const auto& w = windows[i];
      Json& entries = j["windows"][i]["entries"];
      const u64 lo = std::max(first, w.bus_start);
      const u64 hi = std::min(last, w.bus_start + (w.size - 1));
      if (lo > hi || next) continue;
      walk_until(tce, lo, hi, [&](const LeafView& l) {
        if (rows == max) return next = l.iova, false;
        ++rows;
        entries.push_back({{"index", (l.iova - w.bus_start) >> w.page_shift},
                           {"bus", hex(l.iova)},
                           {"tce", hex(l.path[static_cast<size_t>(l.top_level - 1)])},
                           {"output", hex(l.output)},
                           {"prot", prot_name(l.prot)}});
        return true;
      });
    }
  } else {
    j["rows"] = Json::array();
    walk_until(*d->hw, first, last, [&](const LeafView& l) {
      if (rows == max) return next = l.iova, false;
      ++rows;
      Json entries = Json::array();
      for (int i = 0; i < l.top_level; ++i) entries.push_back(hex(l.path[static_cast<size_t>(i)]));
      j["rows"].push_back({{"iova", hex(l.iova)},
                           {"iova_pfn", hex(l.iova >> 12)},
                           {"level", l.level},
                           {"size", l.size},
                           {"output", hex(l.output)},
                           {"prot", prot_name(l.prot)},
                           {"entries", entries}});
      return true;
    });
  }
  j["truncated"] = next.has_value();
  j["next"] = next ? Json(hex(*next)) : Json(nullptr);
  return j;
}

Result<Json> translate(Emulator& emu, u64 domain, u64 iova, iommu::Access access) {
  auto d = find_domain(emu, domain);
  if (!d) return err(ENOENT);
  auto mu = d->owner_mu.lock();
  if (!mu) return err(ENOENT);
  std::lock_guard lock(*mu);
  const iommu::Translation t = d->hw->translate(iova, access);
  Json j;
  j["domain"] = d->id;
  j["unit"] = d->unit->name();
  j["model"] = std::string(iommu::model_name(d->unit->model()));
  j["iova"] = hex(iova);
  j["access"] = access == iommu::Access::kRead ? "read" : "write";
  j["steps"] = Json::array();
  for (int i = 0; i < t.nsteps; ++i) {
    const auto& s = t.steps[static_cast<size_t>(i)];
    j["steps"].push_back({{"level", s.level},
                          {"table", hex(s.table)},
                          {"index", s.index},
                          {"entry", hex(s.entry)}});
  }
  j["ok"] = t.ok();
  if (t.ok()) {
    j["output"] = hex(t.output);
    j["page_size"] = t.page_size;
    j["prot"] = prot_name(t.prot);
  } else {
    Json f{{"reason", std::string(iommu::fault_reason_name(t.fault))}, {"level", t.fault_level}};
    if (d->unit->model() == iommu::Model::kVtd) {
      // What a VT-d fault-recording register would hold (QEMU's numbering).
      using iommu::vtd::FaultCode;
      const FaultCode code = t.fault == iommu::FaultReason::kOutOfAperture
                                 ? FaultCode::kAddrBeyondMgaw
                             : access == iommu::Access::kRead ? FaultCode::kRead
                                                              : FaultCode::kWrite;
      f["vtd_fault_reason"] = hex(static_cast<u64>(code));
    }
    j["fault"] = f;
  }
  return j;
}

// ---- stats -----------------------------------------------------------------------------------

Json stats(Emulator& emu) {
  Json j;
  j["units"] = Json::array();
  const auto domains = emu.domains();
  for (const auto& u : emu.topology().units) {
    Json uj{{"name", u->name()}, {"model", std::string(iommu::model_name(u->model()))}};
    u64 entries = 0, tables = 0, bytes = 0, n = 0;
    for (const auto& d : domains) {
      if (d->unit != u) continue;
      auto mu = d->owner_mu.lock();
      if (!mu) continue;
      std::lock_guard lock(*mu);
      const auto s = d->hw->stats();
      entries += s.entries;
      tables += s.tables;
      bytes += s.table_bytes;
      ++n;
    }
    uj["domains"] = n;
    uj["entries"] = entries;
    uj["tables"] = tables;
    uj["table_bytes"] = bytes;
    j["units"].push_back(uj);
  }
  j["domains"] = Json::array();
  for (const auto& d : domains) j["domains"].push_back(domain_summary(*d));
  j["ioctls"] = Json::array();
  const auto all = all_commands();
  const auto& counters = emu.counters();
  for (size_t i = 0; i < all.size() && i < CommandCounters::kMaxCommands; ++i) {
    const u64 calls = counters.by_command[i].calls.load();
    if (calls == 0) continue;
    Json cj{{"command", std::string(all[i].name)},
            {"node", std::string(node_kind_name(all[i].node))},
            {"calls", calls},
            {"errors", counters.by_command[i].errors.load()}};
    if (all[i].backend != Backend::kNone) cj["backend"] = std::string(backend_name(all[i].backend));
    j["ioctls"].push_back(cj);
  }
  j["unknown_ioctls"] = {{"calls", counters.unknown.calls.load()},
                         {"errors", counters.unknown.errors.load()}};
  // Negative keys are iommufd's per-user counts (core/iommufd/iommufd.h).
  j["locked_memory"] = Json::array();
  for (const auto& [key, bytes] : emu.locked_memory().charges()) {
    if (key >= 0)
      j["locked_memory"].push_back({{"pid", key}, {"bytes", bytes}});
    else
      j["locked_memory"].push_back({{"uid", -1 - static_cast<long long>(key)}, {"bytes", bytes}});
  }
  return j;
}

// ---- check -----------------------------------------------------------------------------------

namespace {

// Compares the leaves of `hw` with `want` (runs sorted by IOVA; adjacent runs are merged first,
// as the page table cannot tell two abutting maps from one).
void compare(const std::string& what, const iommu::Domain& hw, std::vector<Run> want,
             Json& differences) {
  std::sort(want.begin(), want.end(), [](const Run& a, const Run& b) { return a.iova < b.iova; });
  std::vector<Run> merged;
  for (const Run& r : want) {
    if (!merged.empty() && merged.back().last + 1 == r.iova &&
        merged.back().output + (merged.back().last - merged.back().iova + 1) == r.output &&
        merged.back().prot == r.prot) {
      merged.back().last = r.last;
    } else {
      merged.push_back(r);
    }
  }
  const std::vector<Run> have = leaf_runs(hw, 0, iommu::kU64Max);
  size_t i = 0, k = 0;
  auto report = [&](const char* kind, const Run& r) {
    if (differences.size() >= 100) return;
    differences.push_back({{"where", what},
                           {"kind", kind},
                           {"iova", hex(r.iova)},
                           {"last", hex(r.last)},
                           {"output", hex(r.output)},
                           {"prot", prot_name(r.prot)}});
  };
  while (i < merged.size() || k < have.size()) {
    if (k == have.size()) {
      report("missing from the page table", merged[i++]);
    } else if (i == merged.size()) {
      report("in the page table but not recorded", have[k++]);
    } else if (merged[i].iova == have[k].iova && merged[i].last == have[k].last &&
               merged[i].output == have[k].output && merged[i].prot == have[k].prot) {
      ++i;
      ++k;
    } else if (merged[i].iova <= have[k].iova) {
      report("recorded but mapped differently", merged[i++]);
    } else {
      report("in the page table but not recorded", have[k++]);
    }
  }
}

}  // namespace

Json check(Emulator& emu) {
  Json differences = Json::array();
  u64 checked = 0;
  std::lock_guard lock(emu.mu);
  World w = gather(emu);
  for (auto& [id, c] : w.containers) {
    std::lock_guard clock(c->mu);
    if (!c->driver) continue;
    const std::string where = "container " + std::to_string(id);
    if (c->driver->type() == uapi::VFIO_TYPE1_IOMMU ||
        c->driver->type() == uapi::VFIO_TYPE1v2_IOMMU) {
      const auto& t1 = static_cast<const Type1Driver&>(*c->driver);
      std::vector<Run> want;
      for (const auto& [iova, dma] : t1.dmas())
        if (dma.iommu_mapped) want.push_back(Run{dma.iova, dma.last(), dma.output, dma.prot});
      for (const auto& d : t1.domains()) {
        compare(where + " domain " + std::to_string(d->id), *d->hw, want, differences);
        ++checked;
      }
    } else {
      // Every TCE of a v2 container must point into memory registered with it.
      const auto& sp = static_cast<const SpaprDriver&>(*c->driver);
      if (!sp.domain() || !sp.v2()) continue;
      ++checked;
      for (const Run& r : leaf_runs(*sp.domain()->hw, 0, iommu::kU64Max)) {
        const u64 out_last = r.output + (r.last - r.iova);
        bool inside = false;
        for (const auto& reg : sp.regions()) inside |= r.output >= reg.vaddr && out_last <= reg.last();
        if (!inside && differences.size() < 100)
          differences.push_back({{"where", where + " domain " + std::to_string(sp.domain()->id)},
                                 {"kind", "TCE outside registered memory"},
                                 {"iova", hex(r.iova)},
                                 {"last", hex(r.last)},
                                 {"output", hex(r.output)},
                                 {"prot", prot_name(r.prot)}});
      }
    }
  }
  for (auto& [id, ctx] : w.contexts) {
    std::lock_guard xlock(ctx->mu);
    for (const auto& [oid, obj] : ctx->objects) {
      if (obj->type != ObjType::kIoas) continue;
      auto& ioas = static_cast<Ioas&>(*obj);
      std::lock_guard ilock(ioas.mu);
      std::vector<Run> want;
      for (const auto& [iova, a] : ioas.iopt.areas()) want.push_back(Run{a.iova, a.last, a.user_va(), static_cast<Prot>(a.prot & iommu::kProtRW)});
      for (const Hwpt* h : ioas.hwpts) {
        if (!h->domain) continue;
        compare(fmt::format("iommufd {} ioas {} hwpt {} domain {}", id, oid, h->id, h->domain->id),
                *h->domain->hw, want, differences);
        ++checked;
      }
    }
  }
  return {{"ok", differences.empty()}, {"checked", checked}, {"differences", differences}};
}

// ---- trace and faults ------------------------------------------------------------------------

Json trace_record(const TraceRecord& r) {
  Json j{{"seq", r.seq},       {"time", r.time},          {"pid", r.pid},
         {"tid", r.tid},       {"node", r.node.str()},          {"command", r.command.empty() ? fmt::format("ioctl {:#x}", r.cmd) : std::string(r.command)},
         {"cmd", hex(r.cmd)},  {"arg", hex(r.arg)},       {"detail", r.detail.str()}};
  if (r.result >= 0) {
    j["result"] = r.result;
  } else {
    j["result"] = -1;
    j["errno"] = std::string(errno_name(static_cast<int>(-r.result)));
  }
  return j;
}

Json fault_record(const FaultRecord& r) {
  return {{"seq", r.seq},
          {"time", r.time},
          {"device", r.device},
          {"domain", r.domain},
          {"unit", r.unit},
          {"iova", hex(r.iova)},
          {"access", r.access == iommu::Access::kRead ? "read" : "write"},
          {"reason", std::string(iommu::fault_reason_name(r.reason))},
          {"level", r.level},
          {"hw_code", hex(r.hw_code)}};
}

}  // namespace vfio_emu::core::inspect
