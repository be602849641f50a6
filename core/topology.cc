#include "core/topology.h"

#include <fmt/core.h>
#include <toml++/toml.h>

#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "devices/device_model.h"
#include "iommu/nop/nop.h"
#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

namespace vfio_emu::core {
namespace {

using iommu::kU64Max;

constexpr iommu::IovaRange kMsiWindow{0xfee00000, 0xfeefffff};

bool valid_bdf(const std::string& s) {
  // dddd:bb:dd.f
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11})
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  // Device numbers are 5 bits (00..1f), functions 3 (0..7).
  return s[11] <= '7' && std::stoul(s.substr(8, 2), nullptr, 16) <= 0x1f;
}

struct Parser {
  std::string error;

  bool fail(const std::string& msg) {
    if (error.empty()) error = msg;
    return false;
  }

  template <class T>
  bool get_int(const toml::table& t, const char* key, T* out, const std::string& where) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return true;
    auto v = n->value<int64_t>();
    if (!v || *v < 0) return fail(fmt::format("{}: '{}' must be a non-negative integer", where, key));
    *out = static_cast<T>(*v);
    if (static_cast<int64_t>(*out) != *v) return fail(fmt::format("{}: '{}' is too large", where, key));
    return true;
  }

  bool get_size(const toml::table& t, const char* key, u64* out, const std::string& where) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return true;
    if (auto i = n->value<int64_t>()) {
      if (*i <= 0) return fail(fmt::format("{}: '{}' must be positive", where, key));
      *out = static_cast<u64>(*i);
      return true;
    }
    auto s = n->value<std::string>();
    if (!s || !parse_size(*s, out))
      return fail(fmt::format("{}: '{}' must be a size like \"4K\" or \"1G\"", where, key));
    return true;
  }

  bool get_page_sizes(const toml::table& t, u64* out, const std::string& where) {
    const toml::node* n = t.get("page_sizes");
    if (n == nullptr) return true;
    const toml::array* a = n->as_array();
    if (a == nullptr) return fail(where + ": 'page_sizes' must be an array like [\"4K\", \"2M\"]");
    u64 bits = 0;
    for (const toml::node& e : *a) {
      auto s = e.value<std::string>();
      u64 size = 0;
      if (!s || !parse_size(*s, &size) || (size & (size - 1)) != 0)
        return fail(where + ": 'page_sizes' entries must be power-of-two sizes like \"4K\"");
      bits |= size;
    }
    *out = bits;
    return true;
  }

  bool get_reserved(const toml::table& t, std::vector<iommu::IovaRange>* out,
                    const std::string& where) {
    const toml::node* n = t.get("reserved");
    if (n == nullptr) return true;
    const toml::array* a = n->as_array();
    if (a == nullptr) return fail(where + ": 'reserved' must be an array of {first, last}");
    out->clear();
    for (const toml::node& e : *a) {
      const toml::table* r = e.as_table();
      if (r == nullptr) return fail(where + ": 'reserved' entries must be {first = .., last = ..}");
      u64 first = 0, last = 0;
      // TOML integers are signed 64-bit: addresses above 2^63 cannot be written in a reserved
      // range; none of the real reserved regions (MSI windows, holes) is up there.
      if (!get_int(*r, "first", &first, where) || !get_int(*r, "last", &last, where)) return false;
      if (!r->contains("first") || !r->contains("last") || first > last)
        return fail(where + ": each reserved range needs first <= last");
      out->push_back(iommu::IovaRange{first, last});
    }
    return true;
  }

  std::shared_ptr<iommu::Unit> unit(const toml::table& t, size_t index) {
    std::string where = fmt::format("iommu #{}", index + 1);
    auto name = t["name"].value<std::string>();
    auto model = t["model"].value<std::string>();
    if (!name || name->empty()) return fail(where + ": 'name' is required"), nullptr;
    where = fmt::format("iommu '{}'", *name);
    if (!model) return fail(where + ": 'model' is required (vtd, tce or nop)"), nullptr;
    if (*model == "vtd") {
      iommu::vtd::VtdConfig cfg;
      cfg.name = *name;
      cfg.reserved = {kMsiWindow};
      u64 sizes = 4096 | (u64{1} << 21) | (u64{1} << 30);
      if (!get_int(t, "aw_bits", &cfg.aw_bits, where) ||
          !get_int(t, "max_domains", &cfg.max_domains, where) ||
          !get_page_sizes(t, &sizes, where) || !get_reserved(t, &cfg.reserved, where))
        return nullptr;
      if ((sizes & 4096) == 0 || (sizes & ~(4096 | (u64{1} << 21) | (u64{1} << 30))))
        return fail(where + ": VT-d page sizes are \"4K\" (required), \"2M\" and \"1G\""), nullptr;
      cfg.page_2m = (sizes >> 21) & 1;
      cfg.page_1g = (sizes >> 30) & 1;
      if (auto split = t["split"].value<std::string>()) {
        if (*split == "split")
          cfg.split = iommu::SplitPolicy::kSplit;
        else if (*split == "refuse")
          cfg.split = iommu::SplitPolicy::kRefuse;
        else
          return fail(where + ": 'split' is \"split\" or \"refuse\""), nullptr;
      }
      if (auto sc = t["snoop_control"].value<bool>()) cfg.snoop_control = *sc;
      if (const toml::node* ir = t.get("interrupt_remapping")) {
        const auto* v = ir->as_boolean();  // not value<bool>(), which takes 1 for true
        if (v == nullptr)
          return fail(where + ": 'interrupt_remapping' must be true or false"), nullptr;
        cfg.interrupt_remapping = v->get();
      }
      auto unit = iommu::vtd::VtdUnit::create(cfg);
      if (!unit)
        return fail(where + ": aw_bits must be 39, 48 or 57 and max_domains 16, 64, 256, 1024, "
                            "4096, 16384 or 65536"),
               nullptr;
      return unit.take();
    }
    if (*model == "tce") {
      iommu::tce::TceConfig cfg;
      cfg.name = *name;
      if (!get_size(t, "dma32_window_size", &cfg.dma32_window_size, where) ||
          !get_int(t, "dma32_window_start", &cfg.dma32_window_start, where) ||
          !get_int(t, "ddw_start", &cfg.ddw_start, where) ||
          !get_page_sizes(t, &cfg.page_sizes, where) ||
          !get_int(t, "max_windows", &cfg.max_windows, where) ||
          !get_int(t, "max_levels", &cfg.max_levels, where) ||
          !get_reserved(t, &cfg.reserved, where))
        return nullptr;
      auto unit = iommu::tce::TceUnit::create(cfg);
      if (!unit)
        return fail(where + ": dma32_window_size must be a power of two, page_sizes among "
                            "4K/64K/2M/16M/256M/1G/16G, max_windows >= 1, max_levels 1..5"),
               nullptr;
      return unit.take();
    }
    if (*model == "nop") return std::make_shared<iommu::nop::NopUnit>(*name);
    return fail(where + ": model must be vtd, tce or nop"), nullptr;
  }

  bool limits(const toml::node& n, Limits* out) {
    const toml::table* t = n.as_table();
    if (t == nullptr) return fail("[limits] must be a table");
    const std::string where = "limits";
    for (auto [key, field] : {std::pair{"allow_unsafe_interrupts", &out->allow_unsafe_interrupts},
                              {"enable_unsafe_noiommu_mode", &out->enable_unsafe_noiommu_mode}}) {
      const toml::node* a = t->get(key);
      if (a == nullptr) continue;
      const auto* v = a->as_boolean();
      if (v == nullptr) return fail(fmt::format("limits: '{}' must be true or false", key));
      *field = v->get();
    }
    return get_int(*t, "dma_entry_limit", &out->dma_entry_limit, where) &&
           get_size(*t, "table_memory", &out->table_memory, where) &&
           get_int(*t, "iommufd_objects", &out->iommufd_objects, where) &&
           get_int(*t, "ioas_mappings", &out->ioas_mappings, where) &&
           get_int(*t, "open_files_per_uid", &out->open_files_per_uid, where);
  }

  bool device(const toml::node& n, DeviceSpec* d, const std::string& where) {
    if (auto s = n.value<std::string>()) {
      d->bdf = *s;
    } else if (const toml::table* t = n.as_table()) {
      auto bdf = (*t)["bdf"].value<std::string>();
      if (!bdf) return fail(where + ": a device table needs 'bdf'");
      d->bdf = *bdf;
      if (!get_int(*t, "vendor", &d->vendor, where) || !get_int(*t, "device", &d->device, where) ||
          !get_int(*t, "class_code", &d->class_code, where))
        return false;
      if (auto f = (*t)["fail_reset"].value<bool>()) d->fail_reset = *f;
      if (const toml::node* h = t->get("hot_reset")) {
        const auto v = h->value<std::string>();
        if (v == "auto") d->hot_reset = HotReset::kAuto;
        else if (v == "slot") d->hot_reset = HotReset::kSlot;
        else if (v == "none") d->hot_reset = HotReset::kNone;
        else return fail(where + ": 'hot_reset' must be \"auto\", \"slot\" or \"none\"");
      }
      if (const toml::node* m = t->get("model")) {
        auto name = m->value<std::string>();
        if (!name) return fail(where + ": 'model' must be a string");
        if (!devices::make_device_model(*name, devices::PciIds{}))
          return fail(fmt::format("{}: unknown device model '{}' (known: {})", where, *name,
                                  devices::known_models()));
        d->model = *name;
      }
    } else {
      return fail(where + ": devices are BDF strings or {bdf = ...} tables");
    }
    if (!valid_bdf(d->bdf))
      return fail(fmt::format("{}: '{}' is not a PCI address like 0000:00:01.0", where, d->bdf));
    return true;
  }
};

}  // namespace

