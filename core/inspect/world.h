// What the inspect commands walk: every container and iommufd context reachable from an open
// file or a group, and the registered domains by their tools id.
//
// The commands (core/inspect/*.h) are read-only; they take the locks in the documented order
// (Emulator::mu, then a container's or an iommufd context's, then an IOAS's) and only briefly.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "core/emulator.h"

namespace vfio_emu::core::inspect {

// Everything reachable, gathered under Emulator::mu (the caller holds it while using it).
struct World {
  std::vector<std::shared_ptr<File>> files;
  std::map<u64, std::shared_ptr<Container>> containers;
  std::map<u64, std::shared_ptr<IommufdCtx>> contexts;
};
World gather(Emulator& emu);

// The domain with the tools id `id`, or null.
std::shared_ptr<HwDomain> find_domain(Emulator& emu, u64 id);

}  // namespace vfio_emu::core::inspect
