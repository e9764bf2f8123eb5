#include "app/relay_host.hpp"

#include <algorithm>

#include "core/log.hpp"

namespace gantry::app {

namespace {
constexpr const char* kLog = "relay";
}

RelayHost::RelayHost(EventLoop& loop, std::size_t max_queued)
    : loop_(loop),
      max_queued_(max_queued),
      host_{GANTRY_PLUGIN_ABI_V1, this, &RelayHost::Log, &RelayHost::PostEvent, &RelayHost::Publish,
            &RelayHost::Subscribe} {}

void RelayHost::Attach(mqtt::Client& client, status::Outbox& outbox) {
  client_ = &client;
  outbox_ = &outbox;
}

bool RelayHost::Route(const mqtt::Message& m) const {
  for (const auto& r : routes_) {
    if (!mqtt::TopicMatches(r.filter, m.topic)) continue;
    GantryMqttMessage out{m.topic.c_str(),
                          m.payload.data(),
                          static_cast<std::uint32_t>(m.payload.size()),
                          m.qos,
                          m.retain ? 1 : 0,
                          m.response_topic.c_str(),
                          m.correlation_data.empty() ? nullptr : m.correlation_data.data(),
                          static_cast<std::uint32_t>(m.correlation_data.size())};
    r.fn(r.arg, &out);
    return true;
  }
  return false;
}

void RelayHost::Log(void*, int level, const char* message) {
  log::Write(static_cast<log::Level>(std::clamp(level, 0, 3)), "plugin", message ? message : "");
}

void RelayHost::PostEvent(void* ctx, const char* event_json) {
  auto* self = static_cast<RelayHost*>(ctx);
  if (self->queued_.fetch_add(1) >= self->max_queued_) {
    self->queued_.fetch_sub(1);
    // Logged once per thousand: the log must not become the flood's amplifier.
    if (self->dropped_.fetch_add(1) % 1000 == 0)
      log::Warn(kLog, "the loop is behind on sensor events; dropping (" +
                          std::to_string(self->dropped_.load()) + " so far)");
    return;
  }
  auto event = nlohmann::json::parse(event_json ? event_json : "", nullptr, false);
  self->loop_.Post([self, event = std::move(event)] {
    self->queued_.fetch_sub(1);
    if (self->engine_ && !event.is_discarded()) self->engine_->OnTransportEvent(event);
  });
}

int RelayHost::Publish(void* ctx, const GantryMqttMessage* m) {
  auto* self = static_cast<RelayHost*>(ctx);
  if (!self->client_ || !m || !m->topic || (!m->payload && m->payload_len)) return 1;
  std::string payload(static_cast<const char*>(m->payload), m->payload_len);
  if (m->qos == 0) {
    if (!self->client_->Connected()) return 1;
    mqtt::Message out{m->topic, std::move(payload), 0, m->retain != 0,
                      m->response_topic ? m->response_topic : "",
                      m->correlation ? std::string(static_cast<const char*>(m->correlation), m->correlation_len) : ""};
    self->client_->Publish(out, nullptr);
    return 0;
  }
  // QoS 1 (offers, commands): persisted and published in order by the outbox, on the loop.
  self->loop_.Post([self, topic = std::string(m->topic), payload = std::move(payload), retain = m->retain != 0] {
    if (auto r = self->outbox_->Enqueue(topic, payload, 1, retain); !r)
      log::Error(kLog, "publishing to " + topic + ": " + r.error().String());
  });
  return 0;
}

int RelayHost::Subscribe(void* ctx, const char* filter, GantryMessageFn fn, void* arg) {
  auto* self = static_cast<RelayHost*>(ctx);
  if (!filter || !*filter || !fn || self->client_) return 1;  // only while plugins are created
  self->filters_.push_back(filter);
  self->routes_.push_back({filter, fn, arg});
  return 0;
}

}  // namespace gantry::app
