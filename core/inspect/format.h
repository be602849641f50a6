// How the tools' answers spell values (README: "Control protocol"): shared by every inspect
// command and by the IOMMU drivers' describe().
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "iommu/types.h"

namespace vfio_emu::core::inspect {

using Json = nlohmann::ordered_json;

// Addresses travel as hex strings: JSON readers such as jq hold numbers as doubles, which
// cannot carry a 64-bit address exactly.
std::string hex(u64 v);

// "rw", "r-", "-w" or "--".
std::string prot_name(iommu::Prot p);

// A page-size bitmap as the list of its sizes.
Json page_sizes_json(u64 bitmap);

// [{"first": hex, "last": hex}, ...]
Json ranges_json(const std::vector<iommu::IovaRange>& rs);

}  // namespace vfio_emu::core::inspect
