#include <mqtt/async_client.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "core/backoff.hpp"
#include "core/log.hpp"
#include "mqtt/client.hpp"
#include "core/nodelay.hpp"
#include "core/send_window.hpp"

namespace gantry::mqtt {
namespace {
constexpr std::uint32_t kMaxPacketSize = (1u << 20) + (64u << 10);  // 1 MiB + 64 KiB

constexpr const char* kLog = "mqtt";

// Set while a message handler runs on Paho's receive thread (see Publish).
thread_local bool t_on_paho_thread = false;

// Forwards Paho's action results to a std::function; deletes itself once done.
class Listener : public ::mqtt::iaction_listener {
 public:
  explicit Listener(std::function<void(bool)> done) : done_(std::move(done)) {}
  void on_success(const ::mqtt::token&) override { Finish(true); }
  void on_failure(const ::mqtt::token&) override { Finish(false); }

 private:
  void Finish(bool ok) {
    auto done = std::move(done_);
    delete this;
    if (done) done(ok);
  }
  std::function<void(bool)> done_;
};

class PahoClient final : public Client {
 public:
  explicit PahoClient(const Options& o)
      : options_(o),
        client_(o.uri, o.client_id, ::mqtt::create_options(o.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1),
                nullptr) {}

  ~PahoClient() override { Stop(); }

  void Start(Handlers handlers) override {
    handlers_ = std::move(handlers);
    client_.set_connected_handler([this](const std::string&) { OnConnected(); });
    client_.set_connection_lost_handler([this](const std::string& cause) {
      connected_ = false;
      qos0_window_.Reset();
      {
        std::lock_guard lock(mutex_);
        subscribe_deadline_.reset();  // the next connect subscribes again
      }
      log::Warn(kLog, "connection lost: " + cause);
      if (handlers_.on_lost) handlers_.on_lost(cause);
    });
    client_.set_message_callback([this](::mqtt::const_message_ptr m) { OnMessage(*m); });
    running_ = true;
    connector_ = std::thread([this] { ConnectLoop(); });
  }

  void Publish(const Message& m, std::function<void(bool)> on_done) override {
    // QoS 0 waits for room in the send window (a second at most, then it is dropped): the
    // relay's frames must not pile up in Paho's queue faster than the broker takes them.
    if (m.qos == 0) {
      // Paho's own threads complete partly written messages: one of them waiting for room
      // would wait out its patience every time. They never wait.
      auto patience = t_on_paho_thread ? std::chrono::milliseconds(0) : std::chrono::milliseconds(1000);
      if (!qos0_window_.Acquire(patience)) {
        log::Debug(kLog, "send window full; dropping a QoS 0 message to " + m.topic);
        if (on_done) on_done(false);
        return;
      }
      on_done = [this, done = std::move(on_done)](bool ok) {
        qos0_window_.Release();
        if (done) done(ok);
      };
    }
    auto msg = ::mqtt::make_message(m.topic, m.payload, m.qos, m.retain);
    if (options_.version == 5 && (!m.correlation_data.empty() || !m.response_topic.empty())) {
      ::mqtt::properties props;
      if (!m.correlation_data.empty()) props.add({::mqtt::property::CORRELATION_DATA, m.correlation_data});
      if (!m.response_topic.empty()) props.add({::mqtt::property::RESPONSE_TOPIC, m.response_topic});
      msg->set_properties(props);
    }
    // on_done is copied, not moved, into the listener: when Paho refuses the message it
    // drops the listener uncalled, and on_done(false) must still reach the caller (the outbox
    // would otherwise wait for it forever and never publish that row again).
    auto* listener = new Listener(on_done);
    try {
      client_.publish(msg, nullptr, *listener);
    } catch (const ::mqtt::exception& e) {
      delete listener;
      // Not connected: the caller's outbox keeps the message and retries after reconnect.
      log::Debug(kLog, std::string("publish deferred: ") + e.what());
      if (on_done) on_done(false);
    }
  }

  bool Connected() const override { return connected_; }

  void Stop() override {
    {
      std::lock_guard lock(mutex_);
      if (!running_) return;
      running_ = false;
    }
    cv_.notify_all();
    if (connector_.joinable()) connector_.join();
    client_.set_connected_handler([](const std::string&) {});
    client_.set_connection_lost_handler([](const std::string&) {});
    client_.set_message_callback([](::mqtt::const_message_ptr) {});
    try {
      if (client_.is_connected()) client_.disconnect(std::chrono::seconds(2))->wait_for(std::chrono::seconds(3));
    } catch (const ::mqtt::exception& e) {
      log::Debug(kLog, std::string("disconnect: ") + e.what());
    }
  }

