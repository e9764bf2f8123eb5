#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "relay/relay_engine.hpp"
#include "test_util.hpp"

using namespace gantry;
using namespace gantry::relay;
using nlohmann::json;

namespace {

// Records what the engine asks of the transport.
struct FakeTransport : Transport {
  struct Log {
    std::vector<std::pair<std::string, json>> offers, cmds;
    std::vector<std::string> cleared;
    json images;
    int job_updates = 0;
    int full_sets = 0;
  };
  explicit FakeTransport(Log& log) : log_(log) {}
  const std::string& Name() const override { return name_; }
  ExpectedVoid Offer(const std::string& s, const json& o) override {
    log_.offers.emplace_back(s, o);
    return {};
  }
  ExpectedVoid ClearOffer(const std::string& s) override {
    log_.cleared.push_back(s);
    return {};
  }
  ExpectedVoid SendCmd(const std::string& s, const json& c) override {
    log_.cmds.emplace_back(s, c);
    return {};
  }
  ExpectedVoid SetImages(const json& i) override {
    log_.images = i;
    ++log_.full_sets;
    return {};
  }
  // Applied to the last SetImages as relay-mqtt does, so images["jobs"] is what it would serve.
  ExpectedVoid UpdateJobs(const json& delta) override {
    auto& jobs = log_.images["jobs"];
    if (!jobs.is_array()) jobs = json::array();
    json kept = json::array();
    for (auto& j : jobs) {
      bool removed = false;
      for (auto& id : delta.at("remove")) removed = removed || j["job"] == id;
      for (auto& a : delta.at("add")) removed = removed || j["job"] == a["job"];
      if (!removed) kept.push_back(j);
    }
    for (auto& a : delta.at("add")) kept.push_back(a);
    jobs = kept;
    ++log_.job_updates;
    return {};
  }
  Expected<json> Stats() override { return json::object(); }
  Log& log_;
  std::string name_ = "mqtt";
};

const std::string kShaA(64, 'a'), kShaB(64, 'b');

Firmware Fw(std::string model, std::string sha, std::int64_t seq, std::uint64_t size = 1000) {
  Firmware f;
  f.model = std::move(model);
  f.sha256 = std::move(sha);
  f.size = size;
  f.version = "2." + std::to_string(seq);
  f.seq = seq;
  f.image = "/nonexistent/" + f.sha256;
  return f;
}

json Hello(const std::string& id, const std::string& model, std::int64_t seq,
           std::int64_t slot = 4096, int result = 0) {
  return {{"type", "relay.hello"},
          {"transport", "mqtt"},
          {"sensor", id},
          {"msg",
           {{"model", model}, {"version", "1." + std::to_string(seq)}, {"seq", seq},
            {"slot", slot}, {"max_chunk", 1000}, {"window", 4}, {"state", 0},
            {"result", result}}}};
}

json Status(const std::string& id, std::int64_t job, int state, int result, std::int64_t off = 0) {
  return {{"type", "relay.status"},
          {"transport", "mqtt"},
          {"sensor", id},
          {"msg", {{"job", job}, {"state", state}, {"result", result}, {"off", off}}}};
}

class RelayEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open(int max_concurrent = 8, Limits limits = {}) {
    engine_.reset();
    db_.reset();
    auto db = store::Db::Open(dir_.path() / "g.db");
    ASSERT_TRUE(db) << db.error().String();
    db_ = std::make_unique<store::Db>(std::move(*db));
    std::vector<std::unique_ptr<Transport>> t;
    t.push_back(std::make_unique<FakeTransport>(log_));
    limits.max_concurrent = max_concurrent;
    engine_ = std::make_unique<RelayEngine>(*db_, std::move(t), limits,
                                            [this](const json& e) { events_.push_back(e); });
  }
  std::vector<std::string> StatusesOf(const std::string& sensor) {
    std::vector<std::string> out;
    for (auto& e : events_)
      if (e["sensor"] == sensor) out.push_back(e["status"]);
    return out;
  }
  std::int64_t JobOf(const std::string& sensor) {
    for (auto it = log_.offers.rbegin(); it != log_.offers.rend(); ++it)
      if (it->first == sensor) return it->second["job"];
    return -1;
  }

  test::TempDir dir_;
  std::unique_ptr<store::Db> db_;
  FakeTransport::Log log_;
  std::vector<json> events_;
  std::unique_ptr<RelayEngine> engine_;
};

}  // namespace

