#pragma once
// A downstream transport as the relay engine sees it. The implementations are the
// gantry-relay-<name>.so plugins (docs/architecture.md), loaded by LoadRelayPlugin(). Every method only
// queues work in the plugin (an MQTT publish, a table swap) and returns at once, so the engine
// may call it from the event loop.
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

struct GantryHostV1;

namespace gantry::relay {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const std::string& Name() const = 0;
  // Publishes the retained S/offer {"job", "sha256", "size", "seq", "version", "chunk", "window"}.
  virtual ExpectedVoid Offer(const std::string& sensor, const nlohmann::json& offer) = 0;
  // Clears the retained offer (an empty retained payload).
  virtual ExpectedVoid ClearOffer(const std::string& sensor) = 0;
  // S/cmd {"job", "op": "update|cancel|reset"}.
  virtual ExpectedVoid SendCmd(const std::string& sensor, const nlohmann::json& cmd) = 0;
  // What the transport may serve, replacing the previous set:
  //   {"jobs": [{"job", "sensor", "sha256", "size", "chunk", "window", "path"}],
  //    "images": [{"sha256", "size", "path"}]}
  // jobs: the open jobs (MQTT pulls are by job); images: the revision's images (CoAP pulls by
  // sha256).
  virtual ExpectedVoid SetImages(const nlohmann::json& images) = 0;
  // A change to the jobs of the last SetImages, so that one offer or one finished job costs
  // O(1), not a copy of every open job: {"add": [job entries as above], "remove": [job ids]}.
  virtual ExpectedVoid UpdateJobs(const nlohmann::json& delta) = 0;
  // Counters: {"frames", "bytes", "jobs": {"<job>": bytes served}}.
  virtual Expected<nlohmann::json> Stats() = 0;
};

// Loads <plugin_dir>/gantry-relay-<name>.so (dlopen), resolves gantry_plugin_v1, checks
// abi_version and kind "relay", and creates the instance with options (the plugin's settings,
// e.g. {"device_id", "root", "mqtt_uri"} or {"coap_port"}). host must outlive the transport;
// its post_event receives the plugin's events for RelayEngine::OnTransportEvent().
Expected<std::unique_ptr<Transport>> LoadRelayPlugin(const std::filesystem::path& plugin_dir,
                                                     const std::string& name,
                                                     const nlohmann::json& options,
                                                     const GantryHostV1* host);

}  // namespace gantry::relay
