#include <dlfcn.h>

#include <mutex>

#include "plugin/gantry_plugin.h"
#include "relay/transport.hpp"

namespace gantry::relay {

namespace {

struct DlCloser {
  void operator()(void* handle) const { dlclose(handle); }
};
using DlHandle = std::unique_ptr<void, DlCloser>;

// A Transport over the plugin's JSON call interface. The handle outlives the instance: members
// are destroyed in reverse order, so destroy() runs before dlclose().
class PluginTransport : public Transport {
 public:
  PluginTransport(std::string name, DlHandle handle, const GantryPluginV1* plugin, void* instance)
      : name_(std::move(name)), handle_(std::move(handle)), plugin_(plugin), instance_(instance) {}
  ~PluginTransport() override { plugin_->destroy(instance_); }

  const std::string& Name() const override { return name_; }

  ExpectedVoid Offer(const std::string& sensor, const nlohmann::json& offer) override {
    return Void(Call("offer", {{"sensor", sensor}, {"offer", offer}}));
  }
  ExpectedVoid ClearOffer(const std::string& sensor) override {
    return Void(Call("clear-offer", {{"sensor", sensor}}));
  }
  ExpectedVoid SendCmd(const std::string& sensor, const nlohmann::json& cmd) override {
    return Void(Call("cmd", {{"sensor", sensor}, {"cmd", cmd}}));
  }
  ExpectedVoid SetImages(const nlohmann::json& images) override {
    return Void(Call("set-images", images));
  }
  Expected<nlohmann::json> Stats() override { return Call("stats", nlohmann::json::object()); }

 private:
  static ExpectedVoid Void(const Expected<nlohmann::json>& r) {
    if (!r) return Unexpected(r.error());
    return {};
  }

  Expected<nlohmann::json> Call(const char* op, const nlohmann::json& request) {
    std::lock_guard lock(mu_);
    char* raw = plugin_->call(instance_, op, request.dump().c_str());
    if (!raw) return Fail("plugin", "relay plugin " + name_ + " returned nothing for " + op);
    std::string text(raw);
    plugin_->free_string(raw);
    auto reply = nlohmann::json::parse(text, nullptr, false);
    if (reply.is_discarded() || !reply.is_object())
      return Fail("plugin", "relay plugin " + name_ + " sent a malformed reply to " + op);
    if (!reply.value("ok", false)) {
      auto err = reply.value("error", nlohmann::json::object());
      if (!err.is_object()) err = nlohmann::json::object();
      return Fail(err.value("code", "plugin"), err.value("message", std::string(op) + " failed"));
    }
    return reply;
  }

  std::string name_;
  DlHandle handle_;
  const GantryPluginV1* plugin_;
  void* instance_;
  std::mutex mu_;
};

}  // namespace

Expected<std::unique_ptr<Transport>> LoadRelayPlugin(const std::filesystem::path& plugin_dir,
                                                     const std::string& name,
                                                     const nlohmann::json& options,
                                                     const GantryHostV1* host) {
  auto file = plugin_dir / ("gantry-relay-" + name + ".so");
  DlHandle handle(dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!handle) {
    const char* why = dlerror();
    return Fail("plugin", "cannot load " + file.string() + ": " + (why ? why : "unknown error"));
  }
  auto entry = reinterpret_cast<GantryPluginEntryV1>(dlsym(handle.get(), "gantry_plugin_v1"));
  if (!entry) return Fail("plugin", file.string() + " has no gantry_plugin_v1 entry point");
  const GantryPluginV1* plugin = entry();
  if (!plugin) return Fail("plugin", file.string() + ": gantry_plugin_v1 returned NULL");
  if (plugin->abi_version != GANTRY_PLUGIN_ABI_V1)
    return Fail("plugin", file.string() + " has ABI version " +
                              std::to_string(plugin->abi_version) + ", expected " +
                              std::to_string(GANTRY_PLUGIN_ABI_V1));
  if (!plugin->kind || std::string(plugin->kind) != "relay")
    return Fail("plugin", file.string() + " is not a relay plugin (kind \"" +
                              std::string(plugin->kind ? plugin->kind : "") + "\")");
  if (!plugin->create || !plugin->destroy || !plugin->call || !plugin->free_string)
    return Fail("plugin", file.string() + " lacks a required function");
  if (!host) return Fail("plugin", "relay plugin " + name + " needs a host");

  nlohmann::json config = options.is_object() ? options : nlohmann::json::object();
  char* error = nullptr;
  void* instance = plugin->create(host, config.dump().c_str(), &error);
  if (!instance) {
    std::string why = error ? error : "unknown error";
    if (error) plugin->free_string(error);
    return Fail("plugin", "relay plugin " + name + " failed to start: " + why);
  }
  return std::unique_ptr<Transport>(new PluginTransport(name, std::move(handle), plugin, instance));
}

}  // namespace gantry::relay
