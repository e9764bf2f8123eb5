// The Dispatcher against a fake MQTT client: the wire rules of docs/protocol.md ("Wire rules")
// that the Dispatcher is responsible for. No broker, no LXC:
// real SQLite in a temp dir, the real store, cache, outbox, ledger and transaction engine over
// FakeRuntime, and revisions signed with real keys. The test thread is the loop thread: it
// posts OnConnected()/OnMessage() to the EventLoop and runs it, then reads what the fake
// client was asked to publish (topic, payload, qos, retain, correlation data).
#include <gtest/gtest.h>

#include <mutex>
#include <regex>

#include "app/dispatcher.hpp"
#include "digest/sha256.hpp"
#include "test_util.hpp"
#include "unit/crypto/signing_test_util.hpp"
#include "unit/runtime/fake_runtime.hpp"

using namespace gantry;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Records every publish; the broker acknowledges at once (the outbox deletes its rows).
class FakeClient : public mqtt::Client {
 public:
  void Start(Handlers) override {}
  void Publish(const mqtt::Message& m, std::function<void(bool)> done) override {
    {
      std::lock_guard l(mu_);
      sent_.push_back(m);
    }
    if (done) done(true);
  }
  bool Connected() const override { return true; }
  void Stop() override {}

  size_t Mark() {
    std::lock_guard l(mu_);
    return sent_.size();
  }
  std::vector<mqtt::Message> Since(size_t mark) {
    std::lock_guard l(mu_);
    return {sent_.begin() + static_cast<std::ptrdiff_t>(std::min(mark, sent_.size())), sent_.end()};
  }

 private:
  std::mutex mu_;
  std::vector<mqtt::Message> sent_;
};

std::string Sha(const std::string& bytes) {
  digest::Sha256 h;
  h.Update(bytes.data(), bytes.size());
  return h.FinalHex();
}

bool IsFinal(const std::string& s) { return s == "DONE" || s == "ERROR" || s == "WONTGO" || s == "CANCELLED"; }

const std::regex kRfc3339Utc(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$)");

class DispatcherTest : public ::testing::Test {
 protected:
  const std::string device = "gw-test";
  const std::string P = "gantry/gw-test";

  void SetUp() override {
    key_ = test::MakeTestKey(dir_.path() / "keys", dir_.path() / "trust", "ops", "EdDSA");
    stranger_ = test::MakeTestKey(dir_.path() / "other-keys", dir_.path() / "other-trust", "ops");
    std::filesystem::create_directories(dir_.path() / "data");
    cfg_.device_id = device;
    cfg_.groups = {"lab"};
    cfg_.data_dir = dir_.path() / "data";
    cfg_.trust.keys_dir = (dir_.path() / "trust").string();
    cfg_.update.commit_window_s = 1;

    auto db = store::Db::Open(cfg_.data_dir / "gantry.db");
    ASSERT_TRUE(db) << db.error().String();
    db_.emplace(std::move(*db));
    auto cache = cache::BlockCache::Open(cfg_.data_dir, cache::Options{}, *db_);
    ASSERT_TRUE(cache) << cache.error().String();
    cache_ = std::move(*cache);
    auto trust = crypto::TrustStore::LoadDir(cfg_.trust.keys_dir);
    ASSERT_TRUE(trust) << trust.error().String();
    ASSERT_EQ(trust->size(), 1u);
    trust_.emplace(std::move(*trust));

    outbox_ = std::make_unique<status::Outbox>(*db_, loop_, client_);
    dispatcher_ = std::make_unique<app::Dispatcher>(cfg_, loop_, *db_, *cache_, *trust_, *outbox_, client_);
    txn::EngineOptions o;
    o.data_dir = cfg_.data_dir;
    o.commit_window_s = cfg_.update.commit_window_s;
    o.poll = 20ms;
    engine_ = std::make_unique<txn::Engine>(*db_, *cache_, rt_, *dispatcher_, o);
    auto r = engine_->Open();
    ASSERT_TRUE(r) << r.error().String();
    dispatcher_->SetEngine(engine_.get());
    dispatcher_->EmitUnreportedFinals();
    engine_->Start();
  }
  void TearDown() override {
    if (engine_) engine_->Stop();
  }

