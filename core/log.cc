#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace vfio_emu {
namespace {
std::mutex mu;
spdlog::level::level_enum default_level = spdlog::level::warn;
}  // namespace

std::shared_ptr<spdlog::logger> logger(const char* name) {
  if (auto l = spdlog::get(name)) return l;
  std::lock_guard lock(mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
  l->set_level(default_level);
  return l;
}

void set_log_level(spdlog::level::level_enum level) {
  std::lock_guard lock(mu);
  default_level = level;
  spdlog::set_level(level);
}

}  // namespace vfio_emu
