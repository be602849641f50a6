// `maps`: the mappings of containers and IOASes, or a domain's leaves, a page at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "core/emulator.h"
#include "core/inspect/format.h"

namespace vfio_emu::core::inspect {

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

}  // namespace vfio_emu::core::inspect