  // ---- driving the loop ----
  void Drain(std::chrono::milliseconds d = 100ms) {
    loop_.RunUntil([] { return false; }, d);
  }
  std::vector<mqtt::Message> Connect() {
    auto mark = client_.Mark();
    loop_.Post([this] { dispatcher_->OnConnected(); });
    Drain();
    return client_.Since(mark);
  }
  // Delivers one command as the MQTT client would and returns what was published meanwhile.
  std::vector<mqtt::Message> Send(const std::string& payload, const std::string& response_topic = "",
                                  const std::string& correlation = "") {
    auto mark = client_.Mark();
    mqtt::Message m{P + "/cmd", payload, 1, false, response_topic, correlation};
    loop_.Post([this, m] { dispatcher_->OnMessage(m); });
    Drain();
    return client_.Since(mark);
  }
  std::vector<mqtt::Message> SendJson(const json& cmd) { return Send(cmd.dump()); }

  // Runs the loop until a final progress event of id was published (or timeout); returns the
  // messages published since mark.
  std::vector<mqtt::Message> RunUntilFinal(size_t mark, const std::string& id, std::chrono::seconds timeout = 20s) {
    loop_.RunUntil(
        [&] {
          for (auto& e : Events(client_.Since(mark), id))
            if (IsFinal(e.value("status", ""))) return true;
          return false;
        },
        timeout);
    return client_.Since(mark);
  }

  // ---- reading what was published ----
  std::vector<mqtt::Message> On(const std::vector<mqtt::Message>& msgs, const std::string& suffix) {
    std::vector<mqtt::Message> out;
    for (auto& m : msgs)
      if (m.topic == P + "/" + suffix) out.push_back(m);
    return out;
  }
  std::vector<json> Events(const std::vector<mqtt::Message>& msgs, const std::string& id) {
    std::vector<json> out;
    for (auto& m : On(msgs, "progress")) {
      auto j = json::parse(m.payload);
      if (j.value("id", json()) == id) out.push_back(j);
    }
    return out;
  }
  // The one reply on P/reply in msgs (fails the test when there is not exactly one).
  json OneReply(const std::vector<mqtt::Message>& msgs) {
    auto replies = On(msgs, "reply");
    EXPECT_EQ(replies.size(), 1u) << "replies on P/reply";
    if (replies.size() != 1) return json();
    EXPECT_EQ(replies[0].qos, 1);
    EXPECT_FALSE(replies[0].retain);
    return json::parse(replies[0].payload);
  }
  std::int64_t TxnRows(const std::string& cmd_id) {
    auto st = db_->Prepare("SELECT count(*) FROM transactions WHERE cmd_id = ?");
    if (!st) return -1;
    st->Bind(1, cmd_id);
    if (!st->Step().value_or(false)) return -1;
    return st->Int(0);
  }

  // ---- revisions ----
  json Document(const std::string& rev, int seq, const std::string& marker = "1") {
    json state = {{"#spec", "pantavisor-service-system@1"}};
    json objects = json::object();
    auto put = [&](const std::string& bytes) {
      auto id = Sha(bytes);
      test::Spit(dir_.path() / "objects" / id, bytes);
      objects[id] = {{"size", bytes.size()}};
      return id;
    };
    state["a/run.json"] = {{"#spec", "service-manifest-run@1"}, {"name", "a"}, {"type", "lxc"},
                           {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"},
                           {"group", "app"}, {"status_goal", "STARTED"}};
    state["a/lxc.container.conf"] = put("lxc.init.cmd = /sbin/gantry-init\n");
    state["a/root.squashfs"] = put("image of a " + marker);
    return {{"rev", rev}, {"seq", seq}, {"targets", {device}},
            {"objects_base", "file://" + (dir_.path() / "objects").string() + "/"},
            {"objects", objects}, {"state", state}};
  }
  json Update(const std::string& id, const json& doc) {
    return {{"id", id}, {"op", "update"}, {"revision", test::SignRevisionJson(doc, {key_.key})}};
  }
  // An update committed through the Dispatcher; returns its final event.
  json Commit(const std::string& id, const std::string& rev, int seq) {
    auto mark = client_.Mark();
    auto sent = SendJson(Update(id, Document(rev, seq, rev)));
    EXPECT_EQ(OneReply(sent).value("ok", false), true) << OneReply(sent).dump();
    auto all = RunUntilFinal(mark, id);
    auto ev = Events(all, id);
    return ev.empty() ? json() : ev.back();
  }

  test::TempDir dir_;
  test::TestKey key_, stranger_;
  config::Config cfg_;
  std::optional<store::Db> db_;
  std::unique_ptr<cache::BlockCache> cache_;
  std::optional<crypto::TrustStore> trust_;
  EventLoop loop_;
  FakeClient client_;
  std::unique_ptr<status::Outbox> outbox_;
  runtime::FakeRuntime rt_;
  std::unique_ptr<app::Dispatcher> dispatcher_;
  std::unique_ptr<txn::Engine> engine_;
};

}  // namespace

