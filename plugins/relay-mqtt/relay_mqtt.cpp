// gantry-relay-mqtt.so: the MQTT downstream transport of docs/protocol.md.
//
// Options (create()): {"device_id", "root", "mqtt_uri"?, "version": 4|5, "ca_file",
// "cert_file", "key_file", "username", "password", "link_rate_bps", "max_msgs_per_s"}.
//
// Connection: without "mqtt_uri" (relay.mqtt_uri null, the default) the plugin shares the
// host's connection: it subscribes and publishes through GantryHostV1, so a device is one
// client on the broker. With "mqtt_uri" (a separate sensor broker) it opens a connection of its
// own, client id "<device-id>-relay", with the broker's certificate and host name verified
// when TLS is used.
//
// Threads: the MQTT callback thread (the host's, or our Paho client's) parses incoming messages
// and only posts (hello/status go to the agent through host->post_event; gets go to our
// queue). One worker thread serves the queued gets from the image files and retries the first
// connection. call() runs on the host's thread and only publishes or swaps the job table, so
// it never blocks for long.
//
// A sensor is hostile until proven otherwise: each gets at most max_msgs_per_s messages
// handled (hello, status and get together; the rest are dropped unread), and the budget
// table holds only the sensors heard from in the last second or so.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "core/names.hpp"
#include "plugin/gantry_plugin.h"
#include "core/nodelay.hpp"
#include "core/send_window.hpp"
#include "wire.hpp"

namespace gantry::relay_mqtt {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxControlPayload = 4096;  // hello/status/get are small JSON objects
constexpr std::size_t kMaxQueue = 4096;           // queued gets over all links
constexpr int kMaxPendingPerLink = 2;             // queued gets per sensor; more → Busy
constexpr int kBusyRetryMs = 100;
// Budgets idle this long are full again and forgotten, so the table stays as small as the set
// of sensors sending right now.
constexpr auto kBudgetIdle = std::chrono::seconds(2);
constexpr std::size_t kBudgetSweepAt = 4096;

std::optional<std::int64_t> Int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<std::int64_t>();
}

char* Dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

json ErrorReply(const std::string& code, const std::string& message) {
  return {{"ok", false}, {"error", {{"code", code}, {"message", message}}}};
}

struct Options {
  std::string device_id, root = "gantry", uri;  // uri empty: share the host's connection
  int version = 5;
  std::string ca_file, cert_file, key_file, username, password;
  std::int64_t link_rate_bps = 0;  // per-sensor payload rate; 0 = unpaced
  std::int64_t max_msgs_per_s = 50;  // per-sensor messages handled; 0 = unlimited

  static std::optional<Options> Parse(const json& j, std::string& error) {
    Options o;
    try {
      o.device_id = j.at("device_id").get<std::string>();
      o.root = j.value("root", o.root);
      auto str = [&](const char* k) {
        auto it = j.find(k);
        return it == j.end() || it->is_null() ? std::string() : it->get<std::string>();
      };
      o.uri = str("mqtt_uri");
      o.version = j.value("version", 5);
      o.ca_file = str("ca_file");
      o.cert_file = str("cert_file");
      o.key_file = str("key_file");
      o.username = str("username");
      o.password = str("password");
      o.link_rate_bps = j.value("link_rate_bps", std::int64_t{0});
      o.max_msgs_per_s = j.value("max_msgs_per_s", o.max_msgs_per_s);
    } catch (const json::exception& e) {
      error = std::string("relay-mqtt options: ") + e.what();
      return std::nullopt;
    }
    if (!IsSafeName(o.device_id)) error = "relay-mqtt options: bad device_id";
    else if (o.root.empty() || o.root.find_first_of("+#") != std::string::npos)
      error = "relay-mqtt options: bad root";
    else if (o.version != 4 && o.version != 5) error = "relay-mqtt options: version must be 4 or 5";
    else if (o.link_rate_bps < 0) error = "relay-mqtt options: link_rate_bps must be >= 0";
    else if (o.max_msgs_per_s < 0) error = "relay-mqtt options: max_msgs_per_s must be >= 0";
    return error.empty() ? std::optional<Options>(o) : std::nullopt;
  }
};

