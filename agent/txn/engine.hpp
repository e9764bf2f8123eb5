#pragma once
// The update engine (docs/architecture.md): one runner thread takes open transactions one at a time and
// drives them through the phase table, writing each phase to SQLite before its side effect.
// The agent's loop submits and cancels; the runner reports through a thread-safe Reporter.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cache/block_cache.hpp"
#include "core/error.hpp"
#include "manifest/revision.hpp"
#include "runtime/runtime.hpp"
#include "store/db.hpp"
#include "txn/journal.hpp"

namespace gantry::txn {

struct EngineOptions {
  std::filesystem::path data_dir;
  int commit_window_s = 10;
  int stop_timeout_s = 5;
  int parallel_downloads = 4;
  bool reject_bsp = false;
  std::vector<std::string> allow_lxc_keys;
  std::optional<std::string> ca_file;  // for https block servers
  std::chrono::milliseconds poll{200};
};

// Called from the runner thread; implementations post to the agent's loop.
class Reporter {
 public:
  virtual ~Reporter() = default;
  // {"id", "rev", "seq", "status", "progress", "msg", "downloads"}: the reporter adds "ts".
  virtual void Progress(const nlohmann::json& event) = 0;
  // The committed revision or the containers changed: republish P/state.
  virtual void StateChanged() = 0;
  // A revision was committed (for the relay's sensor firmware).
  virtual void Committed(const manifest::State& state, const std::string& rev) = 0;
};

struct ContainerView {
  std::string name, group, state, rev;
  int restarts = 0;
};

struct Snapshot {
  std::optional<std::string> rev;  // committed revision running; nullopt before the first commit
  std::int64_t seq = 0;
  std::string status;  // phase of the latest transaction, or "DONE"/"IDLE"
  std::vector<ContainerView> containers;
};

class Engine {
 public:
  // db is the process's one connection (see store/db.hpp); it must outlive the engine.
  Engine(store::Db& db, cache::BlockCache& cache, runtime::Runtime& runtime, Reporter& reporter,
         EngineOptions options);
  ~Engine();

  ExpectedVoid Open();  // reads the committed revision
  void Start();         // recovery, then the runner
  // Cancels downloads and health waits (an interrupted download stays FETCHING and resumes
  // at the next start) and joins the runner.
  void Stop();

  // Loop thread. Wakes the runner after a transaction row was inserted; supersedes an
  // update of another revision not yet switching (it ends CANCELLED "superseded by <rev>").
  void Wake(std::optional<std::string> superseded_by = std::nullopt);
  // Cancels the running update if it has not begun switching. Error "not_cancellable".
  // Never touches the database: the loop may call it inside its own write transaction.
  ExpectedVoid Cancel();
  Snapshot GetSnapshot();

  // How the move from one phase to the next is committed: deferred when a restart would treat
  // the two phases alike (the same entry step), so losing the move to a power cut changes
  // nothing; fsync'd otherwise, and always for a final phase (docs/architecture-engine.md).
  static store::Durability PhaseDurability(Phase from, Phase to);

 private:
  struct Plan;
  struct Run;  // one execution of one transaction: its row, revision and plan
  // How a step left the transaction: kNext goes on with the step of the row's (new) phase;
  // the others end this execution (see End).
  struct StepResult {
    enum Kind {
      kNext,
      kRefused,    // WONTGO: nothing running was touched
      kCancelled,  // CANCELLED, before switching began
      kFailed,     // after switching began: roll back
      kSuspend,    // the agent is stopping: the row stays, the next start resumes it
    } kind = kNext;
    std::string message;
    static StepResult Refused(const Error& e) { return {kRefused, e.String()}; }
  };
  using Step = StepResult (Engine::*)(Run&);
  // The one step table: what runs in a phase, when the row was picked up in it (entry) or
  // when the previous step of this execution led to it.
  static Step StepFor(Phase phase, bool entry);

  void RunnerMain();
  void Recover();
  void Execute(TxnRow row);
  // The steps, in the order an update takes them; StepRestarted is the one step of a row a
  // restart left after switching began.
  StepResult StepResolve(Run& run);
  StepResult StepAdmitTurn(Run& run);
  StepResult StepFetch(Run& run);
  StepResult StepStage(Run& run);
  StepResult StepSwitchAndTest(Run& run);
  StepResult StepCommit(Run& run);
  StepResult StepRestarted(Run& run);
  // Maps the last step's result to the transaction's end.
  void End(Run& run, const StepResult& result);
  void BuildPlan(Run& run);
  ExpectedVoid Fetch(TxnRow& row, const manifest::Revision& rev);
  ExpectedVoid Stage(const manifest::State& next);
  ExpectedVoid SwitchAndTest(TxnRow& row, const Plan& plan);
  void RollBack(TxnRow& row, const Plan& plan, const std::string& why);
  ExpectedVoid Advance(TxnRow& row, Trigger trigger, const std::string& message = "");
  // Ends the transaction in the phase the table gives for trigger and reports that phase's
  // status (FinalReportOf).
  void Finish(TxnRow& row, Trigger trigger, const std::string& msg);
  void UnpinUncommitted(const std::string& rev, Phase phase);
  // Retries the final phases the journal could not write and drops their rows from open.
  void RecordUnrecorded(std::vector<TxnRow>& open);
  ExpectedVoid ReachGoal(const manifest::Container& c, const std::string& instance, int timeout_s);
  void EnsureCurrentRunning();
  void Monitor();
  void ReleaseUnused();
  void Report(const TxnRow& row, const std::string& status, int progress, const std::string& msg,
              const nlohmann::json& downloads = nullptr);
  bool CancelRequested(std::int64_t id);
  bool Stopping();
  // The revision may still be applied now: not expired, seq above every committed seq.
  ExpectedVoid CheckFresh(const TxnRow& row, const manifest::Revision& revision);
  runtime::ContainerSpec SpecFor(const manifest::Container& c);
  std::string InstanceOf(const manifest::Container& c) const;

  store::Db& db_;
  std::optional<Journal> journal_;
  cache::BlockCache& cache_;
  runtime::Runtime& runtime_;
  Reporter& reporter_;
  EngineOptions options_;

  // Guards the fields below. Never held while the database is used: the loop holds the
  // database's writer lock when it calls Cancel() or GetSnapshot().
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool wake_ = false;
  std::int64_t running_id_ = 0;
  std::string running_rev_;
  bool running_switching_ = false;
  std::atomic<bool> cancel_{false};
  std::string cancel_reason_;
  Snapshot snapshot_;
  std::map<std::string, int> restarts_;  // by container name, for the committed revision
  // Final phases a full disk kept out of the journal, by transaction id (runner thread only):
  // already reported, so retried until written but never run (or reported) again.
  std::map<std::int64_t, std::pair<Phase, std::string>> unrecorded_;
  std::thread runner_;
};

}  // namespace gantry::txn
