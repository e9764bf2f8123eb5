#include "app/dispatcher.hpp"

#include "core/log.hpp"
#include "manifest/revision.hpp"
#include "core/time.hpp"
#include "mqtt/client.hpp"
#include "txn/admission.hpp"
#include "txn/journal.hpp"

#ifndef GANTRY_VERSION
#define GANTRY_VERSION "0.0.0"
#endif

namespace gantry::app {
namespace {
constexpr const char* kLog = "dispatch";

// Error messages may quote hostile bytes that are not UTF-8; a strict dump would throw.
std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool IsFinalStatus(const std::string& s) { return s == "DONE" || s == "ERROR" || s == "WONTGO" || s == "CANCELLED"; }
}  // namespace

Dispatcher::Dispatcher(const config::Config& cfg, EventLoop& loop, store::Db& db,
                       cache::BlockCache& cache, const crypto::TrustStore& trust,
                       status::Outbox& outbox, mqtt::Client& client)
    : cfg_(cfg), loop_(loop), db_(db), cache_(cache), trust_(trust), outbox_(outbox),
      client_(client), ledger_(db), prefix_(cfg.mqtt.root + "/" + cfg.device_id), started_at_(NowRfc3339()) {
  Prune();
}

// Command ids and the transactions they started are remembered for the same time
// (docs/protocol.md): a repeated id finds its reply and its final event together.
void Dispatcher::Prune() {
  auto now = NowUnix();
  if (auto pruned = ledger_.Prune(now); !pruned)
    log::Warn(kLog, pruned.error().WithContext("pruning command ids").String());
  auto pruned = txn::Journal(db_).Prune(now, command::Ledger::kKeepSeconds, command::Ledger::kKeepAtLeast);
  if (!pruned) log::Warn(kLog, pruned.error().WithContext("pruning final transactions").String());
}

void Dispatcher::OnConnected() {
  // online true only now that the command subscriptions are acknowledged; state again on
  // every reconnect.
  outbox_.OnConnected();
  nlohmann::json online = {{"online", true}, {"ts", NowRfc3339()}};
  (void)outbox_.Enqueue(prefix_ + "/online", Dump(online), 1, true);
  PublishState();
}

void Dispatcher::Emit(const nlohmann::json& event) {
  auto e = event;
  e["ts"] = NowRfc3339();
  log::Info(kLog, "progress " + Dump(e));
  // A transaction's final event and the end of its "unreported" mark commit together.
  store::Transaction tx(db_);
  auto payload = Dump(e);
  auto r = outbox_.Enqueue(prefix_ + "/progress", payload, 1, false);
  if (r && IsFinalStatus(e.value("status", "")) && e.value("id", nlohmann::json()).is_string())
    r = txn::Journal(db_).MarkReported(e["id"].get<std::string>(), payload);
  if (r) r = tx.Commit();
  if (!r) {
    log::Error(kLog, r.error().String());
    PublishUnpersisted(prefix_ + "/progress", Dump(e), false);
  }
}

// The outbox could not persist a message (a full disk, typically): send it without the
// outbox's guarantees rather than not at all, or the operator waits for a status forever.
void Dispatcher::PublishUnpersisted(const std::string& topic, const std::string& payload, bool retain) {
  client_.Publish({topic, payload, 1, retain, "", ""}, nullptr);
}

void Dispatcher::EmitUnreportedFinals() {
  auto rows = txn::Journal(db_).UnreportedFinals();
  if (!rows) {
    log::Error(kLog, rows.error().WithContext("unreported final statuses").String());
    return;
  }
  for (const auto& row : *rows) {
    auto f = txn::FinalStatusOf(row);
    log::Warn(kLog, "the final status of " + row.cmd_id + " was not sent before the agent stopped; sending it now");
    Emit({{"id", row.cmd_id}, {"rev", row.rev}, {"seq", row.seq}, {"status", f.status}, {"progress", f.progress},
          {"msg", f.msg}});
  }
}

void Dispatcher::Progress(const nlohmann::json& event) { PostReport(event); }

void Dispatcher::StateChanged() { PostReport(std::nullopt); }

void Dispatcher::PostReport(std::optional<nlohmann::json> report) {
  bool first;
  {
    std::lock_guard lock(reports_mutex_);
    first = reports_.empty();
    reports_.push_back(std::move(report));
  }
  if (first) loop_.Post([this] { FlushReports(); });
}

void Dispatcher::FlushReports() {
  std::vector<std::optional<nlohmann::json>> reports;
  {
    std::lock_guard lock(reports_mutex_);
    reports.swap(reports_);
  }
  // Each report is its own savepoint (Emit and PublishState fall back to a direct publish
  // when theirs fails); the batch is one commit.
  store::Transaction tx(db_);
  for (auto& r : reports) {
    if (r) Emit(*r);
    else PublishState();
  }
  if (auto c = tx.Commit(); !c) {
    // Rolled back, so nothing of the batch left: each again on its own (a full disk
    // typically), where a report that cannot be persisted is published directly.
    log::Error(kLog, c.error().WithContext("progress events").String());
    for (auto& r : reports) {
      if (r) Emit(*r);
      else PublishState();
    }
  }
}

void Dispatcher::Committed(const manifest::State& state, const std::string& rev) {
  log::Info(kLog, "revision " + rev + " committed");
  loop_.Post([this, state, rev] { GiveFirmware(state, rev); });
}

void Dispatcher::SetRelay(relay::RelayEngine* relay) {
  relay_ = relay;
  if (!relay_) return;
  txn::Journal journal(db_);
  auto cur = journal.Current();
  if (!cur || !*cur) return;
  auto rev = manifest::ParseRevision((*cur)->document);
  if (rev) GiveFirmware(rev->state, rev->rev);
}

void Dispatcher::GiveFirmware(const manifest::State& state, const std::string& rev) {
  if (!relay_) return;
  std::vector<relay::Firmware> firmware;
  for (const auto& s : state.sensors) {
    relay::Firmware f;
    f.model = s.model;
    f.sha256 = s.block;
    auto path = cache_.PathOf(s.block);
    std::error_code ec;
    f.size = s.size.value_or(std::filesystem::file_size(path, ec));
    f.version = s.version;
    f.seq = s.seq;
    f.vid = s.vid;
    f.cid = s.cid;
    f.targets = s.targets;
    f.image = path;
    firmware.push_back(std::move(f));
  }
  if (auto r = relay_->SetFirmware(rev, std::move(firmware)); !r) log::Error(kLog, r.error().String());
  PublishState();
}

// Sensor events carry the id of the command whose revision brought the firmware.
void Dispatcher::EmitSensor(const nlohmann::json& event) {
  auto e = event;
  txn::Journal journal(db_);
  auto cur = journal.Current();
  std::string rev = cur && *cur ? (*cur)->rev : "";
  std::string cmd_id;
  auto st = db_.Prepare("SELECT cmd_id FROM transactions WHERE rev = ? AND state = 'COMMITTED' ORDER BY id DESC LIMIT 1");
  if (st) {
    st->Bind(1, rev);
    if (st->Step().value_or(false)) cmd_id = st->Text(0);
  }
  e["id"] = cmd_id;
  e["rev"] = rev;
  // Batched with the other reports: a burst of sensor events is one durable commit.
  PostReport(std::move(e));
  // Many sensors move at once: one state message sums up a burst of their events.
  if (!sensor_state_due_) {
    sensor_state_due_ = true;
    loop_.After(std::chrono::milliseconds(250), [this] {
      sensor_state_due_ = false;
      PublishState();
    });
  }
}

void Dispatcher::PublishState() {
  nlohmann::json j;
  auto snap = engine_ ? engine_->GetSnapshot() : txn::Snapshot{};
  j["rev"] = snap.rev ? nlohmann::json(*snap.rev) : nlohmann::json(nullptr);
  j["seq"] = snap.seq;
  j["status"] = snap.status.empty() ? "IDLE" : snap.status;
  j["ts"] = NowRfc3339();
  j["groups"] = cfg_.groups;  // rollouts find a group's devices by it (docs/rollouts.md)
  j["containers"] = nlohmann::json::array();
  for (const auto& c : snap.containers)
    j["containers"].push_back(
        {{"name", c.name}, {"group", c.group}, {"state", c.state}, {"rev", c.rev}, {"restarts", c.restarts}});
  j["sensors"] = relay_ ? relay_->SensorsJson() : nlohmann::json::array();
  if (relay_) j["sensor_counts"] = relay_->CountsJson();
  auto stats = cache_.GetStats();
  if (!stats) log::Warn(kLog, stats.error().WithContext("cache stats").String());
  auto s = stats.value_or(cache::Stats{0, 0, cfg_.cache.quota_bytes});
  j["cache"] = {{"bytes", s.bytes}, {"blocks", s.blocks}, {"quota_bytes", s.quota_bytes}};
  j["agent"] = {{"version", GANTRY_VERSION}, {"started_at", started_at_}};
  if (auto r = outbox_.Enqueue(prefix_ + "/state", Dump(j), 1, true); !r) {
    log::Error(kLog, r.error().String());
    PublishUnpersisted(prefix_ + "/state", Dump(j), true);
  }
}

bool Dispatcher::AllowedResponseTopic(const std::string& topic) const {
  auto prefix = cfg_.mqtt.ResponsePrefix();
  return topic.find_first_of("+#") == std::string::npos && topic.size() > prefix.size() &&
         topic.compare(0, prefix.size(), prefix) == 0;
}

void Dispatcher::SendReply(const std::string& reply, const mqtt::Message& request) {
  if (auto r = outbox_.Enqueue(prefix_ + "/reply", reply, 1, false); !r) {
    log::Error(kLog, r.error().String());
    PublishUnpersisted(prefix_ + "/reply", reply, false);
  }
  SendResponse(reply, request);
}

void Dispatcher::SendResponse(const std::string& reply, const mqtt::Message& request) {
  if (!request.response_topic.empty() && AllowedResponseTopic(request.response_topic)) {
    mqtt::Message m{request.response_topic, reply, 1, false, "", request.correlation_data};
    client_.Publish(m, nullptr);
  }
}

void Dispatcher::OnMessage(const mqtt::Message& message) {
  auto started = std::chrono::steady_clock::now();
  struct Timing {
    std::chrono::steady_clock::time_point t;
    ~Timing() {
      log::Debug(kLog, "command handled in " +
                           std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                              std::chrono::steady_clock::now() - t).count()) + " us");
    }
  } timing{started};
  if (message.retain && message.payload.empty()) return;  // a cleared retained command
  auto parsed = command::Parse(message.payload);
  if (!parsed) {
    log::Warn(kLog, "refused a command: " + parsed.error().error.String());
    SendReply(command::Reply(parsed.error().id, Unexpected(parsed.error().error)), message);
    return;
  }
  const auto& cmd = *parsed;
  // A response topic anywhere else would let a command make the agent publish into other
  // devices' or the operator's topics (docs/protocol.md).
  if (!message.response_topic.empty() && !AllowedResponseTopic(message.response_topic)) {
    log::Warn(kLog, "refused command " + cmd.id + ": response topic outside " + cfg_.mqtt.ResponsePrefix());
    SendReply(command::Reply(cmd.id, Fail("bad_command", "the response topic must have no wildcard and start with " +
                                                             cfg_.mqtt.ResponsePrefix())),
              message);
    return;
  }
  if (auto stored = ledger_.StoredReply(cmd.id)) {
    log::Info(kLog, "command " + cmd.id + " already handled; replaying its reply");
    SendReply(*stored, message);
    // A client that missed the outcome learns it by re-sending: the final event again.
    auto final_event = txn::Journal(db_).FinalEvent(cmd.id);
    if (!final_event) log::Warn(kLog, final_event.error().WithContext("final event of " + cmd.id).String());
    else if (*final_event && !outbox_.Enqueue(prefix_ + "/progress", **final_event, 1, false))
      PublishUnpersisted(prefix_ + "/progress", **final_event, false);
    return;
  }
  // The command's effects, its recorded reply and the reply's outbox row commit together (one
  // fsync), before the reply leaves: a command is durable once its reply is sent, and a
  // repeated id never runs twice.
  std::string reply;
  bool committed;
  {
    store::Transaction tx(db_);
    auto result = Execute(cmd);
    reply = command::Reply(cmd.id, result);
    auto r = ledger_.Record(cmd.id, cmd.op_name, reply, NowUnix());
    if (r) r = outbox_.Enqueue(prefix_ + "/reply", reply, 1, false);
    if (r) r = tx.Commit();
    committed = r.has_value();
    if (!r) {
      log::Error(kLog, r.error().String());
      reply = command::Reply(cmd.id, Unexpected(r.error()));
    }
  }
  if (committed) {
    // What the commit made durable (QUEUED, the reply) leaves now, not behind the loop's backlog.
    outbox_.Flush();
    SendResponse(reply, message);
  } else {
    SendReply(reply, message);
  }
  // Pruning scans the tables: once per thousand commands keeps its cost out of intake.
  if (++since_prune_ >= 1000) {
    since_prune_ = 0;
    Prune();
  }
  // Only now can the runner's own connection see the new transaction row.
  if (wake_) engine_->Wake(*wake_);
  wake_.reset();
}