// Rule: every command gets exactly one reply; one that cannot be parsed gets ok:false with id
// null and nothing else; one that fails its schema gets ok:false with its id and nothing else
// (no progress event, no state, and its id is not consumed: malformed input changes nothing).
TEST_F(DispatcherTest, EveryCommandGetsExactlyOneReplyAndMalformedOnesNothingElse) {
  Connect();
  // Unreadable: id null, nothing but the reply.
  for (std::string payload : {std::string("{\"id\": \"m1\", "), std::string("not json"), std::string("[1,2]"),
                              std::string(R"({"op":"get-state"})"), std::string(R"({"id":7,"op":"get-state"})")}) {
    SCOPED_TRACE(payload);
    auto sent = Send(payload);
    ASSERT_EQ(sent.size(), 1u) << "an unreadable command gets its reply and nothing else";
    auto reply = OneReply(sent);
    EXPECT_TRUE(reply.contains("id"));
    EXPECT_TRUE(reply["id"].is_null());
    EXPECT_EQ(reply["ok"], false);
    EXPECT_TRUE(reply["error"]["code"].is_string());
    EXPECT_FALSE(reply["error"]["message"].get<std::string>().empty());
  }
  // Schema failures: the command's id, nothing but the reply, and no transaction.
  struct Bad {
    std::string id, payload;
  };
  std::vector<Bad> bad = {
      {"sf-op-type", R"({"id":"sf-op-type","op":5})"},
      {"sf-unknown-op", R"({"id":"sf-unknown-op","op":"reboot"})"},
      {"sf-no-revision", R"({"id":"sf-no-revision","op":"update"})"},
      {"sf-revision-type", R"({"id":"sf-revision-type","op":"update","revision":"x"})"},
      {"sf-extra-arg", R"({"id":"sf-extra-arg","op":"gc","force":true})"},
      {"sf-bad-base", R"({"id":"sf-bad-base","op":"update","revision":{},"objects_base":"ftp://x/"})"},
  };
  for (auto& b : bad) {
    SCOPED_TRACE(b.payload);
    auto sent = Send(b.payload);
    ASSERT_EQ(sent.size(), 1u) << "a schema-failing command gets its reply and nothing else";
    auto reply = OneReply(sent);
    EXPECT_EQ(reply["id"], b.id);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"]["code"], "bad_command");
    EXPECT_EQ(TxnRows(b.id), 0);
  }
  // The refused id was not recorded: the same id with a valid command runs.
  auto again = Send(R"({"id":"sf-unknown-op","op":"get-state"})");
  EXPECT_EQ(OneReply(again)["ok"], true);
  EXPECT_EQ(On(again, "state").size(), 1u);

  // And every well-formed op gets exactly one reply too.
  auto bad_sig = Update("u-badsig", Document("r9", 9));
  bad_sig["revision"]["signatures"][0]["signature"] = std::string(86, 'A');
  for (auto cmd : {json{{"id", "ok-gs"}, {"op", "get-state"}}, json{{"id", "ok-gc"}, {"op", "gc"}},
                   json{{"id", "ok-cancel"}, {"op", "cancel"}}, json{{"id", "ok-rb"}, {"op", "rollback"}}, bad_sig}) {
    SCOPED_TRACE(cmd["id"].get<std::string>());
    auto reply = OneReply(SendJson(cmd));
    EXPECT_EQ(reply["id"], cmd["id"]);
  }
}

// Rule: an update failing a trust or applicability check gets ok:false and exactly one
// WONTGO progress event with the same id (and no QUEUED, no transaction).
TEST_F(DispatcherTest, UpdateFailingTrustOrApplicabilityGetsOkFalseAndOneWontgo) {
  Connect();
  ASSERT_EQ(Commit("base", "base", 10).value("status", ""), "DONE");

  struct Case {
    std::string id;
    json cmd;
    std::string code;
  };
  std::vector<Case> cases;
  {
    auto c = Update("bad-sig", Document("r11", 11));
    std::string sig = c["revision"]["signatures"][0]["signature"];
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    c["revision"]["signatures"][0]["signature"] = sig;
    cases.push_back({"bad-sig", c, "bad_signature"});
  }
  cases.push_back({"untrusted", {{"id", "untrusted"}, {"op", "update"},
                                 {"revision", test::SignRevisionJson(Document("r11", 11), {stranger_.key})}},
                   ""});
  {
    auto doc = Document("r12", 12);
    doc["targets"] = {"gw-other", "group:elsewhere"};
    cases.push_back({"wrong-target", Update("wrong-target", doc), "not_addressed"});
  }
  cases.push_back({"equal-seq", Update("equal-seq", Document("r10b", 10)), "downgrade"});
  cases.push_back({"lower-seq", Update("lower-seq", Document("r3", 3)), "downgrade"});
  {
    auto doc = Document("r13", 13);
    doc["expires"] = "2001-01-01T00:00:00Z";
    cases.push_back({"expired", Update("expired", doc), "expired"});
  }
  for (auto& c : cases) {
    SCOPED_TRACE(c.id);
    auto sent = SendJson(c.cmd);
    auto reply = OneReply(sent);
    EXPECT_EQ(reply["id"], c.id);
    EXPECT_EQ(reply["ok"], false);
    if (!c.code.empty()) {
      EXPECT_EQ(reply["error"]["code"], c.code) << reply.dump();
    }
    auto progress = On(sent, "progress");
    ASSERT_EQ(progress.size(), 1u) << "exactly one progress event";
    auto ev = json::parse(progress[0].payload);
    EXPECT_EQ(ev["id"], c.id);
    EXPECT_EQ(ev["status"], "WONTGO");
    EXPECT_EQ(progress[0].qos, 1);
    EXPECT_FALSE(progress[0].retain);
    EXPECT_TRUE(std::regex_match(ev.value("ts", ""), kRfc3339Utc)) << ev.dump();
    EXPECT_EQ(TxnRows(c.id), 0);
  }
  // Nothing was queued behind them: a while later still no further event for any of them.
  auto mark = client_.Mark();
  Drain(300ms);
  for (auto& c : cases) EXPECT_TRUE(Events(client_.Since(mark), c.id).empty()) << c.id;
}

// Rule: update ok:true → a QUEUED progress event with the command's id, then exactly one final
// status; every progress event of the transaction carries that id.
TEST_F(DispatcherTest, AcceptedUpdateIsQueuedThenGetsExactlyOneFinalStatus) {
  Connect();
  auto mark = client_.Mark();
  auto sent = SendJson(Update("u1", Document("r1", 1)));
  auto reply = OneReply(sent);
  EXPECT_EQ(reply, (json{{"id", "u1"}, {"ok", true}}));
  auto first = Events(sent, "u1");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first[0]["status"], "QUEUED");
  EXPECT_EQ(first[0]["rev"], "r1");
  EXPECT_EQ(first[0]["seq"], 1);

  auto all = RunUntilFinal(mark, "u1");
  Drain(1500ms);  // longer than the commit window: a second final would show now
  all = client_.Since(mark);
  auto events = Events(all, "u1");
  int finals = 0, queued = 0;
  std::string final_status;
  for (auto& e : events) {
    if (IsFinal(e.value("status", ""))) {
      ++finals;
      final_status = e.value("status", "");
    }
    if (e["status"] == "QUEUED") ++queued;
  }
  EXPECT_EQ(finals, 1) << "final statuses of u1";
  EXPECT_EQ(queued, 1);
  EXPECT_EQ(final_status, "DONE");
  EXPECT_TRUE(IsFinal(events.back().value("status", ""))) << "nothing of u1 after its final status";
  // Every event on P/progress belongs to u1 (carries its id).
  EXPECT_EQ(On(all, "progress").size(), events.size());
  // The state follows the commit.
  auto states = On(all, "state");
  ASSERT_FALSE(states.empty());
  auto st = json::parse(states.back().payload);
  EXPECT_EQ(st["rev"], "r1");
  EXPECT_EQ(st["seq"], 1);
}

