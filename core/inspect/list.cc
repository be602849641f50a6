#include "core/inspect/list.h"

#include <functional>
#include <string>

#include "core/device.h"
#include "core/inspect/world.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/iommufd.h"
#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

namespace vfio_emu::core::inspect {
namespace {

std::string node_of(const File& f) {
  switch (f.kind()) {
    case NodeKind::kContainer: return "vfio/vfio";
    case NodeKind::kIommufd: return "iommu";
    case NodeKind::kGroup: return static_cast<const GroupFile&>(f).group->node_path();
    case NodeKind::kDevice:
      return "vfio/devices/" + static_cast<const DeviceFile&>(f).device->cdev_name();
  }
  return "?";
}

Json file_ref(const File* f) {
  if (f == nullptr) return nullptr;
  return {{"file", f->id()}, {"pid", f->opener()}};
}

// The open files of `kind` that `reaches` accepts (those of one container or iommufd context).
Json files_json(const World& w, NodeKind kind, const std::function<bool(const File&)>& reaches) {
  Json a = Json::array();
  for (const auto& f : w.files)
    if (f->kind() == kind && reaches(*f)) a.push_back(file_ref(f.get()));
  return a;
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

}  // namespace

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

Json list(Emulator& emu) {
  std::lock_guard lock(emu.mu);
  World w = gather(emu);
  Json j;
  j["units"] = Json::array();
  for (const auto& u : emu.topology().units) j["units"].push_back(unit_json(*u));
  j["enable_unsafe_noiommu_mode"] = emu.limits().enable_unsafe_noiommu_mode;

  j["groups"] = Json::array();
  j["devices"] = Json::array();
  for (const auto& g : emu.groups()) {
    Json gj;
    gj["id"] = g->id();
    gj["unit"] = g->noiommu() ? Json(nullptr) : Json(g->unit()->name());
    gj["model"] = g->noiommu() ? std::string("noiommu") : std::string(iommu::model_name(g->model()));
    gj["node"] = g->node_path();
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
      dj["noiommu"] = g->noiommu();
      {
        // The ids the device's config space holds (a model may have its own).
        std::lock_guard rlock(d->regions_mu);
        dj["vendor"] = hex(u64{d->config[0]} | u64{d->config[1]} << 8);
        dj["device"] = hex(u64{d->config[2]} | u64{d->config[3]} << 8);
      }
      dj["model"] = std::string(d->model->name());
      dj["model_state"] = d->model->state();
      {
        std::lock_guard rlock(d->regions_mu);
        dj["bar_mmap"] = d->bar_file != nullptr;
      }
      // The BARs whose stores `vfio-emu run` traps (DeviceModel::bar_stores_trapped).
      Json trapped = Json::array();
      for (u32 bar = 0; bar < 6; ++bar)
        if (d->model->bar_stores_trapped(bar)) trapped.push_back(bar);
      dj["trapped_bars"] = std::move(trapped);
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
    cj["files"] = files_json(w, NodeKind::kContainer, [&container = c](const File& f) {
      return static_cast<const ContainerFile&>(f).container == container;
    });
    cj["groups"] = Json::array();
    for (const Group* g : c->groups) cj["groups"].push_back(g->id());
    std::lock_guard clock(c->mu);
    if (!c->driver) {
      cj["iommu"] = nullptr;
    } else {
      cj["iommu"] = std::string(c->driver->name());
      cj["domains"] = Json::array();
      for (const auto& d : c->driver->domains()) cj["domains"].push_back(d->id);
      const Json own = c->driver->describe();
      for (auto it = own.begin(); it != own.end(); ++it) cj[it.key()] = it.value();
    }
    j["containers"].push_back(cj);
  }

  j["iommufd"] = Json::array();
  for (auto& [id, ctx] : w.contexts) {
    Json xj;
    xj["id"] = id;
    xj["files"] = files_json(w, NodeKind::kIommufd, [&context = ctx](const File& f) {
      return static_cast<const IommufdFile&>(f).ctx == context;
    });
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

}  // namespace vfio_emu::core::inspect
