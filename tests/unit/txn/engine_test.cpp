// The transaction engine against FakeRuntime: the phase table, and the engine paths that need
// no real container (store counter forcing a rollback, supersession, cancel before switching,
// exits during TESTING, restart recovery). Blocks come from a file:// objects_base.
#include <gtest/gtest.h>

#include <condition_variable>

#include "core/time.hpp"
#include "digest/sha256.hpp"
#include "test_util.hpp"
#include "txn/engine.hpp"
#include "unit/runtime/fake_runtime.hpp"

using namespace gantry;
using namespace gantry::txn;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string Sha(const std::string& bytes) {
  digest::Sha256 h;
  h.Update(bytes.data(), bytes.size());
  return h.FinalHex();
}

class FakeReporter : public Reporter {
 public:
  std::function<void(const json&)> on_progress;

  void Progress(const json& event) override {
    if (on_progress) on_progress(event);
    std::lock_guard l(mu_);
    events_.push_back(event);
    cv_.notify_all();
  }
  void StateChanged() override {}
  void Committed(const manifest::State&, const std::string&) override {}

  json WaitFinal(const std::string& id, std::chrono::seconds timeout = 20s) {
    std::unique_lock l(mu_);
    json found;
    cv_.wait_for(l, timeout, [&] {
      for (auto& e : events_) {
        auto s = e.value("status", "");
        if (e["id"] == id && (s == "DONE" || s == "ERROR" || s == "WONTGO" || s == "CANCELLED")) {
          found = e;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::vector<std::string> Statuses(const std::string& id) {
    std::lock_guard l(mu_);
    std::vector<std::string> out;
    for (auto& e : events_)
      if (e["id"] == id && (out.empty() || out.back() != e["status"])) out.push_back(e["status"]);
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<json> events_;
};

struct Def {
  std::string name, marker;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() / "data");
    auto db = store::Db::Open(dir_.path() / "data" / "gantry.db");
    ASSERT_TRUE(db) << db.error().String();
    db_.emplace(std::move(*db));
    // One connection for the test, the cache and the engine, as in gantryd.
    auto cache = cache::BlockCache::Open(dir_.path() / "data", cache::Options{}, *db_);
    ASSERT_TRUE(cache) << cache.error().String();
    cache_ = std::move(*cache);
  }
  void TearDown() override {
    if (engine_) engine_->Stop();
  }

  void StartEngine(int commit_window_s = 1) {
    EngineOptions o;
    o.data_dir = dir_.path() / "data";
    o.commit_window_s = commit_window_s;
    o.poll = 20ms;
    engine_ = std::make_unique<Engine>(*db_, *cache_, rt_, reporter_, o);
    auto r = engine_->Open();
    ASSERT_TRUE(r) << r.error().String();
    engine_->Start();
  }

  // A revision document of these containers; its blocks are written under objects/.
  std::string Document(const std::string& rev, int seq, const std::vector<Def>& defs) {
    json state = {{"#spec", "pantavisor-service-system@1"}};
    json objects = json::object();
    auto put = [&](const std::string& bytes) {
      auto id = Sha(bytes);
      test::Spit(dir_.path() / "objects" / id, bytes);
      objects[id] = {{"size", bytes.size()}};
      return id;
    };
    for (auto& d : defs) {
      state[d.name + "/run.json"] = {{"#spec", "service-manifest-run@1"}, {"name", d.name}, {"type", "lxc"},
                                     {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"},
                                     {"group", "app"}, {"status_goal", "STARTED"}};
      state[d.name + "/lxc.container.conf"] = put("lxc.init.cmd = /sbin/gantry-init\n");
      state[d.name + "/root.squashfs"] = put("image of " + d.name + " " + d.marker);
    }
    return json{{"rev", rev}, {"seq", seq}, {"targets", {"gw"}},
                {"objects_base", "file://" + (dir_.path() / "objects").string() + "/"},
                {"objects", objects}, {"state", state}}
        .dump();
  }

  // What the dispatcher does for an admitted update.
  std::int64_t Insert(const std::string& cmd_id, const std::string& rev, int seq, const std::vector<Def>& defs,
                      Phase phase = Phase::kQueued, int store_count = 0) {
    TxnRow row;
    row.cmd_id = cmd_id;
    row.kind = "update";
    row.rev = rev;
    row.seq = seq;
    row.phase = phase;
    row.document = Document(rev, seq, defs);
    Journal j(*db_);
    auto id = j.Insert(row);
    EXPECT_TRUE(id);
    if (store_count) {
      EXPECT_TRUE(db_->Run("UPDATE transactions SET store_count = ? WHERE id = ?", store_count, *id));
    }
    return *id;
  }

  std::string CurrentRev() {
    Journal j(*db_);
    auto c = j.Current();
    return c && *c ? (*c)->rev : "";
  }
  // Instance names of the running fake containers of name.
  // r1 (container a) committed, then the engine stopped as a killed agent leaves it; returns
  // the running instance of a.
  std::vector<std::string> CommitR1ThenStop() {
    StartEngine();
    Insert("u1", "r1", 1, {{"a", "1"}});
    engine_->Wake();
    if (reporter_.WaitFinal("u1")["status"] != "DONE") return {};
    auto running = RunningOf("a");
    engine_->Stop();
    engine_.reset();
    return running;
  }

  std::vector<std::string> RunningOf(const std::string& name) {
    std::vector<std::string> out;
    for (auto& i : rt_.Running())
      if (i.rfind(name + "-", 0) == 0) out.push_back(i);
    return out;
  }
  int CallsLike(const std::string& prefix) {
    int n = 0;
    for (auto& c : rt_.Calls())
      if (c.rfind(prefix, 0) == 0) ++n;
    return n;
  }

  test::TempDir dir_;
  std::optional<store::Db> db_;
  std::unique_ptr<cache::BlockCache> cache_;
  runtime::FakeRuntime rt_;
  FakeReporter reporter_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace

TEST(PhaseTable, HappyPathAndFailureSides) {
  EXPECT_EQ(Next(Phase::kQueued, Trigger::kStart), Phase::kFetching);
  EXPECT_EQ(Next(Phase::kFetching, Trigger::kFetched), Phase::kStaged);
  EXPECT_EQ(Next(Phase::kStaged, Trigger::kStaged), Phase::kSwitching);
  EXPECT_EQ(Next(Phase::kSwitching, Trigger::kSwitched), Phase::kTesting);
  EXPECT_EQ(Next(Phase::kTesting, Trigger::kTested), Phase::kCommitted);
  // Before switching a failure is a WONTGO and cancel is allowed; after, it is a rollback.
  for (auto p : {Phase::kQueued, Phase::kFetching, Phase::kStaged}) {
    EXPECT_EQ(Next(p, Trigger::kRefused), Phase::kWontgo);
    EXPECT_EQ(Next(p, Trigger::kCancel), Phase::kCancelled);
    EXPECT_FALSE(Next(p, Trigger::kFailed));
    EXPECT_FALSE(TouchesRunning(p));
  }
  for (auto p : {Phase::kSwitching, Phase::kTesting}) {
    EXPECT_EQ(Next(p, Trigger::kFailed), Phase::kRollingBack);
    EXPECT_FALSE(Next(p, Trigger::kCancel));
    EXPECT_FALSE(Next(p, Trigger::kRefused));
    EXPECT_TRUE(TouchesRunning(p));
  }
  EXPECT_EQ(Next(Phase::kRollingBack, Trigger::kRolledBack), Phase::kRolledBack);
  // Resumed after a restart: FETCHING and STAGED start over at FETCHING.
  EXPECT_EQ(Next(Phase::kFetching, Trigger::kStart), Phase::kFetching);
  EXPECT_EQ(Next(Phase::kStaged, Trigger::kStart), Phase::kFetching);
  EXPECT_FALSE(Next(Phase::kQueued, Trigger::kSwitched));
  for (auto p : {Phase::kCommitted, Phase::kWontgo, Phase::kRolledBack, Phase::kCancelled}) {
    EXPECT_TRUE(IsFinal(p));
    for (auto t : {Trigger::kStart, Trigger::kFailed, Trigger::kCancel, Trigger::kTested}) EXPECT_FALSE(Next(p, t));
  }
  for (int i = 0; i <= static_cast<int>(Phase::kCancelled); ++i)
    EXPECT_EQ(PhaseFromName(PhaseName(static_cast<Phase>(i))), static_cast<Phase>(i));
  EXPECT_FALSE(PhaseFromName("BOGUS"));
}

// The one phase→status mapping: what the engine reports when a transaction ends in a final
// phase, and what the journal rebuilds for a final the agent could not report.
TEST(PhaseTable, EachFinalPhaseHasOneStatus) {
  EXPECT_EQ(FinalReportOf(Phase::kCommitted).status, "DONE");
  EXPECT_EQ(FinalReportOf(Phase::kCommitted).progress, 100);
  EXPECT_EQ(FinalReportOf(Phase::kRolledBack).status, "ERROR");
  EXPECT_EQ(FinalReportOf(Phase::kRolledBack).progress, 100);
  EXPECT_EQ(FinalReportOf(Phase::kCancelled).status, "CANCELLED");
  EXPECT_EQ(FinalReportOf(Phase::kCancelled).progress, 0);
  EXPECT_EQ(FinalReportOf(Phase::kWontgo).status, "WONTGO");
  EXPECT_EQ(FinalReportOf(Phase::kWontgo).progress, 0);

  TxnRow row;
  row.rev = "r1";
  row.message = "stored message";
  for (auto p : {Phase::kRolledBack, Phase::kCancelled, Phase::kWontgo}) {
    row.phase = p;
    auto f = FinalStatusOf(row);
    EXPECT_EQ(f.status, FinalReportOf(p).status);
    EXPECT_EQ(f.progress, FinalReportOf(p).progress);
    EXPECT_EQ(f.msg, "stored message");
  }
  row.phase = Phase::kCommitted;
  row.kind = "update";
  EXPECT_EQ(FinalStatusOf(row).msg, "committed");
  row.kind = "rollback";
  EXPECT_EQ(FinalStatusOf(row).msg, "rolled back to r1");
  EXPECT_EQ(FinalStatusOf(row).status, "DONE");
}

// Only a move a restart cannot tell from staying put may skip its fsync: SWITCHING is
// written, durably, before any running container is touched; every final phase is durable.
TEST(PhaseTable, OnlyMovesThatARestartTreatsAlikeSkipTheirFsync) {
  using store::Durability;
  EXPECT_EQ(Engine::PhaseDurability(Phase::kQueued, Phase::kFetching), Durability::kDeferred);
  EXPECT_EQ(Engine::PhaseDurability(Phase::kFetching, Phase::kStaged), Durability::kDeferred);
  EXPECT_EQ(Engine::PhaseDurability(Phase::kStaged, Phase::kSwitching), Durability::kDurable);
  EXPECT_EQ(Engine::PhaseDurability(Phase::kSwitching, Phase::kTesting), Durability::kDeferred);
  EXPECT_EQ(Engine::PhaseDurability(Phase::kTesting, Phase::kRollingBack), Durability::kDeferred);
  for (auto from : {Phase::kQueued, Phase::kFetching, Phase::kStaged, Phase::kSwitching, Phase::kTesting,
                    Phase::kRollingBack})
    for (auto to : {Phase::kCommitted, Phase::kWontgo, Phase::kRolledBack, Phase::kCancelled})
      EXPECT_EQ(Engine::PhaseDurability(from, to), Durability::kDurable)
          << PhaseName(from) << " -> " << PhaseName(to);
}

TEST_F(EngineTest, OnlyTheChangedContainerIsSwitched) {
  StartEngine();
  Insert("u1", "r1", 1, {{"a", "1"}, {"b", "1"}});
  engine_->Wake();
  ASSERT_EQ(reporter_.WaitFinal("u1")["status"], "DONE");
  EXPECT_EQ(reporter_.Statuses("u1"), (std::vector<std::string>{"DOWNLOADING", "INPROGRESS", "TESTING", "DONE"}));
  auto a1 = RunningOf("a"), b1 = RunningOf("b");
  ASSERT_EQ(a1.size(), 1u);
  ASSERT_EQ(b1.size(), 1u);
  rt_.ClearCalls();

  Insert("u2", "r2", 2, {{"a", "1"}, {"b", "2"}});
  engine_->Wake();
  ASSERT_EQ(reporter_.WaitFinal("u2")["status"], "DONE");
  EXPECT_EQ(RunningOf("a"), a1);
  auto b2 = RunningOf("b");
  ASSERT_EQ(b2.size(), 1u);
  EXPECT_NE(b2, b1);
  EXPECT_EQ(CallsLike("stop a-"), 0);
  EXPECT_EQ(CallsLike("start a-"), 0);
  EXPECT_EQ(CallsLike("stop " + b1[0]), 1);
  EXPECT_EQ(CurrentRev(), "r2");
  auto snap = engine_->GetSnapshot();
  EXPECT_EQ(snap.rev, "r2");
  ASSERT_EQ(snap.containers.size(), 2u);
  for (auto& c : snap.containers) EXPECT_EQ(c.state, "RUNNING") << c.name;
}

TEST_F(EngineTest, AnExitDuringTestingRollsBack) {
  StartEngine(2);
  Insert("u1", "r1", 1, {{"a", "1"}});
  engine_->Wake();
  ASSERT_EQ(reporter_.WaitFinal("u1")["status"], "DONE");
  auto a1 = RunningOf("a");
  reporter_.on_progress = [&](const json& e) {
    if (e["id"] == "u2" && e["status"] == "TESTING")
      for (auto& i : RunningOf("a"))
        if (i != a1[0]) rt_.Exit(i);
  };
  Insert("u2", "r2", 2, {{"a", "2"}});
  engine_->Wake();
  auto e = reporter_.WaitFinal("u2");
  ASSERT_EQ(e["status"], "ERROR") << e.dump();
  EXPECT_NE(e["msg"].get<std::string>().find("during TESTING; rolled back to r1"), std::string::npos) << e.dump();
  EXPECT_EQ(RunningOf("a"), a1);
  EXPECT_EQ(CurrentRev(), "r1");
}

TEST_F(EngineTest, StoreCounterPastTheLimitForcesARollback) {
  StartEngine();
  Insert("u1", "r1", 1, {{"a", "1"}});
  engine_->Wake();
  ASSERT_EQ(reporter_.WaitFinal("u1")["status"], "DONE");
  auto a1 = RunningOf("a");
  // Three more writes (FETCHING, STAGED, SWITCHING) reach the limit; TESTING would pass it.
  Insert("u2", "r2", 2, {{"a", "2"}}, Phase::kQueued, kMaxStoreCount - 3);
  engine_->Wake();
  auto e = reporter_.WaitFinal("u2");
  ASSERT_EQ(e["status"], "ERROR") << e.dump();
  EXPECT_NE(e["msg"].get<std::string>().find("forcing a rollback"), std::string::npos) << e.dump();
  EXPECT_NE(e["msg"].get<std::string>().find("rolled back to r1"), std::string::npos) << e.dump();
  EXPECT_EQ(RunningOf("a"), a1);
  EXPECT_EQ(CurrentRev(), "r1");
}

TEST_F(EngineTest, ANewerUpdateSupersedesOneNotYetSwitching) {
  Insert("u1", "r1", 1, {{"a", "1"}});
  Insert("u2", "r2", 2, {{"a", "2"}});
  StartEngine();
  auto e1 = reporter_.WaitFinal("u1");
  EXPECT_EQ(e1["status"], "CANCELLED");
  EXPECT_EQ(e1["msg"], "superseded by r2");
  EXPECT_EQ(reporter_.WaitFinal("u2")["status"], "DONE");
  EXPECT_EQ(CurrentRev(), "r2");
  EXPECT_EQ(rt_.Running().size(), 1u);
}

// Regression (found by the network-faults test): the runner polls, so it can pick up a new
// row between the dispatcher's commit and its Wake(); that late Wake() cancelled the very
// update it announced ("superseded by r1" of r1).
TEST_F(EngineTest, ALateWakeDoesNotSupersedeTheUpdateItAnnounces) {
  StartEngine();
  bool woke = false;
  reporter_.on_progress = [&](const json& e) {
    if (e["id"] == "u1" && e["status"] == "DOWNLOADING" && !woke) {
      woke = true;
      engine_->Wake("r1");
    }
  };
  // A plain wake starts it; the announcing Wake("r1") arrives once it already runs.
  Insert("u1", "r1", 1, {{"a", "1"}});
  engine_->Wake();
  auto e = reporter_.WaitFinal("u1");
  EXPECT_TRUE(woke);
  EXPECT_EQ(e["status"], "DONE") << e.dump();
  EXPECT_EQ(CurrentRev(), "r1");
}

TEST_F(EngineTest, CancelBeforeSwitchingTouchesNothingRunning) {
  StartEngine();
  EXPECT_FALSE(engine_->Cancel()) << "nothing to cancel";
  Insert("u1", "r1", 1, {{"a", "1"}});
  engine_->Wake();
  ASSERT_EQ(reporter_.WaitFinal("u1")["status"], "DONE");
  auto a1 = RunningOf("a");
  rt_.ClearCalls();
  ExpectedVoid cancelled = Fail("not_called", "");
  reporter_.on_progress = [&](const json& e) {
    if (e["id"] == "u2" && e["status"] == "DOWNLOADING" && cancelled.error().code == "not_called")
      cancelled = engine_->Cancel();
  };
  Insert("u2", "r2", 2, {{"a", "2"}});
  engine_->Wake();
  auto e = reporter_.WaitFinal("u2");
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(e["status"], "CANCELLED") << e.dump();
  EXPECT_EQ(e["msg"], "cancelled by operator");
  EXPECT_EQ(CallsLike("stop"), 0);
  EXPECT_EQ(CallsLike("start"), 0);
  EXPECT_EQ(RunningOf("a"), a1);
  EXPECT_EQ(CurrentRev(), "r1");
}

TEST_F(EngineTest, CancelIsRefusedOnceSwitchingBegan) {
  StartEngine(2);
  ExpectedVoid cancelled;
  reporter_.on_progress = [&](const json& e) {
    if (e["id"] == "u1" && e["status"] == "TESTING") cancelled = engine_->Cancel();
  };
  Insert("u1", "r1", 1, {{"a", "1"}});
  engine_->Wake();
  EXPECT_EQ(reporter_.WaitFinal("u1")["status"], "DONE");
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code, "not_cancellable");
}

TEST_F(EngineTest, RestartInSwitchingRollsBackAndInFetchingResumes) {
  auto a1 = CommitR1ThenStop();
  ASSERT_EQ(a1.size(), 1u);

  // As a killed agent leaves it: r2 was switching, its new container running, the old one stopped.
  Insert("u2", "r2", 2, {{"a", "2"}}, Phase::kSwitching);
  rt_.Stop(a1[0], 1);
  StartEngine();
  auto e = reporter_.WaitFinal("u2");
  ASSERT_EQ(e["status"], "ERROR") << e.dump();
  EXPECT_NE(e["msg"].get<std::string>().find("agent restarted during SWITCHING; rolled back to r1"), std::string::npos)
      << e.dump();
  EXPECT_EQ(RunningOf("a"), a1);
  engine_->Stop();
  engine_.reset();

  Insert("u3", "r3", 3, {{"a", "3"}}, Phase::kFetching);
  StartEngine();
  EXPECT_EQ(reporter_.WaitFinal("u3")["status"], "DONE");
  EXPECT_EQ(CurrentRev(), "r3");
}

// The step a row takes when the runner picks it up: in TESTING or ROLLING_BACK it rolls back
// (a row already ROLLING_BACK is not written ROLLING_BACK again), in STAGED it takes its turn
// again and commits.
TEST_F(EngineTest, APickedUpRowRollsBackAfterSwitchingBeganAndResumesBefore) {
  auto a1 = CommitR1ThenStop();
  ASSERT_EQ(a1.size(), 1u);

  int seq = 2;
  for (auto [phase, writes] : {std::pair{Phase::kTesting, 2}, std::pair{Phase::kRollingBack, 1}}) {
    auto id = "u" + std::to_string(seq), rev = "r" + std::to_string(seq);
    auto txn = Insert(id, rev, seq, {{"a", rev}}, phase);
    rt_.Stop(a1[0], 1);
    StartEngine();
    auto e = reporter_.WaitFinal(id);
    ASSERT_EQ(e["status"], "ERROR") << e.dump();
    EXPECT_NE(e["msg"].get<std::string>().find("agent restarted during " + std::string(PhaseName(phase)) +
                                                "; rolled back to r1"),
              std::string::npos)
        << e.dump();
    EXPECT_EQ(RunningOf("a"), a1);
    EXPECT_EQ(CurrentRev(), "r1");
    engine_->Stop();
    engine_.reset();
    auto row = Journal(*db_).Get(txn);
    ASSERT_TRUE(row && *row);
    EXPECT_EQ((*row)->phase, Phase::kRolledBack);
    EXPECT_EQ((*row)->store_count, writes) << PhaseName(phase);
    ++seq;
  }

  Insert("u4", "r4", 4, {{"a", "4"}}, Phase::kStaged);
  StartEngine();
  EXPECT_EQ(reporter_.WaitFinal("u4")["status"], "DONE");
  EXPECT_EQ(reporter_.Statuses("u4"), (std::vector<std::string>{"DOWNLOADING", "INPROGRESS", "TESTING", "DONE"}));
  EXPECT_EQ(CurrentRev(), "r4");
}

// Every final status the engine reports can be rebuilt from its journal row (FinalStatusOf),
// and the row stays "unreported" until the dispatcher marks it: what a starting agent re-emits
// when a crash fell between the final phase and its event.
TEST_F(EngineTest, FinalStatusesAreRebuiltFromTheJournalUntilReported) {
  Insert("u1", "r1", 1, {{"a", "1"}});
  Insert("u2", "r2", 2, {{"a", "2"}});  // supersedes u1: CANCELLED
  StartEngine(2);
  ASSERT_EQ(reporter_.WaitFinal("u2")["status"], "DONE");
  auto a2 = RunningOf("a");
  reporter_.on_progress = [&](const json& e) {
    if (e["id"] == "u3" && e["status"] == "TESTING")
      for (auto& i : RunningOf("a"))
        if (i != a2[0]) rt_.Exit(i);
  };
  Insert("u3", "r3", 3, {{"a", "3"}});
  engine_->Wake();
  ASSERT_EQ(reporter_.WaitFinal("u3")["status"], "ERROR");
  engine_->Stop();

  Journal j(*db_);
  auto rows = j.UnreportedFinals();
  ASSERT_TRUE(rows) << rows.error().String();
  ASSERT_EQ(rows->size(), 3u);
  for (auto& row : *rows) {
    auto reported = reporter_.WaitFinal(row.cmd_id);
    auto rebuilt = FinalStatusOf(row);
    EXPECT_EQ(rebuilt.status, reported["status"]) << row.cmd_id;
    EXPECT_EQ(rebuilt.progress, reported["progress"]) << row.cmd_id;
    EXPECT_EQ(rebuilt.msg, reported["msg"]) << row.cmd_id;
  }
  ASSERT_TRUE(j.MarkReported("u2"));
  rows = j.UnreportedFinals();
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].cmd_id, "u1");
  EXPECT_EQ((*rows)[1].cmd_id, "u3");
}

// A final transaction keeps its published final event (a repeated command id republishes it)
// until it is pruned with the command ids; the transaction that committed a kept revision and
// one whose final event never reached the outbox are never pruned.
TEST_F(EngineTest, FinalEventsAreKeptUntilTheirTransactionsArePruned) {
  Insert("u1", "r1", 1, {{"a", "1"}});
  Insert("u2", "r2", 2, {{"a", "2"}});  // supersedes u1: CANCELLED
  StartEngine(2);
  ASSERT_EQ(reporter_.WaitFinal("u2")["status"], "DONE");
  ASSERT_EQ(reporter_.WaitFinal("u1")["status"], "CANCELLED");
  Insert("u3", "r3", 3, {{"b", "3"}});
  engine_->Wake();
  ASSERT_EQ(reporter_.WaitFinal("u3")["status"], "DONE");
  engine_->Stop();

  Journal j(*db_);
  ASSERT_TRUE(j.MarkReported("u1", std::string("event of u1")));
  ASSERT_TRUE(j.MarkReported("u2", std::string("event of u2")));
  EXPECT_EQ(j.FinalEvent("u1").value(), std::optional<std::string>("event of u1"));
  EXPECT_EQ(j.FinalEvent("u3").value(), std::nullopt);  // not reported yet
  EXPECT_EQ(j.FinalEvent("nobody").value(), std::nullopt);

  auto later = NowUnix() + 31 * 24 * 3600;
  EXPECT_EQ(j.Prune(later, 30 * 24 * 3600, 10).value(), 0);  // the newest ten are kept
  EXPECT_EQ(j.Prune(NowUnix(), 30 * 24 * 3600, 0).value(), 0);  // too recent
  auto pruned = j.Prune(later, 30 * 24 * 3600, 0);
  ASSERT_TRUE(pruned) << pruned.error().String();
  EXPECT_EQ(*pruned, 1);  // u1 only: u2 committed r2 (kept), u3 is unreported
  EXPECT_EQ(j.FinalEvent("u1").value(), std::nullopt);
  EXPECT_EQ(j.FinalEvent("u2").value(), std::optional<std::string>("event of u2"));
  auto unreported = j.UnreportedFinals();
  ASSERT_TRUE(unreported);
  ASSERT_EQ(unreported->size(), 1u);
  EXPECT_EQ((*unreported)[0].cmd_id, "u3");
}