bool parse_size(const std::string& text, u64* out) {
  if (text.empty()) return false;
  size_t pos = 0;
  u64 v = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
    if (v > (kU64Max - 9) / 10) return false;
    v = v * 10 + static_cast<u64>(text[pos++] - '0');
  }
  if (pos == 0) return false;
  int shift = 0;
  if (pos < text.size()) {
    switch (std::toupper(static_cast<unsigned char>(text[pos]))) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: return false;
    }
    ++pos;
    if (pos < text.size() && (text[pos] == 'i' || text[pos] == 'I')) ++pos;
    if (pos < text.size() && (text[pos] == 'B' || text[pos] == 'b')) ++pos;
    if (pos != text.size()) return false;
  }
  if (shift != 0 && (v >> (64 - shift)) != 0) return false;
  *out = v << shift;
  return v != 0;
}

PciAddress pci_address(const std::string& bdf) {
  PciAddress a;
  a.segment = static_cast<u16>(std::stoul(bdf.substr(0, 4), nullptr, 16));
  a.bus = static_cast<u8>(std::stoul(bdf.substr(5, 2), nullptr, 16));
  const auto dev = std::stoul(bdf.substr(8, 2), nullptr, 16);
  const auto fn = std::stoul(bdf.substr(11, 1), nullptr, 16);
  a.devfn = static_cast<u8>(((dev & 0x1f) << 3) | (fn & 7));
  return a;
}

