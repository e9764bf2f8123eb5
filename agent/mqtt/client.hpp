#pragma once
// The agent's view of an MQTT connection. No Paho type crosses this header; handlers run on
// the library's thread and must only post to the agent's loop.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gantry::mqtt {

struct Message {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = false;
  std::string response_topic;    // MQTT 5 only; empty when absent
  std::string correlation_data;  // MQTT 5 only
};

struct Options {
  std::string uri;
  // Every node of a broker cluster, tried in order on each (re)connect; uri is the first.
  // Empty or one entry: uri alone.
  std::vector<std::string> servers;
  std::string client_id;
  int version = 5;  // 5 or 4 (3.1.1)
  std::optional<std::string> ca_file, cert_file, key_file, username, password;
  std::optional<Message> will;
  std::vector<std::string> subscriptions;  // all at QoS 1
  int keepalive_s = 30;
  bool clean_session = false;  // the agent keeps its session; tools start clean
  int session_expiry_s = 7 * 24 * 3600;  // MQTT 5: without it the session does not persist
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30000};
};

class Client {
 public:
  struct Handlers {
    std::function<void()> on_ready;  // connected and every subscription acknowledged
    std::function<void(const std::string& cause)> on_lost;
    std::function<void(Message)> on_message;
    // The first connect failed on MQTT 5 and the broker accepts 3.1.1 (e.g. RabbitMQ): a
    // configuration error, with the reason. When set, the client stops trying; when not, it
    // logs the reason on every failed attempt and keeps trying.
    std::function<void(const std::string& reason)> on_refused_version;
  };
  virtual ~Client() = default;
  // Connects in the background and keeps reconnecting with backoff, forever.
  virtual void Start(Handlers handlers) = 0;
  // Thread-safe. on_done(true) once the broker acknowledged a QoS 1 message (at once for
  // QoS 0), on_done(false) when it was lost with the connection.
  virtual void Publish(const Message& message, std::function<void(bool acked)> on_done) = 0;
  virtual bool Connected() const = 0;
  // Disconnects cleanly; no handler runs afterwards.
  virtual void Stop() = 0;
};

std::unique_ptr<Client> MakePahoClient(const Options& options);

// MQTT topic filter matching with + and # (Paho 1.2 has no topic_matcher).
bool TopicMatches(const std::string& filter, const std::string& topic);

}  // namespace gantry::mqtt