// Rule: a repeated command id gets the stored reply byte for byte and nothing re-executes:
// no second QUEUED, no second transaction, no second P/state for a repeated get-state.
TEST_F(DispatcherTest, RepeatedIdGetsStoredReplyByteForByteAndNothingReExecutes) {
  Connect();
  auto mark = client_.Mark();
  auto cmd = Update("u1", Document("r1", 1));
  auto first = On(SendJson(cmd), "reply");
  ASSERT_EQ(first.size(), 1u);
  // At once, while the transaction runs.
  auto again = SendJson(cmd);
  auto replies = On(again, "reply");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].payload, first[0].payload);
  for (auto& e : Events(again, "u1")) EXPECT_NE(e["status"], "QUEUED") << "queued again";
  EXPECT_EQ(TxnRows("u1"), 1);
  auto all = RunUntilFinal(mark, "u1");
  ASSERT_FALSE(Events(all, "u1").empty());
  // After the final status, with a different revision under the same id: still the old reply,
  // still one transaction, nothing queued.
  auto other = SendJson(Update("u1", Document("r2", 2)));
  replies = On(other, "reply");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].payload, first[0].payload);
  for (auto& e : Events(other, "u1")) EXPECT_NE(e["status"], "QUEUED") << "queued again";
  Drain(300ms);
  EXPECT_EQ(TxnRows("u1"), 1);

  // A refused command's reply is replayed too (and its WONTGO is not emitted twice).
  auto bad = Update("bad", Document("r0", 0));  // seq 0 is not above committed seq 1
  auto b1 = SendJson(bad);
  auto b2 = SendJson(bad);
  ASSERT_EQ(On(b1, "reply").size(), 1u);
  ASSERT_EQ(On(b2, "reply").size(), 1u);
  EXPECT_EQ(On(b2, "reply")[0].payload, On(b1, "reply")[0].payload);
  EXPECT_EQ(Events(b1, "bad").size(), 1u);

  // get-state: its reply again, but no second P/state.
  auto g1 = Send(R"({"id":"gs","op":"get-state"})");
  auto g2 = Send(R"({"id":"gs","op":"get-state"})");
  EXPECT_EQ(On(g1, "state").size(), 1u);
  ASSERT_EQ(On(g2, "reply").size(), 1u);
  EXPECT_EQ(On(g2, "reply")[0].payload, On(g1, "reply")[0].payload);
  EXPECT_TRUE(On(g2, "state").empty()) << "get-state executed again";
}