// A job the sensor may pull, as the engine handed it over.
struct Job {
  std::uint16_t id;
  std::string sensor, path;
  std::uint64_t size, chunk, window;
};

struct Get {
  std::string sensor;
  std::int64_t job, off, len, n;
  std::string response_topic, correlation;
};

struct Bucket {
  double tokens = 0;
  Clock::time_point last = Clock::now();
};

struct FdCloser {
  void operator()(int* fd) const {
    if (*fd >= 0) close(*fd);
    delete fd;
  }
};

// A message as both connections deliver it; views into the caller's buffers.
struct Incoming {
  std::string_view topic, payload, response_topic, correlation;
};

class Relay {
 public:
  Relay(const GantryHostV1* host, Options options)
      : host_(host), opt_(std::move(options)), base_(opt_.root + "/" + opt_.device_id + "/sensors/") {
    if (opt_.uri.empty()) {
      // Shared: the host subscribes on its connection and hands us the messages.
      for (const char* leaf : {"+/hello", "+/status", "+/get"}) {
        if (host_->subscribe(host_->ctx, (base_ + leaf).c_str(), &Relay::OnHostMessage, this) != 0)
          throw std::runtime_error("the host refused the subscription to " + base_ + leaf);
      }
      worker_ = std::thread([this] { Work(); });
      return;
    }
    mqtt::create_options copts(opt_.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    // Offers and commands published while the broker is away go out on reconnect.
    copts.set_send_while_disconnected(true, true);
    copts.set_max_buffered_messages(100000);
    client_ = std::make_unique<mqtt::async_client>(opt_.uri, opt_.device_id + "-relay", copts);
    client_->set_connected_handler([this](const std::string&) { OnConnected(); });
    client_->set_message_callback([this](mqtt::const_message_ptr m) { OnPahoMessage(m); });
    worker_ = std::thread([this] { Work(); });
    Connect();
  }

  ~Relay() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
    if (!client_) return;
    try {
      client_->disconnect()->wait_for(std::chrono::seconds(2));
    } catch (const mqtt::exception&) {
      // Not connected (or going away anyway): the broker notices the closed socket.
    }
    client_.reset();  // no Paho callback runs after this
  }

  json Call(const std::string& op, const json& req) {
    try {
      if (op == "offer" || op == "clear-offer" || op == "cmd") {
        auto sensor = req.at("sensor").get<std::string>();
        if (!IsSafeName(sensor)) return ErrorReply("bad_request", "bad sensor id");
        if (op == "offer") Publish(base_ + sensor + "/offer", req.at("offer").dump(), 1, true);
        if (op == "clear-offer") Publish(base_ + sensor + "/offer", "", 1, true);
        if (op == "cmd") Publish(base_ + sensor + "/cmd", req.at("cmd").dump(), 1, false);
        return {{"ok", true}};
      }
      if (op == "set-images") return SetImages(req);
      if (op == "update-jobs") return UpdateJobs(req);
      if (op == "stats") {
        std::lock_guard lock(mu_);
        json jobs = json::object();
        for (auto& [id, bytes] : job_bytes_) jobs[std::to_string(id)] = bytes;
        return {{"ok", true}, {"gets", gets_}, {"frames", frames_}, {"bytes", bytes_}, {"errors", errors_},
                {"coalesced", coalesced_}, {"dropped", dropped_.load()}, {"shared", client_ == nullptr},
                {"connected", client_ ? client_->is_connected() : true}, {"jobs", jobs}};
      }
      return ErrorReply("unknown_op", "relay-mqtt has no operation " + op);
    } catch (const json::exception& e) {
      return ErrorReply("bad_request", std::string(op) + ": " + e.what());
    } catch (const mqtt::exception& e) {
      return ErrorReply("mqtt", std::string(op) + ": " + e.what());
    } catch (const std::runtime_error& e) {
      return ErrorReply("mqtt", std::string(op) + ": " + e.what());
    }
  }

 private:
  void Log(int level, const std::string& msg) { host_->log(host_->ctx, level, msg.c_str()); }

