#pragma once
// A real gantryd for system tests: a real mosquitto, a real HTTP block server, real keys, a
// real data dir; the test talks to the agent only over MQTT, as an operator would.
//
//   AgentFixture a;                         // broker + block server + keys, agent not started
//   a.StartAgent();                         // gantryd with a config written from a.config
//   auto env = a.Sign(a.Revision("r1", 1, state, blocks));
//   a.Send({{"id","c1"},{"op","update"},{"revision", env}});
//   a.WaitFinal("c1");                      // the final progress event for that command
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/hex.hpp"
#include "digest/sha256.hpp"
#include "mqtt/client.hpp"
#include "test_util.hpp"
#include "tools/block_server.hpp"
#include "tools/mosquitto.hpp"
#include "unit/crypto/signing_test_util.hpp"

namespace gantry::test {

inline std::string Sha256Hex(const std::string& bytes) {
  digest::Sha256 h;
  h.Update(bytes.data(), bytes.size());
  return h.FinalHex();
}

struct Received {
  std::string topic;
  nlohmann::json body;
  bool retained = false;
  std::string correlation;
};

struct Tls {
  std::string ca, cert, key;
};

// An operator-side MQTT client that records everything under gantry/<device>/#.
class Operator {
 public:
  Operator(const std::string& uri, const std::string& device, int version, const std::string& client_id,
           std::vector<std::string> extra_subscriptions = {}, const Tls* tls = nullptr) {
    mqtt::Options o;
    if (tls) {
      o.ca_file = tls->ca;
      o.cert_file = tls->cert;
      o.key_file = tls->key;
    }
    o.uri = uri;
    o.client_id = client_id;
    o.version = version;
    o.clean_session = false;  // keeps messages queued while the broker restarts
    o.subscriptions = {"gantry/" + device + "/#"};
    for (auto& s : extra_subscriptions) o.subscriptions.push_back(s);
    client_ = mqtt::MakePahoClient(o);
    client_->Start({[this] {
                      std::lock_guard l(mu_);
                      ready_ = true;
                      cv_.notify_all();
                    },
                    [](const std::string&) {},
                    [this](mqtt::Message m) {
                      std::lock_guard l(mu_);
                      Received r{m.topic, nlohmann::json::parse(m.payload, nullptr, false), m.retain,
                                 m.correlation_data};
                      if (m.payload.empty()) r.body = nullptr;
                      log_.push_back(std::move(r));
                      cv_.notify_all();
                    }});
    std::unique_lock l(mu_);
    if (!cv_.wait_for(l, std::chrono::seconds(20), [this] { return ready_; }))
      throw std::runtime_error("operator client could not connect to " + uri);
  }
  ~Operator() { client_->Stop(); }

  void Publish(const std::string& topic, const std::string& payload, const std::string& response_topic = "",
               const std::string& correlation = "") {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    client_->Publish({topic, payload, 1, false, response_topic, correlation}, [&](bool) {
      std::lock_guard l(mu);
      done = true;
      cv.notify_all();
    });
    std::unique_lock l(mu);
    cv.wait_for(l, std::chrono::seconds(10), [&] { return done; });
  }

  // Waits until pred holds over the whole log.
  bool WaitFor(const std::function<bool(const std::vector<Received>&)>& pred,
               std::chrono::seconds timeout = std::chrono::seconds(60)) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return pred(log_); });
  }
  std::vector<Received> Log() {
    std::lock_guard l(mu_);
    return log_;
  }
  // Calls f on each received message in order, under the log's lock, without copying the log
  // (a copy per wake-up made waits over a long log cost more than what they measured).
  template <typename F>
  void Visit(F&& f) {
    std::lock_guard l(mu_);
    for (const auto& r : log_) f(r);
  }
  // f(log) under the log's lock; what it returns must not point into the log.
  template <typename F>
  auto WithLog(F&& f) {
    std::lock_guard l(mu_);
    return f(static_cast<const std::vector<Received>&>(log_));
  }
  size_t LogSize() {
    std::lock_guard l(mu_);
    return log_.size();
  }

 private:
  std::unique_ptr<mqtt::Client> client_;
  // Recursive: WaitFor's predicates read the log through Log().
  std::recursive_mutex mu_;
  std::condition_variable_any cv_;
  bool ready_ = false;
  std::vector<Received> log_;
};

