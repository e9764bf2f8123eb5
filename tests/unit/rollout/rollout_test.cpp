// The rollout module's tables and the control API on a real SQLite file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "rollout/control.hpp"
#include "rollout/outcome.hpp"
#include "rollout/rollout_db.hpp"

namespace gantry::rollout {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gantry-rollout-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void AddRollout(const std::filesystem::path& path, const std::string& name, const std::string& state) {
  auto db = OpenRolloutDb(path);
  ASSERT_TRUE(db) << db.error().String();
  auto r = db->Run(
      "INSERT INTO rollouts(name, rev, seq, envelope, target_group, waves, soak_s, abort_failed_pct, "
      "min_executed, timeout_s, retries, max_inflight, on_abort, state, created_at) "
      "VALUES (?, 'rev-1', 1, '{}', 'lab', '[100]', 0, 5, 20, 600, 2, 200, 'pause', ?, 'now')",
      name, state);
  ASSERT_TRUE(r) << r.error().String();
}

std::string StateOf(const std::filesystem::path& path, const std::string& name) {
  auto db = OpenRolloutDb(path);
  auto st = db->Prepare("SELECT state || '/' || abort_pending FROM rollouts WHERE name = ?");
  st->Bind(1, name);
  if (!st->Step().value_or(false)) return "";
  return st->Text(0);
}

TEST(RolloutTables, DeviceOutcomes) {
  EXPECT_EQ(Next(DeviceStatus::kPending, DeviceEvent::kDone), DeviceStatus::kSucceeded);
  EXPECT_EQ(Next(DeviceStatus::kTimedOut, DeviceEvent::kDone), DeviceStatus::kSucceeded);
  EXPECT_EQ(Next(DeviceStatus::kRetrying, DeviceEvent::kResend), DeviceStatus::kPending);
  EXPECT_EQ(Next(DeviceStatus::kSucceeded, DeviceEvent::kFailed), std::nullopt);  // final stays
  EXPECT_EQ(Next(DeviceStatus::kSkipped, DeviceEvent::kRetry), std::nullopt);
  EXPECT_TRUE(IsFinal(DeviceStatus::kTimedOut));
  EXPECT_FALSE(IsFinal(DeviceStatus::kRetrying));
  for (auto s : {DeviceStatus::kPending, DeviceStatus::kSucceeded, DeviceStatus::kFailed, DeviceStatus::kTimedOut,
                 DeviceStatus::kRetrying, DeviceStatus::kCancelled, DeviceStatus::kSkipped})
    EXPECT_EQ(DeviceStatusFromName(Name(s)), s);
}

TEST(RolloutTables, RolloutStates) {
  EXPECT_EQ(Next(RolloutState::kRunning, RolloutEvent::kThresholdPause), RolloutState::kPaused);
  EXPECT_EQ(Next(RolloutState::kAborted, RolloutEvent::kResume), std::nullopt);
  EXPECT_EQ(Next(RolloutState::kDone, RolloutEvent::kAbort), std::nullopt);
  EXPECT_EQ(Next(RolloutState::kDone, RolloutEvent::kRetryFailed), RolloutState::kRunning);
}

TEST(RolloutControl, PauseResumeAbort) {
  TempDir dir;
  auto db = dir.path() / "sub" / "rollouts.db";
  AddRollout(db, "r1", "RUNNING");
  ASSERT_TRUE(RequestAction(db, "r1", RolloutAction::kPause));
  EXPECT_EQ(StateOf(db, "r1"), "PAUSED/0");
  ASSERT_TRUE(RequestAction(db, "r1", RolloutAction::kResume));
  EXPECT_EQ(StateOf(db, "r1"), "RUNNING/0");
  ASSERT_TRUE(RequestAction(db, "r1", RolloutAction::kAbort));
  EXPECT_EQ(StateOf(db, "r1"), "ABORTED/1");  // the orchestrator still owes the on-abort action
  auto again = RequestAction(db, "r1", RolloutAction::kResume);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, "bad_state");
  EXPECT_NE(again.error().message.find("ABORTED"), std::string::npos);
}

TEST(RolloutControl, UnknownRolloutIsNamed) {
  TempDir dir;
  auto r = RequestAction(dir.path() / "rollouts.db", "nope", RolloutAction::kPause);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "not_found");
  EXPECT_NE(r.error().message.find("nope"), std::string::npos);
}

TEST(RolloutControl, RetryFailedGivesTheNextAttempt) {
  TempDir dir;
  auto path = dir.path() / "rollouts.db";
  AddRollout(path, "r1", "DONE");
  {
    auto db = OpenRolloutDb(path);
    ASSERT_TRUE(db->Run("INSERT INTO devices(rollout, device, wave, status, attempt, ts) VALUES "
                        "('r1', 'a', 1, 'TIMED_OUT', 1, 'x'), ('r1', 'b', 1, 'SUCCEEDED', 1, 'x')"));
  }
  ASSERT_TRUE(RequestAction(path, "r1", RolloutAction::kRetryFailed));
  EXPECT_EQ(StateOf(path, "r1"), "RUNNING/0");
  auto db = OpenRolloutDb(path);
  auto st = db->Prepare("SELECT group_concat(device || ':' || status || ':' || attempt, ' ') FROM "
                        "(SELECT * FROM devices ORDER BY device)");
  ASSERT_TRUE(st->Step().value_or(false));
  EXPECT_EQ(st->Text(0), "a:PENDING:2 b:SUCCEEDED:1");
}

TEST(RolloutDb, RefusesANewerSchema) {
  TempDir dir;
  auto path = dir.path() / "rollouts.db";
  { ASSERT_TRUE(OpenRolloutDb(path)->Exec("PRAGMA user_version=99")); }
  auto db = OpenRolloutDb(path);
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code, "bad_db");
}

}  // namespace
}  // namespace gantry::rollout