  void Connect() {
    auto b = mqtt::connect_options_builder();
    b.mqtt_version(opt_.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1)
        .keep_alive_interval(std::chrono::seconds(30))
        .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
    // The relay's state lives in the engine and in retained messages; subscriptions are
    // renewed on every connect, so a clean session loses nothing.
    if (opt_.version == 5) b.clean_start(true); else b.clean_session(true);
    if (!opt_.username.empty()) b.user_name(opt_.username).password(opt_.password);
    if (!opt_.ca_file.empty() || !opt_.cert_file.empty()) {
      // The sensor broker's certificate must chain to the CA and name the host we dialled.
      mqtt::ssl_options ssl;
      if (!opt_.ca_file.empty()) ssl.set_trust_store(opt_.ca_file);
      if (!opt_.cert_file.empty()) ssl.set_key_store(opt_.cert_file);
      if (!opt_.key_file.empty()) ssl.set_private_key(opt_.key_file);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(true);
      b.ssl(std::move(ssl));
    }
    try {
      client_->connect(b.finalize(), nullptr, connect_listener_);
    } catch (const mqtt::exception& e) {
      Log(GANTRY_LOG_WARN, std::string("connect to ") + opt_.uri + ": " + e.what());
      RetryConnectLater();
    }
  }

  // Paho reconnects on its own only after a first success; until then, the worker retries.
  struct ConnectListener : mqtt::iaction_listener {
    explicit ConnectListener(Relay* r) : relay(r) {}
    void on_failure(const mqtt::token&) override {
      relay->Log(GANTRY_LOG_WARN, "cannot connect to " + relay->opt_.uri + "; retrying");
      relay->RetryConnectLater();
    }
    void on_success(const mqtt::token&) override {}
    Relay* relay;
  };

  void RetryConnectLater() {
    {
      std::lock_guard lock(mu_);
      reconnect_at_ = Clock::now() + std::chrono::seconds(1);
    }
    cv_.notify_all();
  }

  void OnConnected() {
    Log(GANTRY_LOG_INFO, "connected to " + opt_.uri);
    window_.Reset();  // what was queued before went with the old connection
    DisableNagle(BrokerPort(opt_.uri));
    // Never wait inside a Paho callback: subscribe and return.
    try {
      client_->subscribe(base_ + "+/hello", 1);
      client_->subscribe(base_ + "+/status", 1);
      client_->subscribe(base_ + "+/get", 0);
    } catch (const mqtt::exception& e) {
      Log(GANTRY_LOG_ERROR, std::string("subscribe: ") + e.what());
    }
  }

  static void OnHostMessage(void* arg, const GantryMqttMessage* m) {
    if (!m || !m->topic) return;
    Incoming in{m->topic,
                {static_cast<const char*>(m->payload), m->payload ? m->payload_len : 0},
                m->response_topic ? m->response_topic : "",
                {static_cast<const char*>(m->correlation), m->correlation ? m->correlation_len : 0}};
    static_cast<Relay*>(arg)->OnMessage(in);
  }

  void OnPahoMessage(const mqtt::const_message_ptr& m) {
    std::string response_topic, correlation;
    const auto& props = m->get_properties();
    try {
      if (props.contains(mqtt::property::RESPONSE_TOPIC))
        response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
      if (props.contains(mqtt::property::CORRELATION_DATA))
        correlation = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
    } catch (const std::exception&) {
      response_topic.clear();
    }
    OnMessage({m->get_topic(), m->get_payload_ref().str(), response_topic, correlation});
  }

  void OnMessage(const Incoming& m) {
    std::string_view topic = m.topic;
    if (topic.substr(0, base_.size()) != base_) return;
    auto rest = topic.substr(base_.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) return;
    std::string sensor(rest.substr(0, slash));
    std::string_view leaf = rest.substr(slash + 1);
    if (!IsSafeName(sensor)) {
      Log(GANTRY_LOG_WARN, "dropping a message from a badly named sensor on " + std::string(topic));
      return;
    }
    if (m.payload.empty()) return;  // a cleared retained message
    if (!Admit(sensor)) return;
    if (m.payload.size() > kMaxControlPayload) {
      Log(GANTRY_LOG_WARN, "dropping an oversized message on " + std::string(topic));
      return;
    }
    auto msg = json::parse(m.payload, nullptr, false);
    if (msg.is_discarded() || !msg.is_object()) {
      Log(GANTRY_LOG_WARN, "dropping malformed JSON on " + std::string(topic));
      return;
    }
    if (leaf == "hello" || leaf == "status") {
      json event = {{"type", "relay." + std::string(leaf)}, {"transport", "mqtt"}, {"sensor", sensor},
                    {"msg", msg}};
      host_->post_event(host_->ctx, event.dump().c_str());
    } else if (leaf == "get") {
      OnGet(sensor, msg, m);
    }
  }

