#pragma once
// Loading a Gantry plugin (docs/architecture.md) and calling it: dlopen, the gantry_plugin_v1 entry
// point, the ABI and kind checks, create(), and call() with its JSON reply checked. The
// runtime and relay adapters build their interfaces on top of this.
//
//   auto p = plugin::Load(dir / "gantry-relay-mqtt.so", "relay", host, config);
//   auto reply = (*p)->Call("stats", nlohmann::json::object());  // {"ok": true, ...} or Fail
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.hpp"
#include "plugin/gantry_plugin.h"

namespace gantry::plugin {

// One plugin instance. Destroying it destroys the instance, then closes the library.
class Plugin {
 public:
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Runs one operation; calls are serialised. The reply object when it says "ok": true, else
  // the plugin's {"error": {"code", "message"}} as an Error (code "plugin" when it gives none,
  // or when the reply is missing or not a JSON object).
  Expected<nlohmann::json> Call(const char* op, const nlohmann::json& request);

  const std::string& label() const { return label_; }

 private:
  friend Expected<std::unique_ptr<Plugin>> Load(const std::filesystem::path&, const std::string&,
                                                const GantryHostV1*, const nlohmann::json&);
  Plugin(void* library, const GantryPluginV1* api, std::string label)
      : library_(library), api_(api), label_(std::move(label)) {}

  void* library_;
  const GantryPluginV1* api_;
  void* instance_ = nullptr;
  std::string label_;  // "<kind> plugin <file name>", for error messages
  std::mutex mu_;
};

// Loads file, checks abi_version == GANTRY_PLUGIN_ABI_V1 and kind, and creates the instance
// with config (a JSON object). Errors have code "plugin" and name the file.
Expected<std::unique_ptr<Plugin>> Load(const std::filesystem::path& file, const std::string& kind,
                                       const GantryHostV1* host, const nlohmann::json& config);

}  // namespace gantry::plugin
