// The emulator described for the tools, as the JSON the control socket returns (README:
// "Control protocol" documents every field). Read-only; takes the locks in the documented order
// (Emulator::mu, then a container's or an iommufd context's, then an IOAS's) and only briefly.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "core/emulator.h"

namespace vfio_emu::core::inspect {

using Json = nlohmann::ordered_json;

// Units, groups, devices, containers, iommufd contexts with their IOASes, HWPTs and devices,
// domains, and who holds what (open files with the pid that opened them).
Json list(Emulator& emu);

// Which mappings to show; every set field must match.
struct MapFilter {
  std::optional<u64> container;
  std::optional<std::string> ioas;  // "CTX:IOAS" (e.g. "7:1"), or "IOAS" if only one context has it
  std::optional<u64> domain;
  std::optional<pid_t> pid;
};
// Which part of a long answer to give: at most `max` rows, after the position `after` (a "next"
// cursor of the previous page). A whole answer of 300,000 mappings built at once took 450 MB.
struct MapPage {
  std::optional<std::string> after;
  size_t max = SIZE_MAX;
};
// The mappings: type1 records, sPAPR TCE runs, iommufd IOAS areas, or (with a domain) the
// domain's own leaves merged into runs; in the order of their source (containers by id, then
// iommufd contexts and their IOASes by id) and IOVA. {"mappings": [...], "next": cursor or
// null}: "next" is the position of the last row when more rows follow.
// Errors: ENOENT (no such container, IOAS or domain), EINVAL (a cursor that is not one, or one
// of another filter's pages).
Result<Json> maps(Emulator& emu, const MapFilter& filter, const MapPage& page = {});

// The page table of a domain: VT-d, one row per present leaf with the entry at every level
// (Linux's intel-iommu debugfs domain_translation_struct); TCE, per window, each present TCE.
// At most `max` rows (TCEs, over all windows); "next" is the IOVA of the first leaf left out
// (pass it as `first` for the next page), or null. Errors: ENOENT (no such domain).
Result<Json> page_table(Emulator& emu, u64 domain, u64 first, u64 last, size_t max = 1 << 20);

// A hardware walk of `iova`, level by level, and its result or fault. Errors: ENOENT.
Result<Json> translate(Emulator& emu, u64 domain, u64 iova, iommu::Access access);

// Per unit and domain: entries, tables, table memory; per command: calls and errors.
Json stats(Emulator& emu);

// Every domain's page table against the record of what should be mapped (type1 mappings,
// IOAS areas, sPAPR registered memory). {"ok": bool, "checked": n, "differences": [...]}.
Json check(Emulator& emu);

Json trace_record(const TraceRecord& r);
Json fault_record(const FaultRecord& r);

}  // namespace vfio_emu::core::inspect
