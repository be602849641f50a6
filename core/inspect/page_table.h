// `pt` and `translate`: a domain's page table, and a hardware walk through it.
#pragma once

#include <cstddef>

#include "core/emulator.h"
#include "core/inspect/format.h"

namespace vfio_emu::core::inspect {

// The page table of a domain: VT-d, one row per present leaf with the entry at every level
// (Linux's intel-iommu debugfs domain_translation_struct); TCE, per window, each present TCE.
// At most `max` rows (TCEs, over all windows); "next" is the IOVA of the first leaf left out
// (pass it as `first` for the next page), or null. Errors: ENOENT (no such domain).
Result<Json> page_table(Emulator& emu, u64 domain, u64 first, u64 last, size_t max = 1 << 20);

// A hardware walk of `iova`, level by level, and its result or fault. Errors: ENOENT.
Result<Json> translate(Emulator& emu, u64 domain, u64 iova, iommu::Access access);

}  // namespace vfio_emu::core::inspect
