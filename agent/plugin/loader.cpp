#include "plugin/loader.hpp"

#include <dlfcn.h>

namespace gantry::plugin {

Plugin::~Plugin() {
  if (instance_) api_->destroy(instance_);
  dlclose(library_);
}

Expected<nlohmann::json> Plugin::Call(const char* op, const nlohmann::json& request) {
  std::string text_in;
  try {
    text_in = request.dump();
  } catch (const nlohmann::json::exception& e) {
    // A string from a block that is not UTF-8: refused, never an exception on a worker thread.
    return Fail("bad_request", std::string(op) + ": the request cannot be sent as JSON: " + e.what());
  }
  std::lock_guard lock(mu_);
  char* raw = api_->call(instance_, op, text_in.c_str());
  if (!raw) return Fail("plugin", label_ + " returned nothing for " + op);
  std::string text(raw);
  api_->free_string(raw);
  auto reply = nlohmann::json::parse(text, nullptr, false);
  if (reply.is_discarded() || !reply.is_object())
    return Fail("plugin", label_ + " sent a malformed reply to " + op);
  if (!reply.value("ok", false)) {
    auto err = reply.value("error", nlohmann::json::object());
    if (!err.is_object()) err = nlohmann::json::object();
    return Fail(err.value("code", "plugin"), err.value("message", std::string(op) + " failed"));
  }
  return reply;
}

Expected<std::unique_ptr<Plugin>> Load(const std::filesystem::path& file, const std::string& kind,
                                       const GantryHostV1* host, const nlohmann::json& config) {
  void* library = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char* why = dlerror();
    return Fail("plugin", "cannot load " + file.string() + ": " + (why ? why : "unknown error"));
  }
  auto close = [library](Error e) {
    dlclose(library);
    return Unexpected(std::move(e));
  };
  auto entry = reinterpret_cast<GantryPluginEntryV1>(dlsym(library, "gantry_plugin_v1"));
  if (!entry) return close({"plugin", file.string() + " has no gantry_plugin_v1 entry point"});
  const GantryPluginV1* api = entry();
  if (!api) return close({"plugin", file.string() + ": gantry_plugin_v1 returned NULL"});
  if (api->abi_version != GANTRY_PLUGIN_ABI_V1)
    return close({"plugin", file.string() + " has ABI version " + std::to_string(api->abi_version) +
                                ", expected " + std::to_string(GANTRY_PLUGIN_ABI_V1)});
  if (!api->kind || api->kind != kind)
    return close({"plugin", file.string() + " is not a " + kind + " plugin (kind \"" +
                                std::string(api->kind ? api->kind : "") + "\")"});
  if (!api->create || !api->destroy || !api->call || !api->free_string)
    return close({"plugin", file.string() + " lacks a required function"});

  // From here the Plugin owns the library (dlclose on every path).
  std::unique_ptr<Plugin> p(new Plugin(library, api, kind + " plugin " + file.filename().string()));
  char* error = nullptr;
  p->instance_ = api->create(host, (config.is_object() ? config : nlohmann::json::object()).dump().c_str(), &error);
  if (!p->instance_) {
    std::string why = error ? error : "unknown error";
    if (error) api->free_string(error);
    return Fail("plugin", p->label_ + " failed to start: " + why);
  }
  return p;
}

}  // namespace gantry::plugin
