#include "plugin/loader.hpp"
#include "relay/transport.hpp"

namespace gantry::relay {

namespace {

// A Transport over the plugin's JSON call interface.
class PluginTransport : public Transport {
 public:
  PluginTransport(std::string name, std::unique_ptr<plugin::Plugin> plugin)
      : name_(std::move(name)), plugin_(std::move(plugin)) {}

  const std::string& Name() const override { return name_; }

  ExpectedVoid Offer(const std::string& sensor, const nlohmann::json& offer) override {
    return Void(plugin_->Call("offer", {{"sensor", sensor}, {"offer", offer}}));
  }
  ExpectedVoid ClearOffer(const std::string& sensor) override {
    return Void(plugin_->Call("clear-offer", {{"sensor", sensor}}));
  }
  ExpectedVoid SendCmd(const std::string& sensor, const nlohmann::json& cmd) override {
    return Void(plugin_->Call("cmd", {{"sensor", sensor}, {"cmd", cmd}}));
  }
  ExpectedVoid SetImages(const nlohmann::json& images) override {
    return Void(plugin_->Call("set-images", images));
  }
  ExpectedVoid UpdateJobs(const nlohmann::json& delta) override {
    return Void(plugin_->Call("update-jobs", delta));
  }
  Expected<nlohmann::json> Stats() override { return plugin_->Call("stats", nlohmann::json::object()); }

 private:
  static ExpectedVoid Void(const Expected<nlohmann::json>& r) {
    if (!r) return Unexpected(r.error());
    return {};
  }

  std::string name_;
  std::unique_ptr<plugin::Plugin> plugin_;
};

}  // namespace

Expected<std::unique_ptr<Transport>> LoadRelayPlugin(const std::filesystem::path& plugin_dir,
                                                     const std::string& name,
                                                     const nlohmann::json& options,
                                                     const GantryHostV1* host) {
  if (!host) return Fail("plugin", "relay plugin " + name + " needs a host");
  auto plugin = plugin::Load(plugin_dir / ("gantry-relay-" + name + ".so"), "relay", host, options);
  if (!plugin) return Unexpected(plugin.error());
  return std::unique_ptr<Transport>(new PluginTransport(name, std::move(*plugin)));
}

}  // namespace gantry::relay