 private:
  // Paho C++ 1.2 copies a connect_options' properties but not the pointer to them: a copy
  // points at its source's properties, so a copy that outlives its source (the builder's
  // finalize(), a by-value return) hands Paho C freed memory on connect. The options are
  // therefore built into an object that outlives every copy Paho makes of it, and their
  // properties are set on that object last.
  static void BuildConnectOptions(const Options& options_, bool reconnect, ::mqtt::connect_options& out) {
    auto b = ::mqtt::connect_options_builder();
    b.mqtt_version(options_.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    b.keep_alive_interval(std::chrono::seconds(options_.keepalive_s));
    // Paho walks the list on every connect and automatic reconnect: fail-over to the next node.
    if (options_.servers.size() > 1) b.servers(::mqtt::string_collection::create(options_.servers));
    // Paho's reconnect intervals are whole seconds; 1 s is its floor.
    if (reconnect)
      b.automatic_reconnect(std::chrono::seconds(1),
                            std::chrono::duration_cast<std::chrono::seconds>(options_.reconnect_max));
    if (options_.version == 5) {
      b.clean_start(options_.clean_session);
    } else {
      b.clean_session(options_.clean_session);
    }
    if (options_.will) {
      b.will(::mqtt::message(options_.will->topic, options_.will->payload, options_.will->qos,
                             options_.will->retain));
    }
    if (options_.username) b.user_name(*options_.username);
    if (options_.password) b.password(*options_.password);
    if (options_.ca_file || options_.cert_file) {
      auto ssl = ::mqtt::ssl_options_builder();
      if (options_.ca_file) ssl.trust_store(*options_.ca_file);
      if (options_.cert_file) ssl.key_store(*options_.cert_file);
      if (options_.key_file) ssl.private_key(*options_.key_file);
      ssl.enable_server_cert_auth(true);
      ssl.verify(true);
      b.ssl(ssl.finalize());
    }
    out = b.finalize();
    if (options_.version == 5) {
      // The broker never delivers a packet above this, so no command exceeds 1 MiB + headroom.
      ::mqtt::properties props{{::mqtt::property::MAXIMUM_PACKET_SIZE, kMaxPacketSize}};
      if (!options_.clean_session) props.add({::mqtt::property::SESSION_EXPIRY_INTERVAL, options_.session_expiry_s});
      out.set_properties(std::move(props));
    }
  }

  // Paho reconnects by itself only after a first successful connect; until then we retry.
  void ConnectLoop() {
    Backoff backoff(options_.reconnect_min, options_.reconnect_max);
    BuildConnectOptions(options_, true, connect_options_);
    const auto& opts = connect_options_;
    while (true) {
      {
        std::lock_guard lock(mutex_);
        if (!running_) return;
      }
      bool ok = false;
      try {
        auto tok = client_.connect(opts);
        ok = tok->wait_for(std::chrono::seconds(30));
      } catch (const ::mqtt::exception& e) {
        log::Warn(kLog, "cannot connect to " + ServerList() + ": " + e.what());
      }
      if (ok) return WatchSubscriptions();  // from here on Paho's automatic reconnect takes over
      // A broker that only came up meanwhile would pass the probe too: MQTT 5 must fail again
      // after 3.1.1 succeeded before this is called a refusal.
      if (options_.version == 5 && Accepts311()) {
        if (Connects(opts)) return;
        // RabbitMQ's MQTT plugin (and other 3.1.1-only brokers) close the connection on an MQTT 5
        // CONNECT without a CONNACK, which Paho reports as a bare TCP failure; this says why.
        std::string why = "the broker at " + ServerList() +
                          " refused MQTT 5 and accepts MQTT 3.1.1 (RabbitMQ's MQTT plugin speaks only 3.1.1): "
                          "set mqtt.version to 4";
        if (handlers_.on_refused_version) {
          handlers_.on_refused_version(why);
          return;
        }
        log::Error(kLog, why);
      }
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, backoff.Next(), [this] { return !running_; });
    }
  }

  // A subscription neither acknowledged nor refused (its answer lost in a broker restart or a
  // cut) would leave the agent connected but never online: after kSubscribeWait without an
  // acknowledgement, it subscribes again. Sleeps without a timer while nothing is pending.
  void WatchSubscriptions() {
    std::unique_lock lock(mutex_);
    while (running_) {
      if (!subscribe_deadline_) {
        cv_.wait(lock);
        continue;
      }
      auto deadline = *subscribe_deadline_;
      if (cv_.wait_until(lock, deadline, [&] { return !running_ || subscribe_deadline_ != deadline; })) continue;
      subscribe_deadline_ = std::chrono::steady_clock::now() + kSubscribeWait;
      lock.unlock();
      log::Warn(kLog, "no answer to the subscription in " + std::to_string(kSubscribeWait.count()) +
                          " s; subscribing again");
      Subscribe();
      lock.lock();
    }
  }

  std::string ServerList() const {
    if (options_.servers.size() <= 1) return options_.uri;
    std::string out;
    for (const auto& s : options_.servers) out += (out.empty() ? "" : ", ") + s;
    return out;
  }

