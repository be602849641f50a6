#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>
#include <unordered_map>

namespace vfio_emu {
namespace {
std::mutex mu;
spdlog::level::level_enum default_level = spdlog::level::warn;

std::shared_ptr<spdlog::logger> registered(const char* name) {
  if (auto l = spdlog::get(name)) return l;
  std::lock_guard lock(mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
  l->set_level(default_level);
  return l;
}
}  // namespace

std::shared_ptr<spdlog::logger> logger(const char* name) {
  // Every ioctl asks for a logger; spdlog's registry lookup takes a global lock and builds a
  // std::string. Loggers are never dropped, so each thread remembers what it was given, keyed
  // by the name's address (call sites pass string literals).
  thread_local std::unordered_map<const char*, std::shared_ptr<spdlog::logger>> seen;
  if (auto it = seen.find(name); it != seen.end()) return it->second;
  auto l = registered(name);
  if (seen.size() < 64) seen.emplace(name, l);
  return l;
}

void set_log_level(spdlog::level::level_enum level) {
  std::lock_guard lock(mu);
  default_level = level;
  spdlog::set_level(level);
}

}  // namespace vfio_emu
