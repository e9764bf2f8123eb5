#pragma once
// What gantryd hands its relay plugins through GantryHostV1 (docs/relay.md): its log, its
// loop for the plugins' events, and its own MQTT connection (publish and subscribe), so the
// relay is not a second client on the broker.
//
//   RelayHost rh(loop);
//   auto t = relay::LoadRelayPlugin(dir, "mqtt", options, rh.host());  // plugin subscribes
//   mo.subscriptions += rh.Filters();                                   // before the client starts
//   rh.Attach(*client, outbox);
//   on_message: if (rh.Route(m)) return;                                // sensor traffic
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/event_loop.hpp"
#include "mqtt/client.hpp"
#include "plugin/gantry_plugin.h"
#include "relay/relay_engine.hpp"
#include "status/outbox.hpp"

namespace gantry::app {

class RelayHost {
 public:
  // At most max_queued plugin events wait on the loop; more are dropped and counted, so a
  // flood of sensor messages cannot grow the loop's queue without bound.
  explicit RelayHost(EventLoop& loop, std::size_t max_queued = 1024);
  RelayHost(const RelayHost&) = delete;
  RelayHost& operator=(const RelayHost&) = delete;

  const GantryHostV1* host() const { return &host_; }
  // The engine that takes the plugins' events (loop thread; null to stop delivering).
  void SetEngine(relay::RelayEngine* engine) { engine_ = engine; }
  // The topic filters the plugins subscribed to while they were created.
  const std::vector<std::string>& Filters() const { return filters_; }
  // The connection publish() uses from now on: QoS 0 directly (only while connected), QoS 1
  // through the persisted outbox, in order. Call before the client starts.
  void Attach(mqtt::Client& client, status::Outbox& outbox);
  // From the MQTT thread: hands a message matching a plugin's filter to that plugin and
  // returns true; false when no plugin asked for it.
  bool Route(const mqtt::Message& message) const;
  std::uint64_t DroppedEvents() const { return dropped_; }

 private:
  struct Subscription {
    std::string filter;
    GantryMessageFn fn;
    void* arg;
  };
  static void Log(void* ctx, int level, const char* message);
  static void PostEvent(void* ctx, const char* event_json);
  static int Publish(void* ctx, const GantryMqttMessage* message);
  static int Subscribe(void* ctx, const char* filter, GantryMessageFn fn, void* arg);

  EventLoop& loop_;
  std::size_t max_queued_;
  GantryHostV1 host_;
  relay::RelayEngine* engine_ = nullptr;  // loop thread
  std::vector<std::string> filters_;
  std::vector<Subscription> routes_;  // written during plugin creation only, read-only afterwards
  mqtt::Client* client_ = nullptr;
  status::Outbox* outbox_ = nullptr;
  std::atomic<std::size_t> queued_{0};
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace gantry::app