// Rule (docs/protocol.md, repeated ids): "when that command's transaction is already final,
// its final progress event is published again too (byte for byte)".
TEST_F(DispatcherTest, RepeatedIdOfAFinalTransactionRepublishesItsFinalEventByteForByte) {
  Connect();
  auto mark = client_.Mark();
  auto cmd = Update("u1", Document("r1", 1));
  auto first = On(SendJson(cmd), "reply");
  ASSERT_EQ(first.size(), 1u);
  auto all = RunUntilFinal(mark, "u1");
  std::string final_payload;
  for (auto& m : On(all, "progress")) {
    auto e = json::parse(m.payload);
    if (e["id"] == "u1" && IsFinal(e.value("status", ""))) final_payload = m.payload;
  }
  ASSERT_FALSE(final_payload.empty());
  auto again = SendJson(cmd);
  auto replies = On(again, "reply");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].payload, first[0].payload);
  auto progress = On(again, "progress");
  ASSERT_EQ(progress.size(), 1u) << "the final progress event of u1 is published again";
  EXPECT_EQ(progress[0].payload, final_payload);
}

// Rule: P/online {"online":true} and P/state, both retained QoS 1, on OnConnected and again
// on every reconnect.
TEST_F(DispatcherTest, OnlineAndStateArePublishedRetainedOnConnectAndEveryReconnect) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("connection " + std::to_string(round + 1));
    if (round > 0) {
      loop_.Post([this] { outbox_->OnLost(); });
      Drain(20ms);
    }
    auto sent = Connect();
    auto online = On(sent, "online");
    ASSERT_EQ(online.size(), 1u);
    EXPECT_TRUE(online[0].retain);
    EXPECT_EQ(online[0].qos, 1);
    auto o = json::parse(online[0].payload);
    EXPECT_EQ(o["online"], true);
    EXPECT_TRUE(std::regex_match(o.value("ts", ""), kRfc3339Utc)) << o.dump();
    auto state = On(sent, "state");
    ASSERT_EQ(state.size(), 1u);
    EXPECT_TRUE(state[0].retain);
    EXPECT_EQ(state[0].qos, 1);
    EXPECT_TRUE(On(sent, "reply").empty());
  }
}