TEST_F(RelayEngineTest, OffersMatchingSensorAndDrivesJobToSuccess) {
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  engine_->OnTransportEvent(Hello("s1", "th", 3));
  ASSERT_EQ(log_.offers.size(), 1u);
  auto offer = log_.offers[0].second;
  EXPECT_EQ(offer["sha256"], kShaA);
  EXPECT_EQ(offer["seq"], 7);
  EXPECT_EQ(offer["chunk"], 512);  // largest power of two <= max_chunk 1000
  EXPECT_EQ(offer["window"], 4);
  ASSERT_EQ(log_.images["jobs"].size(), 1u);
  EXPECT_EQ(log_.images["jobs"][0]["job"], offer["job"]);
  int job = offer["job"];
  engine_->OnTransportEvent(Status("s1", job, 1, 0, 500));
  engine_->OnTransportEvent(Status("s1", job, 2, 0, 1000));
  ASSERT_EQ(log_.cmds.size(), 1u);
  EXPECT_EQ(log_.cmds[0].second["op"], "update");
  engine_->OnTransportEvent(Status("s1", job, 0, 1, 1000));
  EXPECT_EQ(StatusesOf("s1"), (std::vector<std::string>{"OFFERED", "DOWNLOADING", "DOWNLOADED",
                                                        "UPDATING", "SUCCEEDED"}));
  EXPECT_EQ(log_.cleared, std::vector<std::string>{"s1"});
  EXPECT_TRUE(log_.images["jobs"].empty());
  auto sensors = engine_->SensorsJson();
  ASSERT_EQ(sensors.size(), 1u);
  EXPECT_EQ(sensors[0]["job"]["state"], "SUCCEEDED");
  EXPECT_EQ(sensors[0]["version"], "2.7") << "the record still shows the firmware before the update";
  EXPECT_EQ(sensors[0]["seq"], 7);
  // The new hello after the reboot changes nothing more.
  engine_->OnTransportEvent(Hello("s1", "th", 7));
  EXPECT_EQ(log_.offers.size(), 1u);
  EXPECT_EQ(StatusesOf("s1").size(), 5u);
}

TEST_F(RelayEngineTest, PreChecksReportNotApplicableWithoutSending) {
  auto fw = Fw("th", kShaA, 7, 5000);
  auto targeted = Fw("tgt", kShaB, 7);
  targeted.targets = {"only-me"};
  ASSERT_TRUE(engine_->SetFirmware("r1", {fw, targeted}));
  engine_->OnTransportEvent(Hello("at-seq", "th", 7, 8192));    // already at that seq
  engine_->OnTransportEvent(Hello("small", "th", 3, 4096));     // slot too small
  engine_->OnTransportEvent(Hello("other", "nofw", 1, 8192));   // no firmware for model
  engine_->OnTransportEvent(Hello("not-me", "tgt", 1, 8192));   // not in targets
  engine_->OnTransportEvent(Hello("only-me", "tgt", 1, 8192));  // in targets
  EXPECT_EQ(StatusesOf("at-seq"), std::vector<std::string>{"NOT_APPLICABLE"});
  EXPECT_EQ(StatusesOf("small"), std::vector<std::string>{"NOT_APPLICABLE"});
  EXPECT_EQ(StatusesOf("other"), std::vector<std::string>{"NOT_APPLICABLE"});
  EXPECT_EQ(StatusesOf("not-me"), std::vector<std::string>{"NOT_APPLICABLE"});
  EXPECT_EQ(StatusesOf("only-me"), std::vector<std::string>{"OFFERED"});
  ASSERT_EQ(log_.offers.size(), 1u);
  EXPECT_EQ(log_.offers[0].first, "only-me");
  // A repeated hello does not repeat the report.
  engine_->OnTransportEvent(Hello("at-seq", "th", 7, 8192));
  EXPECT_EQ(StatusesOf("at-seq").size(), 1u);
}

TEST_F(RelayEngineTest, ConcurrencyCapHoldsSensorsBackUntilASlotFrees) {
  Open(2);
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  for (auto id : {"s1", "s2", "s3"}) engine_->OnTransportEvent(Hello(id, "th", 1));
  ASSERT_EQ(log_.offers.size(), 2u);
  EXPECT_TRUE(StatusesOf("s3").empty());
  engine_->OnTransportEvent(Status("s1", JobOf("s1"), 0, 5));  // integrity failure
  ASSERT_EQ(log_.offers.size(), 3u);
  EXPECT_EQ(log_.offers[2].first, "s3");
}