const std::shared_ptr<iommu::Unit>* Topology::unit(const std::string& name) const {
  for (const auto& u : units)
    if (u->name() == name) return &u;
  return nullptr;
}

Topology Topology::builtin() {
  Topology t;
  iommu::vtd::VtdConfig vtd;
  vtd.name = "dmar0";
  vtd.reserved = {kMsiWindow};
  t.units.push_back(iommu::vtd::VtdUnit::create(vtd).take());
  iommu::tce::TceConfig tce;
  tce.name = "phb0";
  t.units.push_back(iommu::tce::TceUnit::create(tce).take());
  t.units.push_back(std::make_shared<iommu::nop::NopUnit>("nop0"));

  auto group = [&](u32 id, const char* unit, const char* bdf, const char* model = "testdev") {
    GroupSpec g;
    g.id = id;
    g.iommu = unit;
    DeviceSpec d;
    d.bdf = bdf;
    d.model = model;
    d.cdev_index = static_cast<u32>(t.groups.size());
    g.devices.push_back(d);
    t.groups.push_back(g);
  };
  group(1, "dmar0", "0000:00:01.0");
  group(2, "dmar0", "0000:00:02.0");
  group(3, "phb0", "0001:00:00.0");
  group(4, "nop0", "0000:00:04.0");
  group(5, "dmar0", "0000:00:05.0", "ioat");  // an Intel I/OAT DMA engine (devices/ioat/)
  group(0, "", "0000:00:06.0");                // behind no IOMMU
  t.groups.back().noiommu = true;
  return t;
}