  bool Connects(const ::mqtt::connect_options& opts) {
    try {
      return client_.connect(opts)->wait_for(std::chrono::seconds(30)) || client_.is_connected();
    } catch (const ::mqtt::exception&) {
      return false;
    }
  }

  // After a failed MQTT 5 connect: would the same broker take MQTT 3.1.1? A throwaway clean
  // session under another client id, so the device's own persistent session is left alone.
  bool Accepts311() const {
    Options probe_options = options_;
    probe_options.version = 4;
    probe_options.clean_session = true;
    probe_options.will.reset();
    try {
      ::mqtt::connect_options probe_connect;  // 3.1.1: no properties
      BuildConnectOptions(probe_options, false, probe_connect);
      ::mqtt::async_client probe(options_.uri, options_.client_id + "-v311-probe",
                                 ::mqtt::create_options(MQTTVERSION_3_1_1), nullptr);
      if (!probe.connect(probe_connect)->wait_for(std::chrono::seconds(10))) return false;
      probe.disconnect(std::chrono::seconds(1))->wait_for(std::chrono::seconds(2));
      return true;
    } catch (const ::mqtt::exception&) {
      return false;
    }
  }

  // Called on every (re)connect: subscriptions are idempotent, and Paho 1.2 does not say
  // whether the session survived.
  void OnConnected() {
    connected_ = true;
    // After a fail-over the socket goes to another node's port: every node's port counts.
    std::vector<int> ports{BrokerPort(options_.uri)};
    for (const auto& s : options_.servers) ports.push_back(BrokerPort(s));
    DisableNagle(ports);
    log::Info(kLog, "connected to " + ServerList());
    if (options_.subscriptions.empty()) {
      if (handlers_.on_ready) handlers_.on_ready();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      subscribe_deadline_ = std::chrono::steady_clock::now() + kSubscribeWait;
    }
    cv_.notify_all();
    Subscribe();
  }

  void Subscribe() {
    auto topics = ::mqtt::string_collection::create(options_.subscriptions);
    std::vector<int> qos(options_.subscriptions.size(), 1);
    try {
      client_.subscribe(topics, qos, nullptr, *new Listener([this](bool ok) {
        if (!ok) {
          // Refused, or its connection went away first: WatchSubscriptions tries again.
          log::Error(kLog, "subscription refused by the broker, or the connection dropped first");
          return;
        }
        {
          std::lock_guard lock(mutex_);
          subscribe_deadline_.reset();
        }
        cv_.notify_all();
        if (handlers_.on_ready) handlers_.on_ready();
      }));
    } catch (const ::mqtt::exception& e) {
      log::Error(kLog, std::string("subscribe: ") + e.what());
    }
  }

  void OnMessage(const ::mqtt::message& m) {
    Message out;
    out.topic = m.get_topic();
    out.payload = m.to_string();
    out.qos = m.get_qos();
    out.retain = m.is_retained();
    const auto& props = m.get_properties();
    if (props.contains(::mqtt::property::RESPONSE_TOPIC))
      out.response_topic = ::mqtt::get<std::string>(props, ::mqtt::property::RESPONSE_TOPIC);
    if (props.contains(::mqtt::property::CORRELATION_DATA))
      out.correlation_data = ::mqtt::get<std::string>(props, ::mqtt::property::CORRELATION_DATA);
    t_on_paho_thread = true;
    if (handlers_.on_message) handlers_.on_message(std::move(out));
    t_on_paho_thread = false;
  }

  Options options_;
  // Declared before client_ so it outlives the client, which keeps a copy pointing into it.
  ::mqtt::connect_options connect_options_;
  ::mqtt::async_client client_;
  Handlers handlers_;
  std::atomic<bool> connected_{false};
  // QoS 0 messages handed to Paho and not yet written: about 300 KiB of the relay's frames.
  SendWindow qos0_window_{256};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool running_ = false;
  // When the subscription of the current connection must have been answered (see
  // WatchSubscriptions); none while answered or disconnected. Guarded by mutex_.
  std::optional<std::chrono::steady_clock::time_point> subscribe_deadline_;
  static constexpr std::chrono::seconds kSubscribeWait{10};
  std::thread connector_;
};

}  // namespace

std::unique_ptr<Client> MakePahoClient(const Options& options) {
  return std::make_unique<PahoClient>(options);
}

bool TopicMatches(const std::string& filter, const std::string& topic) {
  size_t f = 0, t = 0;
  while (f < filter.size()) {
    size_t fe = filter.find('/', f);
    if (fe == std::string::npos) fe = filter.size();
    std::string_view level(filter.data() + f, fe - f);
    if (level == "#") return true;
    if (t > topic.size()) return false;
    size_t te = topic.find('/', t);
    if (te == std::string::npos) te = topic.size();
    if (level != "+" && level != std::string_view(topic.data() + t, te - t)) return false;
    f = fe + 1;
    t = te + 1;
  }
  return t > topic.size();
}

}  // namespace gantry::mqtt
