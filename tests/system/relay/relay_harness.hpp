#pragma once
// A tiny host for the relay: a real store, the real gantry-relay-*.so plugins loaded through
// LoadRelayPlugin, and the engine driven by an EventLoop on the test thread (the way gantryd's
// composition root wires it). Plugin events are posted to the loop, as GantryHostV1 promises.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "core/event_loop.hpp"
#include "core/log.hpp"
#include "plugin/gantry_plugin.h"
#include "relay/relay_engine.hpp"
#include "store/db.hpp"
#include "test_util.hpp"

namespace gantry::test {

using nlohmann::json;

inline std::string Sha256Of(const std::filesystem::path& file) {
  auto [rc, out] = Sh("sha256sum '" + file.string() + "'");
  if (rc != 0 || out.size() < 64) throw std::runtime_error("sha256sum failed: " + out);
  return out.substr(0, 64);
}

// Random bytes of the given size in dir/name; returns the firmware description.
inline relay::Firmware MakeFirmware(const std::filesystem::path& dir, const std::string& model,
                                    std::int64_t seq, std::size_t size) {
  std::filesystem::create_directories(dir);
  auto path = dir / (model + "-" + std::to_string(seq) + ".bin");
  auto [rc, out] = Sh("head -c " + std::to_string(size) + " /dev/urandom > '" + path.string() + "'");
  if (rc != 0) throw std::runtime_error("cannot write " + path.string() + ": " + out);
  relay::Firmware fw;
  fw.model = model;
  fw.sha256 = Sha256Of(path);
  fw.size = size;
  fw.version = "2." + std::to_string(seq) + ".0";
  fw.seq = seq;
  fw.image = path;
  return fw;
}

class RelayHost {
 public:
  struct Options {
    std::string broker_uri;
    std::filesystem::path data_dir;
    std::string device_id = "gw-0001";
    int max_concurrent = 8;
    std::chrono::seconds job_timeout{300};
    int max_sensors = 1024;
    std::int64_t max_msgs_per_s = 0;  // 0: unlimited
    std::int64_t link_rate_bps = 0;
    std::optional<int> coap_port;  // also load relay-coap
    // Keep every progress event in `events` (tests read them). The benchmark turns it off: a
    // thousand sensors' events held as JSON weighed more than the relay it measures.
    bool keep_events = true;
  };

  explicit RelayHost(Options o) : opt_(std::move(o)) {
    host_ = {GANTRY_PLUGIN_ABI_V1, this, &RelayHost::HostLog, &RelayHost::HostPost, nullptr, nullptr};
    auto db = store::Db::Open(opt_.data_dir / "gantry.db");
    if (!db) throw std::runtime_error(db.error().String());
    db_ = std::make_unique<store::Db>(std::move(*db));
    std::vector<std::unique_ptr<relay::Transport>> transports;
    auto plugin_dir = std::filesystem::path(BuildDir()) / "plugins";
    auto mqtt = relay::LoadRelayPlugin(plugin_dir, "mqtt",
                                       {{"device_id", opt_.device_id},
                                        {"root", "gantry"},
                                        {"mqtt_uri", opt_.broker_uri},
                                        {"link_rate_bps", opt_.link_rate_bps},
                                        {"max_msgs_per_s", opt_.max_msgs_per_s}},
                                       &host_);
    if (!mqtt) throw std::runtime_error(mqtt.error().String());
    transports.push_back(std::move(*mqtt));
    if (opt_.coap_port) {
      auto coap = relay::LoadRelayPlugin(
          plugin_dir, "coap", {{"coap_port", *opt_.coap_port}, {"bind", "127.0.0.1"}}, &host_);
      if (!coap) throw std::runtime_error(coap.error().String());
      transports.push_back(std::move(*coap));
    }
    relay::Limits limits;
    limits.max_concurrent = opt_.max_concurrent;
    limits.job_timeout = opt_.job_timeout;
    limits.max_sensors = opt_.max_sensors;
    engine_ = std::make_unique<relay::RelayEngine>(*db_, std::move(transports), limits,
                                                   [this](const json& e) {
                                                     ++event_count;
                                                     if (opt_.keep_events) events.push_back(e);
                                                     by_status_[e["status"]].insert(
                                                         e["sensor"].get<std::string>());
                                                   });
  }
  ~RelayHost() {
    // The plugins (inside the engine) stop posting before the loop goes away.
    engine_.reset();
  }

  relay::RelayEngine& engine() { return *engine_; }
  EventLoop& loop() { return loop_; }

  // Serves the loop until pred() holds; pred is also checked every 50 ms, since it may watch
  // things outside the loop (a simulator process).
  bool RunUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (loop_.RunUntil(pred, std::chrono::milliseconds(50))) return true;
      engine_->Tick();  // gantryd ticks once a second
    }
    return pred();
  }

  // Progress events of one sensor / with one status.
  std::vector<json> EventsOf(const std::string& sensor) const {
    std::vector<json> out;
    for (auto& e : events)
      if (e["sensor"] == sensor) out.push_back(e);
    return out;
  }
  const std::set<std::string>& SensorsWithStatus(const std::string& status) {
    return by_status_[status];
  }
  json Stats(const std::string& transport = "mqtt") {
    auto s = engine_->TransportStats(transport);
    if (!s) throw std::runtime_error(s.error().String());
    return *s;
  }

  std::vector<json> events;
  std::size_t event_count = 0;

 private:
  static void HostLog(void* /*ctx*/, int level, const char* message) {
    log::Write(static_cast<log::Level>(level < 0 ? 0 : level > 3 ? 3 : level), "relay-plugin",
               message ? message : "");
  }
  static void HostPost(void* ctx, const char* event_json) {
    auto* self = static_cast<RelayHost*>(ctx);
    std::string text = event_json ? event_json : "";
    self->loop_.Post([self, text] {
      if (self->engine_) self->engine_->OnTransportEvent(json::parse(text, nullptr, false));
    });
  }

  Options opt_;
  std::map<std::string, std::set<std::string>> by_status_;  // status → sensors that reported it
  EventLoop loop_;
  GantryHostV1 host_{};
  std::unique_ptr<store::Db> db_;
  std::unique_ptr<relay::RelayEngine> engine_;
};

// A plain MQTT 5 client for poking the relay from the test (malformed input, retained offers).
class Probe {
 public:
  explicit Probe(const std::string& uri)
      : client_(uri, "probe-" + std::to_string(getpid()) + "-" + std::to_string(counter_++),
                mqtt::create_options(MQTTVERSION_5)) {
    client_.start_consuming();
    auto opts = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize();
    client_.connect(opts)->wait_for(std::chrono::seconds(10));
    if (!client_.is_connected()) throw std::runtime_error("probe cannot connect to " + uri);
  }
  ~Probe() {
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(2));
    } catch (const mqtt::exception&) {
    }
  }
  void Subscribe(const std::string& topic, int qos = 1) {
    client_.subscribe(topic, qos)->wait_for(std::chrono::seconds(10));
  }
  void Publish(const std::string& topic, const std::string& payload, int qos = 1,
               bool retain = false) {
    client_.publish(topic, payload.data(), payload.size(), qos, retain)->wait_for(std::chrono::seconds(10));
  }
  // The next message within timeout, or nullptr.
  mqtt::const_message_ptr Next(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    mqtt::const_message_ptr m;
    if (client_.try_consume_message_for(&m, timeout)) return m;
    return nullptr;
  }

 private:
  static inline std::atomic<int> counter_{0};
  mqtt::async_client client_;
};

}  // namespace gantry::test