TEST_F(RelayEngineTest, RevertedImageIsNeverOfferedAgain) {
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  engine_->OnTransportEvent(Hello("s1", "th", 1));
  int job = JobOf("s1");
  engine_->OnTransportEvent(Status("s1", job, 2, 0, 1000));
  engine_->OnTransportEvent(Status("s1", job, 0, 8, 1000));
  EXPECT_EQ(StatusesOf("s1").back(), "FAILED");
  EXPECT_EQ(events_.back()["result"], 8);
  engine_->OnTransportEvent(Hello("s1", "th", 1, 4096, 8));
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  EXPECT_EQ(log_.offers.size(), 1u);
  EXPECT_EQ(engine_->SensorsJson()[0]["job"]["result"], 8);
  // A later revision carrying the same image still does not offer it.
  ASSERT_TRUE(engine_->SetFirmware("r2", {Fw("th", kShaA, 7)}));
  EXPECT_EQ(log_.offers.size(), 1u);
  EXPECT_EQ(StatusesOf("s1").back(), "NOT_APPLICABLE");
  // A different image is offered.
  ASSERT_TRUE(engine_->SetFirmware("r3", {Fw("th", kShaB, 8)}));
  EXPECT_EQ(log_.offers.size(), 2u);
}

TEST_F(RelayEngineTest, OpenJobsSurviveARestartAndOffersAreRepublished) {
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  engine_->OnTransportEvent(Hello("s1", "th", 1));
  int job = JobOf("s1");
  engine_->OnTransportEvent(Status("s1", job, 1, 0, 300));
  Open();
  log_.offers.clear();
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  ASSERT_EQ(log_.offers.size(), 1u);
  EXPECT_EQ(log_.offers[0].second["job"], job);
  EXPECT_EQ(engine_->SensorsJson()[0]["job"]["offset"], 300);
  engine_->OnTransportEvent(Status("s1", job, 2, 0, 1000));
  EXPECT_EQ(log_.cmds.back().second["op"], "update");
}

TEST_F(RelayEngineTest, NewRevisionCancelsAnOpenJobForAnotherImage) {
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  engine_->OnTransportEvent(Hello("s1", "th", 1));
  int first = JobOf("s1");
  ASSERT_TRUE(engine_->SetFirmware("r2", {Fw("th", kShaB, 8)}));
  ASSERT_FALSE(log_.cmds.empty());
  EXPECT_EQ(log_.cmds[0].second["op"], "cancel");
  EXPECT_EQ(log_.cmds[0].second["job"], first);
  EXPECT_EQ(log_.offers.back().second["sha256"], kShaB);
  EXPECT_NE(JobOf("s1"), first);
}

TEST_F(RelayEngineTest, MalformedEventsAndStaleStatusesHarmNoJob) {
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  engine_->OnTransportEvent(Hello("s1", "th", 1));
  int job = JobOf("s1");
  engine_->OnTransportEvent(json::array());
  engine_->OnTransportEvent({{"type", "relay.hello"}, {"sensor", "../x"}, {"msg", json::object()}});
  engine_->OnTransportEvent({{"type", "relay.hello"}, {"sensor", "s1"}, {"msg", {{"model", 3}}}});
  engine_->OnTransportEvent({{"type", "relay.status"}, {"sensor", "s1"}, {"msg", {{"job", "x"}}}});
  engine_->OnTransportEvent(Status("s1", job + 1, 0, 5));  // not its job
  engine_->OnTransportEvent(Status("s2", job, 0, 5));      // not its sensor
  EXPECT_EQ(StatusesOf("s1"), std::vector<std::string>{"OFFERED"});
  EXPECT_EQ(engine_->SensorsJson()[0]["job"]["state"], "OFFERED");
}

TEST(RelayJobState, TransitionTableAllowsTheJobLifeAndNothingBackwards) {
  using S = JobState;
  EXPECT_TRUE(CanMove(S::kWaiting, S::kOffered));
  EXPECT_TRUE(CanMove(S::kOffered, S::kDownloading));
  EXPECT_TRUE(CanMove(S::kDownloading, S::kDownloaded));
  EXPECT_TRUE(CanMove(S::kDownloaded, S::kUpdating));
  EXPECT_TRUE(CanMove(S::kUpdating, S::kSucceeded));
  EXPECT_TRUE(CanMove(S::kOffered, S::kFailed));  // a time-out
  EXPECT_FALSE(CanMove(S::kUpdating, S::kDownloading));
  EXPECT_FALSE(CanMove(S::kWaiting, S::kSucceeded));
  EXPECT_FALSE(CanMove(S::kSucceeded, S::kOffered));
  EXPECT_TRUE(CanMove(S::kFailed, S::kWaiting));  // offered again after a failure
  for (auto s : {S::kWaiting, S::kOffered, S::kDownloading, S::kDownloaded, S::kUpdating,
                 S::kSucceeded, S::kFailed, S::kNotApplicable, S::kCancelled})
    EXPECT_EQ(JobStateFromName(JobStateName(s)), s);
  EXPECT_FALSE(JobStateFromName("offered"));
}