class AgentFixture {
 public:
  explicit AgentFixture(int mqtt_version = 5, std::string broker_extra = "")
      : broker_(std::move(broker_extra)), version_(mqtt_version) {
    key_ = MakeTestKey(dir_.path() / "keys", dir_.path() / "trust", "ops", "EdDSA");
    config = {{"device_id", device},
              {"groups", {"lab"}},
              {"data_dir", (dir_.path() / "data").string()},
              {"plugin_dir", BuildDir() + "/plugins"},
              {"mqtt", {{"uri", broker_.uri()}, {"version", mqtt_version}}},
              {"trust", {{"keys_dir", (dir_.path() / "trust").string()}}},
              {"update", {{"commit_window_s", 1}}}};
  }
  ~AgentFixture() { StopAgent(); }

  const std::string device = "gw-test";
  nlohmann::json config;

  std::filesystem::path dir() const { return dir_.path(); }
  std::filesystem::path data_dir() const { return dir_.path() / "data"; }
  Mosquitto& broker() { return broker_; }
  BlockServer& blocks() { return blocks_; }
  const TestKey& key() const { return key_; }
  std::string log_file() const { return (dir_.path() / "gantryd.log").string(); }
  std::string AgentLog() const { return Slurp(log_file()); }
  Process& agent() { return agent_; }

  void StartAgent() {
    Spit(dir_.path() / "gantryd.json", config.dump(2));
    agent_.Start({BuildDir() + "/gantryd", "--config", (dir_.path() / "gantryd.json").string(), "-v"},
                 log_file());
    op();
  }
  void StopAgent() { agent_.Stop(); }
  void KillAgent() { agent_.Kill(SIGKILL); }
  Operator& op() {
    if (!op_)
      op_ = std::make_unique<Operator>(broker_.uri(UriScheme()), device, version_, "operator-" + device,
                                       std::vector<std::string>{}, operator_tls ? &*operator_tls : nullptr);
    return *op_;
  }
  std::string UriScheme() const { return operator_tls ? "ssl" : "tcp"; }
  // Set before StartAgent() when the broker requires TLS client certificates.
  std::optional<Tls> operator_tls;

  std::string Prefix() const { return "gantry/" + device; }

  // Blocks served at blocks().url("/objects/").
  std::string PutBlock(const std::string& bytes) {
    auto id = Sha256Hex(bytes);
    blocks_.Put("objects/" + id, bytes);
    return id;
  }

  // A revision document; objects are sized from the blocks put on the server.
  nlohmann::json Revision(const std::string& rev, int seq, const nlohmann::json& state,
                          const std::map<std::string, std::string>& blocks) {
    nlohmann::json objects = nlohmann::json::object();
    for (auto& [id, bytes] : blocks) objects[id] = {{"size", bytes.size()}};
    return {{"rev", rev}, {"seq", seq}, {"targets", {device}}, {"objects_base", blocks_.url("/objects/")},
            {"objects", objects}, {"state", state}};
  }
  nlohmann::json Sign(const nlohmann::json& doc) {
    return nlohmann::json::parse(SignRevision(doc, {key_.key}));
  }

  void Send(const nlohmann::json& cmd) { op().Publish(Prefix() + "/cmd", cmd.dump()); }

