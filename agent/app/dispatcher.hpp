#pragma once
// Turns MQTT commands into engine work and engine reports into MQTT messages (docs/protocol.md).
// Runs on the loop thread; the Reporter side is called from the engine's runner and posts.
#include <cstdint>
#include <mutex>
#include <vector>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cache/block_cache.hpp"
#include "command/command.hpp"
#include "command/ledger.hpp"
#include "config/config.hpp"
#include "core/event_loop.hpp"
#include "crypto/jws.hpp"
#include "mqtt/client.hpp"
#include "relay/relay_engine.hpp"
#include "status/outbox.hpp"
#include "store/db.hpp"
#include "txn/engine.hpp"

namespace gantry::app {

class Dispatcher final : public txn::Reporter {
 public:
  Dispatcher(const config::Config& cfg, EventLoop& loop, store::Db& db, cache::BlockCache& cache,
             const crypto::TrustStore& trust, status::Outbox& outbox, mqtt::Client& client);
  void SetEngine(txn::Engine* engine) { engine_ = engine; }
  // The sensor relay (null when no transport is configured); given the committed revision's
  // firmware now and after every commit.
  void SetRelay(relay::RelayEngine* relay);

  // Before the engine starts: re-emits the final status of every transaction whose final
  // event a crash kept out of the outbox (see txn::Journal::UnreportedFinals).
  void EmitUnreportedFinals();

  // Loop thread.
  void OnConnected();
  void OnMessage(const mqtt::Message& message);
  void PublishState();
  // A relay event: published on P/progress with the committed revision and its command id.
  void EmitSensor(const nlohmann::json& event);

  // txn::Reporter, from the runner thread.
  void Progress(const nlohmann::json& event) override;
  void StateChanged() override;
  void Committed(const manifest::State& state, const std::string& rev) override;

 private:
  // Executes a parsed command; returns the reply result. Emits WONTGO/QUEUED as needed.
  ExpectedVoid Execute(const command::Command& cmd);
  ExpectedVoid ExecuteUpdate(const command::Command& cmd);
  ExpectedVoid ExecuteRollback(const command::Command& cmd);
  bool AllowedResponseTopic(const std::string& topic) const;
  // The reply on P/reply (through the outbox) and on the command's response topic.
  void SendReply(const std::string& reply, const mqtt::Message& request);
  // The response-topic half alone (MQTT 5), for a reply already in the outbox.
  void SendResponse(const std::string& reply, const mqtt::Message& request);
  void Emit(const nlohmann::json& event);
  void PublishUnpersisted(const std::string& topic, const std::string& payload, bool retain);
  void GiveFirmware(const manifest::State& state, const std::string& rev);
  // Queues a runner report (an event, or nullopt: republish the state) for the loop.
  void PostReport(std::optional<nlohmann::json> report);
  void FlushReports();
  // Forgets command ids, and the final transactions they started, past their retention.
  void Prune();

  const config::Config& cfg_;
  EventLoop& loop_;
  store::Db& db_;
  cache::BlockCache& cache_;
  const crypto::TrustStore& trust_;
  status::Outbox& outbox_;
  mqtt::Client& client_;
  command::Ledger ledger_;
  txn::Engine* engine_ = nullptr;
  relay::RelayEngine* relay_ = nullptr;
  bool sensor_state_due_ = false;  // a P/state for sensor events is scheduled
  std::string prefix_;
  std::string started_at_;
  std::optional<std::string> wake_;
  int since_prune_ = 0;  // commands since the last Prune()
  // Reports from the runner and the relay's sensor events not yet taken by the loop, in order; all that gathered while the
  // loop was busy are written in one commit (intake then waits for one fsync, not dozens).
  std::mutex reports_mutex_;
  std::vector<std::optional<nlohmann::json>> reports_;  // a transaction was queued: wake the runner after commit
};

}  // namespace gantry::app