ExpectedVoid Dispatcher::Execute(const command::Command& cmd) {
  switch (cmd.op) {
    case command::Op::kUpdate:
      return ExecuteUpdate(cmd);
    case command::Op::kRollback:
      return ExecuteRollback(cmd);
    case command::Op::kCancel:
      return engine_->Cancel();
    case command::Op::kGc: {
      auto freed = cache_.Collect(true);
      if (!freed) return Unexpected(freed.error());
      log::Info(kLog, "gc freed " + std::to_string(*freed) + " bytes");
      PublishState();
      return {};
    }
    case command::Op::kGetState:
      PublishState();
      return {};
  }
  return Fail("bad_command", "unknown op");
}

ExpectedVoid Dispatcher::ExecuteUpdate(const command::Command& cmd) {
  txn::Journal journal(db_);
  auto high = journal.HighSeq();
  if (!high) return Unexpected(high.error());
  txn::AdmissionPolicy policy{&trust_, cfg_.trust.threshold, cfg_.device_id, cfg_.groups,
                              cfg_.update.bsp == "reject"};
  manifest::Revision partial;
  auto admitted = txn::Admit(cmd.revision, *high, policy, cache_, &partial);
  if (!admitted) {
    Emit({{"id", cmd.id}, {"rev", partial.rev.empty() ? nlohmann::json(nullptr) : nlohmann::json(partial.rev)},
          {"seq", partial.seq}, {"status", "WONTGO"}, {"progress", 0},
          {"msg", admitted.error().String()}});
    return Unexpected(admitted.error());
  }
  txn::TxnRow row;
  row.cmd_id = cmd.id;
  row.kind = "update";
  row.rev = admitted->revision.rev;
  row.seq = admitted->revision.seq;
  row.document = admitted->document;
  row.objects_base = cmd.objects_base.value_or("");
  auto id = journal.Insert(row);
  if (!id) return Unexpected(id.error());
  Emit({{"id", cmd.id}, {"rev", row.rev}, {"seq", row.seq}, {"status", "QUEUED"}, {"progress", 0}, {"msg", "queued"}});
  wake_ = row.rev;
  return {};
}

ExpectedVoid Dispatcher::ExecuteRollback(const command::Command& cmd) {
  txn::Journal journal(db_);
  auto prev = journal.Previous();
  if (!prev) return Unexpected(prev.error());
  if (!*prev) return Fail("no_previous", "there is no previous committed revision to roll back to");
  txn::TxnRow row;
  row.cmd_id = cmd.id;
  row.kind = "rollback";
  row.rev = (*prev)->rev;
  row.seq = (*prev)->seq;
  row.document = (*prev)->document;
  auto id = journal.Insert(row);
  if (!id) return Unexpected(id.error());
  Emit({{"id", cmd.id}, {"rev", row.rev}, {"seq", row.seq}, {"status", "QUEUED"}, {"progress", 0}, {"msg", "rollback queued"}});
  wake_ = row.rev;
  return {};
}

}  // namespace gantry::app