  // The sensor's message budget: a token bucket of max_msgs_per_s with one second of burst.
  // Over budget, the message is dropped unread (answering it would be work for the flooder).
  bool Admit(const std::string& sensor) {
    if (opt_.max_msgs_per_s <= 0) return true;
    std::lock_guard lock(budget_mu_);
    auto now = Clock::now();
    if (budgets_.size() >= sweep_at_) {
      for (auto it = budgets_.begin(); it != budgets_.end();)
        it = now - it->second.last > kBudgetIdle ? budgets_.erase(it) : std::next(it);
      // The next sweep waits until the table has doubled: during a flood of fresh ids nothing
      // is idle yet, and sweeping at every message made the flood quadratic on the thread
      // that also carries the agent's commands.
      sweep_at_ = std::max(kBudgetSweepAt, 2 * budgets_.size());
    }
    double rate = static_cast<double>(opt_.max_msgs_per_s);
    auto [it, fresh] = budgets_.try_emplace(sensor, Bucket{rate, now});
    auto& b = it->second;
    if (!fresh)
      b.tokens = std::min(rate, b.tokens + rate * std::chrono::duration<double>(now - b.last).count());
    b.last = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    ++dropped_;
    return false;
  }

  void OnGet(const std::string& sensor, const json& msg, const Incoming& m) {
    auto job = Int(msg, "job"), off = Int(msg, "off"), len = Int(msg, "len"), n = Int(msg, "n");
    if (!job || !off || !len || !n) {
      Log(GANTRY_LOG_WARN, "dropping a get from " + sensor + " without integer job/off/len/n");
      return;
    }
    Get g{sensor, *job, *off, *len, *n, std::string(m.response_topic), std::string(m.correlation)};
    // A sensor may direct frames anywhere but at the agent's or another sensor's topics.
    if (!g.response_topic.empty() &&
        (g.response_topic.find_first_of("+#") != std::string::npos ||
         (g.response_topic.compare(0, opt_.root.size() + 1, opt_.root + "/") == 0 &&
          g.response_topic.compare(0, base_.size() + sensor.size() + 1, base_ + sensor + "/") != 0))) {
      Log(GANTRY_LOG_WARN, "dropping a get from " + sensor + " with response topic " +
                               g.response_topic);
      return;
    }
    bool busy = false, queued = false;
    {
      std::lock_guard lock(mu_);
      // A sensor that asks again before its last get was served (its own time-out, under
      // load) wants only the newest: that one takes the queued one's place in line. Answering
      // both sent every window twice and, at 1,000 sensors, the duplicates slowed the queue
      // into more time-outs.
      auto pending = pending_.find(sensor);
      if (pending != pending_.end() && pending->second > 0) {
        auto same = std::find_if(queue_.begin(), queue_.end(),
                                 [&](const Get& q) { return q.sensor == sensor; });
        if (same != queue_.end()) {
          *same = std::move(g);
          queued = true;
          ++coalesced_;
        }
      }
      if (!queued) {
        busy = queue_.size() >= kMaxQueue || pending_[sensor] >= kMaxPendingPerLink;
        if (!busy) {
          ++pending_[sensor];
          queue_.push_back(std::move(g));
        }
      }
    }
    // On Paho's receive thread, which also completes partly written frames: never wait for
    // the send window here (a full window would then wait out its patience on every get).
    if (busy) SendErr(g, "Busy", kBusyRetryMs, std::chrono::milliseconds(0));
    else cv_.notify_one();
  }

