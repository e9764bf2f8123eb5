#include "core/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace gantry::log {
namespace {
std::atomic<Level> g_level{Level::kInfo};
std::mutex g_mutex;
constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

void SetLevel(Level level) { g_level = level; }
Level GetLevel() { return g_level; }

void Write(Level level, std::string_view component, std::string_view message) {
  if (level < g_level.load()) return;
  std::string line;
  line.reserve(component.size() + message.size() + 16);
  line.append(kNames[static_cast<int>(level)]).append(" ").append(component).append(": ");
  line.append(message).append("\n");
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace gantry::log