  std::vector<nlohmann::json> Progress(const std::string& id) {
    std::vector<nlohmann::json> out;
    auto topic = Prefix() + "/progress";
    op().Visit([&](const Received& r) {
      if (r.topic == topic && r.body.is_object() && r.body.value("id", "") == id) out.push_back(r.body);
    });
    return out;
  }
  std::vector<nlohmann::json> Replies(const std::string& id) {
    std::vector<nlohmann::json> out;
    auto topic = Prefix() + "/reply";
    op().Visit([&](const Received& r) {
      if (r.topic == topic && r.body.is_object() && r.body.value("id", nlohmann::json()) == id)
        out.push_back(r.body);
    });
    return out;
  }
  nlohmann::json LastState() {
    auto topic = Prefix() + "/state";
    return op().WithLog([&](const std::vector<Received>& log) {
      for (auto it = log.rbegin(); it != log.rend(); ++it)
        if (it->topic == topic) return it->body;
      return nlohmann::json();
    });
  }

  // Every message the agent published so far is valid against its schema (schemas/), checked
  // by an independent validator. Returns "" or the validator's complaint.
  std::string SchemaProblems() {
    std::map<std::string, std::string> lines;  // schema → one JSON document per line
    for (auto& r : op().Log()) {
      if (r.body.is_null() && !r.retained) continue;
      std::string schema;
      if (r.topic == Prefix() + "/progress") schema = "progress";
      else if (r.topic == Prefix() + "/reply") schema = "reply";
      else if (r.topic == Prefix() + "/state") schema = "device-state";
      else if (r.topic == Prefix() + "/online") schema = "online";
      else continue;
      if (r.body.is_null()) continue;
      lines[schema] += r.body.dump() + "\n";
    }
    std::string problems;
    for (auto& [schema, text] : lines) {
      auto file = dir_.path() / ("captured-" + schema + ".jsonl");
      Spit(file, text);
      auto [rc, out] = Sh("/usr/bin/python3 " + SourceDir() + "/tests/unit/schemas/check_schemas.py validate --schema " +
                          schema + " --lines " + file.string());
      if (rc != 0) problems += schema + ": " + out + "\n";
    }
    return problems;
  }

  static bool IsFinal(const std::string& s) {
    return s == "DONE" || s == "ERROR" || s == "WONTGO" || s == "CANCELLED";
  }
  // The final status event of command id; throws with the agent's log on time-out.
  nlohmann::json WaitFinal(const std::string& id, std::chrono::seconds timeout = std::chrono::seconds(90)) {
    nlohmann::json final_event;
    bool ok = op().WaitFor(
        [&](const std::vector<Received>& log) {
          for (auto& r : log)
            if (r.topic == Prefix() + "/progress" && r.body.is_object() && r.body.value("id", "") == id &&
                IsFinal(r.body.value("status", ""))) {
              final_event = r.body;
              return true;
            }
          return false;
        },
        timeout);
    if (!ok) throw std::runtime_error("no final status for " + id + "; agent log:\n" + AgentLog());
    return final_event;
  }
  nlohmann::json WaitReply(const std::string& id, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    bool ok = op().WaitFor([&](auto&) { return !Replies(id).empty(); }, timeout);
    if (!ok) throw std::runtime_error("no reply for " + id + "; agent log:\n" + AgentLog());
    return Replies(id).front();
  }
  bool WaitOnline(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    return op().WaitFor(
        [&](const std::vector<Received>& log) {
          for (auto it = log.rbegin(); it != log.rend(); ++it)
            if (it->topic == Prefix() + "/online") return it->body.is_object() && it->body.value("online", false);
          return false;
        },
        timeout);
  }

 private:
  TempDir dir_;
  Mosquitto broker_;
  BlockServer blocks_;
  int version_;
  TestKey key_;
  Process agent_;
  std::unique_ptr<Operator> op_;
};

// A state with no containers whose blocks are sensor firmware: exercises the whole update
// path (verify, fetch, commit) without LXC.
inline nlohmann::json FirmwareState(const std::map<std::string, std::string>& model_to_block) {
  nlohmann::json s = {{"#spec", "pantavisor-service-system@1"}};
  for (auto& [model, id] : model_to_block) {
    s["_sensors/" + model + "/firmware.bin"] = id;
    s["_sensors/" + model + "/sensor.json"] = {{"version", "1.0.0"}, {"seq", 1}, {"targets", {"*"}}};
  }
  return s;
}

}  // namespace gantry::test
