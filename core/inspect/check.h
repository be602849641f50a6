// `check`: every domain's page table against the record of what should be mapped (type1
// mappings, IOAS areas, sPAPR registered memory).
#pragma once

#include <string>
#include <vector>

#include "core/emulator.h"
#include "core/inspect/format.h"
#include "core/inspect/leaf_runs.h"

namespace vfio_emu::core::inspect {

// {"ok": bool, "checked": n, "differences": [...]}.
Json check(Emulator& emu);

// What `check` found, filled by check() and by each IOMMU driver's IommuDriver::check().
class CheckReport {
 public:
  // Compares the leaves of `hw` with `want` (runs in any order; abutting runs are merged first,
  // as the page table cannot tell two abutting maps from one); one more table checked.
  void compare(const std::string& where, const iommu::Domain& hw, std::vector<Run> want);
  // One more table checked, by the caller's own rule.
  void count_checked() { ++checked_; }
  // A difference of `kind` at run `r` of `where`'s table. Only the first 100 are kept.
  void difference(const std::string& where, const char* kind, const Run& r);

  Json result() const;

 private:
  Json differences_ = Json::array();
  u64 checked_ = 0;
};

}  // namespace vfio_emu::core::inspect
