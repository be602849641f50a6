#include "core/inspect/stats.h"

#include "core/command.h"
#include "core/inspect/list.h"

namespace vfio_emu::core::inspect {

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

}  // namespace vfio_emu::core::inspect