  // A job entry of set-images / update-jobs, checked; an error reply when it is not valid.
  static std::variant<Job, json> ParseJob(const json& j) {
    auto id = j.at("job").get<std::int64_t>();
    if (id < 1 || id > 65535) return ErrorReply("bad_request", "job id out of range");
    Job job{static_cast<std::uint16_t>(id), j.at("sensor").get<std::string>(),
            j.at("path").get<std::string>(), j.at("size").get<std::uint64_t>(),
            j.at("chunk").get<std::uint64_t>(), j.at("window").get<std::uint64_t>()};
    if (job.size > 0xFFFFFFFFull || job.chunk == 0 || job.chunk > 4096 || job.window == 0)
      return ErrorReply("bad_request", "job " + std::to_string(id) + " has bad limits");
    return job;
  }

  json SetImages(const json& req) {
    std::map<std::uint16_t, Job> jobs;
    for (auto& j : req.at("jobs")) {
      auto parsed = ParseJob(j);
      if (auto* err = std::get_if<json>(&parsed)) return *err;
      auto& job = std::get<Job>(parsed);
      jobs.emplace(job.id, std::move(job));
    }
    std::lock_guard lock(mu_);
    jobs_ = std::move(jobs);
    for (auto it = job_bytes_.begin(); it != job_bytes_.end();)
      it = jobs_.count(it->first) ? std::next(it) : job_bytes_.erase(it);
    return {{"ok", true}};
  }

  // {"add": [job entries], "remove": [job ids]}: all checked before any is applied.
  json UpdateJobs(const json& req) {
    std::vector<Job> add;
    for (auto& j : req.at("add")) {
      auto parsed = ParseJob(j);
      if (auto* err = std::get_if<json>(&parsed)) return *err;
      add.push_back(std::move(std::get<Job>(parsed)));
    }
    std::vector<std::int64_t> remove;
    for (auto& id : req.at("remove")) remove.push_back(id.get<std::int64_t>());
    std::lock_guard lock(mu_);
    for (auto id : remove) {
      if (id < 1 || id > 65535) continue;
      jobs_.erase(static_cast<std::uint16_t>(id));
      job_bytes_.erase(static_cast<std::uint16_t>(id));
    }
    for (auto& job : add) {
      job_bytes_.erase(job.id);
      jobs_.insert_or_assign(job.id, std::move(job));
    }
    return {{"ok", true}};
  }