TEST_F(RelayEngineTest, SilentJobsTimeOutFreeTheirSlotsAndTheNextSensorIsOffered) {
  Limits limits;
  limits.job_timeout = std::chrono::seconds(10);
  Open(2, limits);
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  for (auto id : {"s1", "s2", "s3"}) engine_->OnTransportEvent(Hello(id, "th", 3));
  ASSERT_EQ(log_.offers.size(), 2u);
  auto start = RelayEngine::Clock::now();
  engine_->Tick(start + std::chrono::seconds(5));
  EXPECT_EQ(log_.offers.size(), 2u) << "no time-out before job_timeout";
  // Progress (a higher offset) restarts s2's clock; a repeated offset would not.
  engine_->OnTransportEvent(Status("s2", static_cast<int>(JobOf("s2")), 1, 0, 100));
  engine_->Tick(start + std::chrono::seconds(9));
  EXPECT_EQ(log_.offers.size(), 2u);
  engine_->Tick(start + std::chrono::seconds(11) + std::chrono::milliseconds(500));
  EXPECT_EQ(StatusesOf("s1").back(), "FAILED");
  EXPECT_EQ(log_.cleared.front(), "s1");
  EXPECT_EQ(log_.cmds.front().first, "s1");
  EXPECT_EQ(log_.cmds.front().second["op"], "cancel");
  // The freed slot went to the waiting sensor.
  ASSERT_GE(log_.offers.size(), 3u);
  EXPECT_EQ(log_.offers[2].first, "s3");
  for (auto& e : events_)
    if (e["sensor"] == "s1" && e["status"] == "FAILED")
      EXPECT_NE(e["msg"].get<std::string>().find("no progress for 10 s"), std::string::npos) << e.dump();
}

TEST_F(RelayEngineTest, HellosBeyondMaxSensorsAreCountedNotStoredAndStateIsBounded) {
  Limits limits;
  limits.max_sensors = 5;
  limits.max_listed = 3;
  Open(8, limits);
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  for (int i = 0; i < 20; ++i) engine_->OnTransportEvent(Hello("s" + std::to_string(i), "zz", 1));
  engine_->OnTransportEvent(Hello("s0", "zz", 2));  // a known sensor is still heard
  auto counts = engine_->CountsJson();
  EXPECT_EQ(counts["tracked"], 5);
  EXPECT_EQ(counts["listed"], 3);
  EXPECT_EQ(counts["ignored_hellos"], 15);
  EXPECT_EQ(counts["jobs"]["NOT_APPLICABLE"], 5);
  auto sensors = engine_->SensorsJson();
  ASSERT_EQ(sensors.size(), 3u);
  EXPECT_EQ(sensors[0]["id"], "s0");
  EXPECT_EQ(sensors[0]["seq"], 2);
  // The limit holds across a restart (counted from the store).
  Open(8, limits);
  engine_->OnTransportEvent(Hello("new", "zz", 1));
  EXPECT_EQ(engine_->CountsJson()["tracked"], 5);
  EXPECT_EQ(engine_->CountsJson()["ignored_hellos"], 1);
}

TEST_F(RelayEngineTest, EventsTheHostDroppedAreCountedInState) {
  Open(8, Limits{});
  EXPECT_EQ(engine_->CountsJson()["dropped_events"], 0);  // no host count wired: none known
  std::uint64_t dropped = 0;
  engine_->SetDroppedEvents([&] { return dropped; });
  dropped = 18976;
  EXPECT_EQ(engine_->CountsJson()["dropped_events"], 18976);
}

// Each offer and each finished job sends the transport only that job (a flood of 1,000
// sensors made a full job list per event quadratic); what it may serve stays exact.
TEST_F(RelayEngineTest, OffersAndFinishesSendOnlyTheChangedJob) {
  ASSERT_TRUE(engine_->SetFirmware("r1", {Fw("th", kShaA, 7)}));
  int full_sets = log_.full_sets;
  for (int i = 1; i <= 5; ++i) engine_->OnTransportEvent(Hello("s" + std::to_string(i), "th", 3));
  ASSERT_EQ(log_.offers.size(), 5u);
  EXPECT_EQ(log_.full_sets, full_sets);
  EXPECT_EQ(log_.job_updates, 5);
  ASSERT_EQ(log_.images["jobs"].size(), 5u);
  // s2 reports it reverted (result 8): only its job leaves the servable set.
  int job2 = JobOf("s2");
  engine_->OnTransportEvent(Status("s2", job2, 0, 8));
  EXPECT_EQ(log_.full_sets, full_sets);
  ASSERT_EQ(log_.images["jobs"].size(), 4u);
  for (auto& j : log_.images["jobs"]) EXPECT_NE(j["job"], job2);
  EXPECT_EQ(log_.images["jobs"][0]["sensor"], "s1");
}