std::optional<Topology> Topology::parse(const std::string& toml_text, std::string* error) {
  toml::table root;
  try {
    root = toml::parse(toml_text);
  } catch (const toml::parse_error& e) {
    *error = fmt::format("line {}: {}", e.source().begin.line, e.description());
    return std::nullopt;
  }
  Parser p;
  Topology t;
  if (const toml::array* units = root["iommu"].as_array()) {
    for (size_t i = 0; i < units->size(); ++i) {
      const toml::table* ut = units->at(i).as_table();
      if (ut == nullptr) {
        p.fail("[[iommu]] entries must be tables");
        break;
      }
      auto u = p.unit(*ut, i);
      if (!u) break;
      if (t.unit(u->name()) != nullptr) {
        p.fail(fmt::format("iommu '{}' is defined twice", u->name()));
        break;
      }
      t.units.push_back(std::move(u));
    }
  }
  std::set<u32> group_ids;
  std::set<std::string> bdfs;
  u32 next_cdev = 0;
  if (const toml::array* groups = root["group"].as_array(); groups && p.error.empty()) {
    for (size_t i = 0; i < groups->size() && p.error.empty(); ++i) {
      const toml::table* gt = groups->at(i).as_table();
      std::string where = fmt::format("group #{}", i + 1);
      if (gt == nullptr) {
        p.fail("[[group]] entries must be tables");
        break;
      }
      GroupSpec g;
      auto id = (*gt)["id"].value<int64_t>();
      auto unit = (*gt)["iommu"].value<std::string>();
      if (!id || *id < 0 || *id > 0x7fffffff) {
        p.fail(where + ": 'id' must be a non-negative integer");
        break;
      }
      g.id = static_cast<u32>(*id);
      where = fmt::format("group {}", g.id);
      if (!group_ids.insert(g.id).second) {
        p.fail(where + ": defined twice");
        break;
      }
      if (const toml::node* n = gt->get("noiommu")) {
        const auto* v = n->as_boolean();
        if (v == nullptr) {
          p.fail(where + ": 'noiommu' must be true or false");
          break;
        }
        g.noiommu = v->get();
      }
      if (g.noiommu) {
        if (unit) {
          p.fail(where + ": a 'noiommu' group has no 'iommu'");
          break;
        }
      } else if (!unit || t.unit(*unit) == nullptr) {
        p.fail(where + ": 'iommu' must name an [[iommu]] defined above");
        break;
      } else {
        g.iommu = *unit;
      }
      for (auto [key, field] : {std::pair{"mode", &g.mode}, {"uid", &g.uid}, {"gid", &g.gid}}) {
        if (!gt->contains(key)) continue;
        u32 v = 0;
        if (!p.get_int(*gt, key, &v, where)) break;
        if (std::string_view(key) == "mode" && v > 07777) {
          p.fail(where + ": 'mode' must be a permission like 0o660");
          break;
        }
        *field = v;
      }
      if (!p.error.empty()) break;
      const toml::array* devs = (*gt)["devices"].as_array();
      if (devs == nullptr || devs->empty()) {
        p.fail(where + ": 'devices' must list at least one PCI address");
        break;
      }
      for (const toml::node& n : *devs) {
        DeviceSpec d;
        if (!p.device(n, &d, where)) break;
        if (!bdfs.insert(d.bdf).second) {
          p.fail(fmt::format("{}: device {} is already in another group", where, d.bdf));
          break;
        }
        d.cdev_index = next_cdev++;
        g.devices.push_back(d);
      }
      // vfio_noiommu_group_alloc: a no-IOMMU group per device.
      if (p.error.empty() && g.noiommu && g.devices.size() != 1)
        p.fail(where + ": a 'noiommu' group holds exactly one device");
      t.groups.push_back(std::move(g));
    }
  }
  // A slot is reset as a whole: its functions agree on whether it can be.
  std::map<std::tuple<u16, u8, u8>, const DeviceSpec*> slots;
  for (const GroupSpec& g : t.groups) {
    for (const DeviceSpec& d : g.devices) {
      if (!p.error.empty()) break;
      const PciAddress a = pci_address(d.bdf);
      auto [it, fresh] = slots.try_emplace({a.segment, a.bus, a.slot()}, &d);
      if (!fresh && (it->second->hot_reset == HotReset::kSlot) != (d.hot_reset == HotReset::kSlot))
        p.fail(fmt::format("device {}: 'hot_reset' must be \"slot\" for every function of its "
                           "slot or for none (device {} differs)", d.bdf, it->second->bdf));
    }
  }
  if (const toml::node* l = root.get("limits"); l != nullptr && p.error.empty())
    p.limits(*l, &t.limits);
  if (p.error.empty() && t.groups.empty()) p.fail("the topology defines no [[group]]");
  if (!p.error.empty()) {
    *error = p.error;
    return std::nullopt;
  }
  return t;
}

std::optional<Topology> Topology::load(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = fmt::format("cannot read {}", path);
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto t = parse(ss.str(), error);
  if (!t) *error = fmt::format("{}: {}", path, *error);
  return t;
}

}  // namespace vfio_emu::core
