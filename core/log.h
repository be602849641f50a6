// Named spdlog loggers, one per subsystem ("core", "core.type1", "cuse", "iommu.vtd", ...).
//
// Loggers are created on first use with the shared sink, so tests log to stderr with no set-up
// and the daemon decides sinks and levels once at start.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>

namespace vfio_emu {

// The logger named `name`, created if needed.
std::shared_ptr<spdlog::logger> logger(const char* name);

// Sets the level of every logger, present and future.
void set_log_level(spdlog::level::level_enum level);

}  // namespace vfio_emu