  void Work() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (reconnect_at_ && Clock::now() >= *reconnect_at_) {
        reconnect_at_.reset();
        lock.unlock();
        Connect();
        lock.lock();
        continue;
      }
      if (queue_.empty()) {
        if (reconnect_at_) cv_.wait_until(lock, *reconnect_at_);
        else cv_.wait(lock);
        continue;
      }
      Get g = std::move(queue_.front());
      queue_.pop_front();
      auto job = jobs_.find(static_cast<std::uint16_t>(g.job));
      std::optional<Job> found;
      if (g.job >= 1 && g.job <= 65535 && job != jobs_.end() && job->second.sensor == g.sensor)
        found = job->second;
      lock.unlock();
      Serve(g, found);
      lock.lock();
      if (--pending_[g.sensor] <= 0) pending_.erase(g.sensor);
    }
  }

  void Serve(const Get& g, const std::optional<Job>& job) {
    {
      std::lock_guard lock(mu_);
      ++gets_;
    }
    if (!job) return SendErr(g, "UnknownJob", 0);
    if (g.off < 0 || static_cast<std::uint64_t>(g.off) >= job->size || g.len <= 0 ||
        static_cast<std::uint64_t>(g.len) > job->chunk || g.n <= 0)
      return SendErr(g, "OutOfRange", 0);
    std::uint64_t remaining = job->size - g.off;
    std::uint64_t frames = std::min<std::uint64_t>(
        {static_cast<std::uint64_t>(g.n), job->window, (remaining + g.len - 1) / g.len});
    std::uint64_t bytes = std::min<std::uint64_t>(remaining, frames * g.len);
    if (opt_.link_rate_bps > 0) {
      if (auto wait_ms = Pace(g.sensor, bytes); wait_ms > 0)
        return SendErr(g, "Busy", static_cast<int>(wait_ms));
    }
    int fd = FileFor(job->path);
    if (fd < 0) {
      Log(GANTRY_LOG_ERROR, "cannot open image " + job->path + ": " + std::strerror(errno));
      return SendErr(g, "Busy", 1000);
    }
    std::string buf(bytes, '\0');
    ssize_t got = pread(fd, buf.data(), bytes, g.off);
    if (got != static_cast<ssize_t>(bytes)) {
      Log(GANTRY_LOG_ERROR, "short read from " + job->path);
      return SendErr(g, "Busy", 1000);
    }
    std::string topic = g.response_topic.empty() ? base_ + g.sensor + "/data" : g.response_topic;
    for (std::uint64_t i = 0; i < frames; ++i) {
      std::uint64_t at = i * g.len;
      std::uint64_t len = std::min<std::uint64_t>(g.len, bytes - at);
      bool last = g.off + at + len == job->size;
      auto frame = relay::wire::Frame(job->id, static_cast<std::uint32_t>(g.off + at),
                               std::string_view(buf).substr(at, len), last);
      if (!PublishData(topic, frame, g.correlation)) return;
      std::lock_guard lock(mu_);
      ++frames_;
      bytes_ += len;
      job_bytes_[job->id] += len;
    }
  }

  // Token bucket per link, one second of burst (at least one request): 0 = go, else ms to wait.
  std::int64_t Pace(const std::string& sensor, std::uint64_t bytes) {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    double cap = std::max<double>(opt_.link_rate_bps, bytes);
    auto& b = buckets_.try_emplace(sensor, Bucket{cap, now}).first->second;
    b.tokens = std::min(cap, b.tokens + opt_.link_rate_bps *
                                            std::chrono::duration<double>(now - b.last).count());
    b.last = now;
    if (b.tokens >= bytes) {
      b.tokens -= bytes;
      return 0;
    }
    return static_cast<std::int64_t>((bytes - b.tokens) * 1000 / opt_.link_rate_bps) + 1;
  }

  int FileFor(const std::string& path) {
    auto it = files_.find(path);
    if (it != files_.end()) return *it->second;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (files_.size() > 64) files_.clear();  // images are few; never hoard descriptors
    files_.emplace(path, std::unique_ptr<int, FdCloser>(new int(fd)));
    return fd;
  }

  void SendErr(const Get& g, const char* code, int retry_ms,
               std::chrono::milliseconds patience = std::chrono::seconds(1)) {
    json err = {{"job", g.job}, {"code", code}};
    if (retry_ms > 0) err["retry_ms"] = retry_ms;
    {
      std::lock_guard lock(mu_);
      ++errors_;
    }
    std::string topic = g.response_topic.empty() ? base_ + g.sensor + "/err" : g.response_topic;
    PublishData(topic, err.dump(), g.correlation, patience);
  }

  // QoS 0 data goes out only while connected: a frame queued for later would be stale.
  // patience: how long to wait for room in the send window (the worker waits; Paho's threads
  // must not).
  bool PublishData(const std::string& topic, const std::string& payload,
                   const std::string& correlation,
                   std::chrono::milliseconds patience = std::chrono::seconds(1)) {
    if (!client_) {
      bool props = !correlation.empty() && opt_.version == 5;
      GantryMqttMessage m{topic.c_str(), payload.data(), static_cast<std::uint32_t>(payload.size()),
                          0, 0, nullptr, props ? correlation.data() : nullptr,
                          props ? static_cast<std::uint32_t>(correlation.size()) : 0};
      return host_->publish(host_->ctx, &m) == 0;
    }
    if (!client_->is_connected()) return false;
    // Room in the send window first (core/send_window.hpp): frames wait here, bounded, not in
    // Paho's queue.
    if (!window_.Acquire(patience)) return false;
    try {
      auto msg = mqtt::make_message(topic, payload, 0, false);
      if (!correlation.empty() && opt_.version == 5) {
        mqtt::properties props;
        props.add(mqtt::property(mqtt::property::CORRELATION_DATA, mqtt::binary(correlation)));
        msg->set_properties(props);
      }
      client_->publish(msg, nullptr, written_);
      return true;
    } catch (const mqtt::exception& e) {
      window_.Release();
      Log(GANTRY_LOG_WARN, "publish to " + topic + ": " + e.what());
      return false;
    }
  }

  void Publish(const std::string& topic, const std::string& payload, int qos, bool retain) {
    if (!client_) {
      GantryMqttMessage m{topic.c_str(), payload.data(), static_cast<std::uint32_t>(payload.size()),
                          qos, retain ? 1 : 0, nullptr, nullptr, 0};
      if (host_->publish(host_->ctx, &m) != 0)
        throw std::runtime_error("the host did not take the message for " + topic);
      return;
    }
    client_->publish(topic, payload.data(), payload.size(), qos, retain);
  }

  const GantryHostV1* host_;
  Options opt_;
  std::string base_;  // <root>/<device-id>/sensors/
  // Frames handed to the own connection and not yet written (see PublishData); declared
  // before the client, so they outlive its callbacks.
  SendWindow window_{256};
  struct WrittenListener : mqtt::iaction_listener {
    explicit WrittenListener(SendWindow& w) : window(w) {}
    void on_success(const mqtt::token&) override { window.Release(); }
    void on_failure(const mqtt::token&) override { window.Release(); }
    SendWindow& window;
  } written_{window_};
  std::unique_ptr<mqtt::async_client> client_;
  ConnectListener connect_listener_{this};

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::optional<Clock::time_point> reconnect_at_;
  std::deque<Get> queue_;
  std::map<std::string, int> pending_;
  std::map<std::uint16_t, Job> jobs_;
  std::map<std::string, Bucket> buckets_;
  std::uint64_t gets_ = 0, frames_ = 0, bytes_ = 0, errors_ = 0;  // gets served (not dropped)
  std::uint64_t coalesced_ = 0;  // gets that replaced the same sensor's queued one
  std::mutex budget_mu_;  // the MQTT callback thread's; apart from mu_, which the worker holds
  std::unordered_map<std::string, Bucket> budgets_;
  std::size_t sweep_at_ = kBudgetSweepAt;  // budgets_.size() that triggers the next sweep
  std::atomic<std::uint64_t> dropped_{0};
  std::map<std::uint16_t, std::uint64_t> job_bytes_;
  std::map<std::string, std::unique_ptr<int, FdCloser>> files_;  // worker thread only
  std::thread worker_;
};