// Rule: P/state before any commit: rev null, seq 0, status IDLE, every documented key present;
// ts RFC 3339 UTC.
TEST_F(DispatcherTest, StateBeforeAnyCommitHasNullRevSeqZeroIdleAndEveryKey) {
  auto state = On(Connect(), "state");
  ASSERT_EQ(state.size(), 1u);
  auto s = json::parse(state[0].payload);
  ASSERT_TRUE(s.contains("rev"));
  EXPECT_TRUE(s["rev"].is_null()) << s.dump();
  EXPECT_EQ(s["seq"], 0);
  EXPECT_TRUE(s["seq"].is_number_integer());
  EXPECT_EQ(s["status"], "IDLE");
  EXPECT_TRUE(std::regex_match(s.value("ts", ""), kRfc3339Utc)) << s.dump();
  EXPECT_EQ(s["groups"], json::array({"lab"}));
  ASSERT_TRUE(s["containers"].is_array());
  EXPECT_TRUE(s["containers"].empty());
  EXPECT_TRUE(s["sensors"].is_array());
  ASSERT_TRUE(s["cache"].is_object());
  for (auto k : {"bytes", "blocks", "quota_bytes"}) EXPECT_TRUE(s["cache"][k].is_number_integer()) << k;
  EXPECT_EQ(s["cache"]["blocks"], 0);
  ASSERT_TRUE(s["agent"].is_object());
  EXPECT_TRUE(s["agent"]["version"].is_string());
  EXPECT_FALSE(s["agent"]["version"].get<std::string>().empty());
  EXPECT_TRUE(std::regex_match(s["agent"].value("started_at", ""), kRfc3339Utc)) << s.dump();
}

// Rule: an MQTT 5 response topic under mqtt.response_prefix gets the reply too, byte for byte,
// with the correlation data; a wildcard or a topic outside the prefix gets ok:false on P/reply
// and nothing on the response topic (and the command does not run).
TEST_F(DispatcherTest, ResponseTopicUnderPrefixGetsReplyWithCorrelationElseRefused) {
  Connect();
  const std::string corr("\x01\x00corr-42", 9);
  auto sent = Send(R"({"id":"rt-ok","op":"get-state"})", "gantry/operator/replies/7", corr);
  auto replies = On(sent, "reply");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(json::parse(replies[0].payload)["ok"], true);
  std::vector<mqtt::Message> direct;
  for (auto& m : sent)
    if (m.topic == "gantry/operator/replies/7") direct.push_back(m);
  ASSERT_EQ(direct.size(), 1u);
  EXPECT_EQ(direct[0].payload, replies[0].payload);
  EXPECT_EQ(direct[0].correlation_data, corr);
  EXPECT_EQ(direct[0].qos, 1);
  EXPECT_FALSE(direct[0].retain);
  // A repeated id answers the response topic too.
  auto rep = Send(R"({"id":"rt-ok","op":"get-state"})", "gantry/operator/replies/8", "c2");
  bool got = false;
  for (auto& m : rep)
    if (m.topic == "gantry/operator/replies/8") {
      got = true;
      EXPECT_EQ(m.payload, replies[0].payload);
      EXPECT_EQ(m.correlation_data, "c2");
    }
  EXPECT_TRUE(got);

  int n = 0;
  for (std::string topic : {"gantry/operator/+", "gantry/operator/#", "gantry/+/replies", "elsewhere/replies",
                            "gantry", "gantry/", "gantryx/replies", "/gantry/replies"}) {
    SCOPED_TRACE(topic);
    std::string id = "rt-bad-" + std::to_string(n++);
    auto s = Send(json{{"id", id}, {"op", "get-state"}}.dump(), topic, "corr");
    auto reply = OneReply(s);
    EXPECT_EQ(reply["id"], id);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"]["code"], "bad_command");
    for (auto& m : s) EXPECT_EQ(m.topic, P + "/reply") << "published elsewhere: " << m.topic;
    EXPECT_TRUE(On(s, "state").empty()) << "the command ran";
  }
}

