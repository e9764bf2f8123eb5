#pragma once
// What the dashboard knows about the fleet, rebuilt from the MQTT messages it subscribes to
// (docs/dashboard.md, docs/protocol.md): each device's retained state and online flag, its
// last progress events, and every rollout's retained summary.
//
// Every payload is hostile: anything that is not the expected JSON object is dropped and
// counted, sizes and counts are capped, and strings reach the browser only inside JSON (the
// page renders them as text). Not thread-safe: the server guards it with one mutex.
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

namespace gantry::dashboard {

inline constexpr std::size_t kMaxPayloadBytes = 1u << 20;  // a rollout summary of a big fleet
inline constexpr std::size_t kMaxDevices = 100000;
inline constexpr std::size_t kMaxIdBytes = 256;
inline constexpr std::size_t kEventsKept = 20;  // progress events per device, for its view

// Serializes for the browser: invalid UTF-8 from a device becomes U+FFFD instead of throwing.
std::string Dump(const nlohmann::json& j);

class Fleet {
 public:
  explicit Fleet(std::string root);

  // The topic filters that feed Apply().
  std::vector<std::string> Subscriptions() const;

  // One MQTT message; now_ms is the dashboard's clock (Unix milliseconds), used when a
  // payload carries no readable ts.
  void Apply(const std::string& topic, const std::string& payload, std::int64_t now_ms);

  // {"devices": [summary...], "rollouts": [summary...], "stats": {...}}: what a browser that
  // just connected needs.
  nlohmann::json Snapshot() const;
  // What changed since the last call, in the same shape as Snapshot() plus "removed":
  // {"devices": [ids], "rollouts": [names]}; nullopt when nothing did.
  std::optional<nlohmann::json> TakeChanges();
  // One device's details (summary, last state, online payload, last progress events).
  std::optional<nlohmann::json> DeviceDetails(const std::string& id) const;

  std::size_t DeviceCount() const { return devices_.size(); }
  std::uint64_t Dropped() const { return dropped_; }

 private:
  struct Device {
    std::optional<nlohmann::json> state, online;
    std::deque<nlohmann::json> events;  // newest last, each with "received_ms"
    std::uint64_t state_order = 0, progress_order = 0;  // which came last decides the status
    nlohmann::json last;  // {"kind", "text", "ts_ms"}
  };

  nlohmann::json Summary(const std::string& id, const Device& d) const;
  nlohmann::json Stats() const;
  void Drop(const std::string& why);
  Device* DeviceFor(const std::string& id);
  void ForgetIfEmpty(const std::string& id);

  std::string root_;
  std::map<std::string, Device> devices_;
  std::map<std::string, nlohmann::json> rollouts_;
  std::set<std::string> dirty_devices_, dirty_rollouts_;
  bool stats_dirty_ = false;
  std::uint64_t order_ = 0, messages_ = 0, dropped_ = 0;
  std::string last_drop_;
};

}  // namespace gantry::dashboard