void* Create(const GantryHostV1* host, const char* config_json, char** error) {
  auto fail = [&](const std::string& why) -> void* {
    if (error) *error = Dup(why);
    return nullptr;
  };
  if (!host || host->abi_version != GANTRY_PLUGIN_ABI_V1 || !host->log || !host->post_event)
    return fail("relay-mqtt needs a v1 host with log and post_event");
  auto config = json::parse(config_json ? config_json : "", nullptr, false);
  if (!config.is_object()) return fail("relay-mqtt options are not a JSON object");
  std::string why;
  auto options = Options::Parse(config, why);
  if (!options) return fail(why);
  if (options->uri.empty() && (!host->publish || !host->subscribe))
    return fail("relay-mqtt: no mqtt_uri and the host has no connection to share");
  try {
    return new Relay(host, std::move(*options));
  } catch (const std::exception& e) {
    return fail(std::string("relay-mqtt: ") + e.what());
  }
}

void Destroy(void* instance) { delete static_cast<Relay*>(instance); }

char* CallOp(void* instance, const char* op, const char* request_json) {
  auto req = json::parse(request_json ? request_json : "", nullptr, false);
  json reply = req.is_discarded() ? ErrorReply("bad_request", "request is not JSON")
                                  : static_cast<Relay*>(instance)->Call(op ? op : "", req);
  return Dup(reply.dump());
}

void FreeString(char* s) { std::free(s); }

const GantryPluginV1 kPlugin = {GANTRY_PLUGIN_ABI_V1, "relay", "mqtt", Create, Destroy, CallOp,
                                FreeString};

}  // namespace

}  // namespace gantry::relay_mqtt

extern "C" __attribute__((visibility("default"))) const GantryPluginV1* gantry_plugin_v1(void) {
  return &gantry::relay_mqtt::kPlugin;
}