// Rule: get-state, gc and cancel are complete with their reply: get-state and gc answer
// ok:true with a P/state and no progress event; cancel with nothing running answers
// ok:false not_cancellable (docs/protocol.md error codes) and nothing else.
TEST_F(DispatcherTest, GetStateGcAndCancelAreCompleteWithTheirReply) {
  Connect();
  for (std::string op : {"get-state", "gc"}) {
    SCOPED_TRACE(op);
    auto sent = SendJson(json{{"id", "c-" + op}, {"op", op}});
    EXPECT_EQ(OneReply(sent), (json{{"id", "c-" + op}, {"ok", true}}));
    EXPECT_EQ(On(sent, "state").size(), 1u);
    EXPECT_TRUE(On(sent, "progress").empty());
    EXPECT_EQ(sent.size(), 2u) << "reply and state only";
    EXPECT_EQ(TxnRows("c-" + op), 0);
  }
  auto sent = Send(R"({"id":"c-cancel","op":"cancel"})");
  auto reply = OneReply(sent);
  EXPECT_EQ(reply["id"], "c-cancel");
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"]["code"], "not_cancellable");
  EXPECT_TRUE(On(sent, "progress").empty());
  EXPECT_EQ(sent.size(), 1u);
  // And nothing follows any of them.
  auto mark = client_.Mark();
  Drain(300ms);
  EXPECT_TRUE(client_.Since(mark).empty());
}

// Rule: rollback with no previous committed revision → ok:false no_previous, nothing queued;
// also after a single commit (the first revision has nothing before it).
TEST_F(DispatcherTest, RollbackWithNoPreviousRevisionIsRefusedNoPrevious) {
  Connect();
  auto sent = Send(R"({"id":"rb1","op":"rollback"})");
  auto reply = OneReply(sent);
  EXPECT_EQ(reply["id"], "rb1");
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"]["code"], "no_previous");
  EXPECT_TRUE(On(sent, "progress").empty());
  EXPECT_EQ(TxnRows("rb1"), 0);

  ASSERT_EQ(Commit("u1", "r1", 1).value("status", ""), "DONE");
  sent = Send(R"({"id":"rb2","op":"rollback"})");
  reply = OneReply(sent);
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"]["code"], "no_previous");
  EXPECT_TRUE(On(sent, "progress").empty());
  EXPECT_EQ(TxnRows("rb2"), 0);
}

// Rule: ids longer than 64 characters are refused (64 is fine); a payload over 1 MiB is
// refused with a precise error (exactly 1 MiB is fine); deeper than 64 levels too.
TEST_F(DispatcherTest, OverlongIdsAndOversizedPayloadsAreRefusedPrecisely) {
  Connect();
  std::string id64(64, 'x'), id65(65, 'x');
  auto ok = OneReply(SendJson(json{{"id", id64}, {"op", "get-state"}}));
  EXPECT_EQ(ok, (json{{"id", id64}, {"ok", true}}));
  auto sent = SendJson(json{{"id", id65}, {"op", "get-state"}});
  ASSERT_EQ(sent.size(), 1u);
  auto r = OneReply(sent);
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "bad_command");
  EXPECT_EQ(r["error"]["message"], "id: must be 1 to 64 characters");
  EXPECT_EQ(OneReply(Send(R"({"id":"","op":"get-state"})"))["ok"], false);

  const std::string base = R"({"id":"big","op":"get-state"})";
  std::string exact = base + std::string(command::kMaxBytes - base.size(), ' ');
  ASSERT_EQ(exact.size(), 1048576u);
  EXPECT_EQ(OneReply(Send(exact)), (json{{"id", "big"}, {"ok", true}}));
  std::string over = R"({"id":"big2","op":"get-state"})";
  over += std::string(command::kMaxBytes + 1 - over.size(), ' ');
  sent = Send(over);
  ASSERT_EQ(sent.size(), 1u);
  r = OneReply(sent);
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "too_large");
  EXPECT_EQ(r["error"]["message"], "payload is 1048577 bytes, limit 1048576");
  // The refused id is not consumed.
  EXPECT_EQ(OneReply(Send(R"({"id":"big2","op":"get-state"})"))["ok"], true);

  std::string deep = R"({"id":"deep","op":"update","revision":)";
  for (int i = 0; i < 100; ++i) deep += "[";
  sent = Send(deep);
  ASSERT_EQ(sent.size(), 1u);
  r = OneReply(sent);
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_EQ(r["error"]["code"], "too_deep");
}
