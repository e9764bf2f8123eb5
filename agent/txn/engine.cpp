#include "txn/engine.hpp"

#include <algorithm>
#include <array>
#include <set>

#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/saturating.hpp"
#include "core/time.hpp"
#include "manifest/lxc_config.hpp"
#include "manifest/revision.hpp"

namespace gantry::txn {
namespace {

constexpr const char* kLog = "txn";
using Clock = std::chrono::steady_clock;

Expected<manifest::State> ParseDocState(const std::string& document, bool reject_bsp,
                                        manifest::Revision* out_rev = nullptr) {
  manifest::StateOptions opts;
  opts.bsp = reject_bsp ? manifest::BspPolicy::kReject : manifest::BspPolicy::kIgnore;
  auto rev = manifest::ParseRevision(document, opts);
  if (!rev) return Unexpected(rev.error());
  manifest::State state = rev->state;
  if (out_rev) *out_rev = std::move(*rev);
  return state;
}

}  // namespace

struct Engine::Plan {
  manifest::State next;
  std::optional<manifest::State> current;
  std::string from_rev;
  std::vector<const manifest::Container*> changed;     // in next, new content or new name
  std::map<std::string, std::string> old_instance;     // name → instance in current
  std::vector<std::string> removed;                    // instances of current not in next
};

struct Engine::Run {
  TxnRow row;
  manifest::Revision revision;  // the parsed document: seq and expiry for CheckFresh
  // plan.next from the document (StepResolve); the rest once switching is due (BuildPlan).
  // Never moved once built: plan.changed points into plan.next.
  Plan plan;
};

Engine::Engine(store::Db& db, cache::BlockCache& cache, runtime::Runtime& runtime,
               Reporter& reporter, EngineOptions options)
    : db_(db), cache_(cache), runtime_(runtime), reporter_(reporter),
      options_(std::move(options)) {}

Engine::~Engine() { Stop(); }

ExpectedVoid Engine::Open() {
  journal_.emplace(db_);
  auto cur = journal_->Current();
  if (!cur) return Unexpected(cur.error());
  std::lock_guard lock(mutex_);
  if (*cur) {
    snapshot_.rev = (*cur)->rev;
    snapshot_.seq = (*cur)->seq;
  }
  snapshot_.status = "IDLE";
  return {};
}

void Engine::Start() {
  runner_ = std::thread([this] { RunnerMain(); });
}

void Engine::Stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    cancel_reason_ = "agent stopping";
    cancel_ = true;  // a download or a health wait stops now, not at the service's SIGKILL
  }
  cv_.notify_all();
  if (runner_.joinable()) runner_.join();
}

void Engine::Wake(std::optional<std::string> superseded_by) {
  {
    std::lock_guard lock(mutex_);
    wake_ = true;
    // The runner also polls: it may already be running the very transaction this wake
    // announces, which must not cancel itself.
    if (superseded_by && running_id_ != 0 && !running_switching_ && running_rev_ != *superseded_by) {
      cancel_reason_ = "superseded by " + *superseded_by;
      cancel_ = true;
    }
  }
  cv_.notify_all();
}

ExpectedVoid Engine::Cancel() {
  std::lock_guard lock(mutex_);
  if (running_id_ == 0) return Fail("not_cancellable", "no update in progress");
  if (running_switching_)
    return Fail("not_cancellable", "the update is already switching; it will finish or roll back");
  cancel_reason_ = "cancelled by operator";
  cancel_ = true;
  cv_.notify_all();
  return {};
}

Snapshot Engine::GetSnapshot() {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

bool Engine::CancelRequested(std::int64_t) { return cancel_.load(); }

bool Engine::Stopping() {
  std::lock_guard lock(mutex_);
  return stop_;
}

// The committed seq only grows and an expired revision never starts switching, whatever held
// when the update was admitted: an old revision replayed while another was testing is
// refused here once the other committed.
ExpectedVoid Engine::CheckFresh(const TxnRow& row, const manifest::Revision& revision) {
  if (row.kind != "update") return {};  // a rollback goes back on purpose
  auto high = journal_->HighSeq();
  if (!high) return Unexpected(high.error());
  return manifest::CheckFresh(revision, *high, NowUnix());
}

void Engine::Report(const TxnRow& row, const std::string& status, int progress,
                    const std::string& msg, const nlohmann::json& downloads) {
  nlohmann::json e = {{"id", row.cmd_id}, {"rev", row.rev}, {"seq", row.seq}, {"status", status},
                      {"progress", progress}, {"msg", msg}};
  if (!downloads.is_null()) e["downloads"] = downloads;
  reporter_.Progress(e);
  std::lock_guard lock(mutex_);
  snapshot_.status = status;
}

std::string Engine::InstanceOf(const manifest::Container& c) const {
  return c.name + "-" + c.content_key.substr(0, 12);
}

runtime::ContainerSpec Engine::SpecFor(const manifest::Container& c) {
  runtime::ContainerSpec s;
  s.name = c.name;
  s.instance = InstanceOf(c);
  s.rootfs_image = cache_.PathOf(c.root_volume.block);
  if (!c.config_block.empty())
    s.lxc_config = manifest::WithoutOwnedKeys(fs::ReadFile(cache_.PathOf(c.config_block)).value_or(""));
  for (const auto& [path, file] : c.config_files) {
    if (!file.block.empty()) {
      s.config_files.emplace_back(path, cache_.PathOf(file.block));
      continue;
    }
    // pvr inlines JSON config files: they live beside the mounts, keyed by content as well.
    auto inline_path = options_.data_dir / "inline" / c.content_key / path;
    if (!std::filesystem::exists(inline_path)) {
      (void)fs::MakeDirs(inline_path.parent_path());
      if (auto r = fs::WriteFileAtomic(inline_path, file.inline_json); !r)
        log::Error(kLog, r.error().String());
    }
    s.config_files.emplace_back(path, inline_path);
  }
  for (const auto& [name, persistence] : c.storage) s.storage.push_back({name, persistence});
  s.privileged = c.privileged;
  return s;
}

void Engine::RunnerMain() {
  Recover();
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stop_) return;
      wake_ = false;
    }
    auto open = journal_->OpenTransactions();
    if (open) RecordUnrecorded(*open);
    if (!open) {
      log::Error(kLog, open.error().String());
    } else if (!open->empty()) {
      // Only the newest waiting update matters: the older ones are superseded.
      TxnRow& newest = open->back();
      for (size_t i = 0; i + 1 < open->size(); ++i) {
        TxnRow& old = (*open)[i];
        Finish(old, Trigger::kCancel, "superseded by " + newest.rev);
      }
      Execute(newest);
      continue;
    }
    Monitor();
    // Containers are watched every 2 s (restart policy, P/state), and an unwritten final
    // phase is retried as often; otherwise an idle agent sleeps until work arrives.
    std::unique_lock lock(mutex_);
    if (snapshot_.containers.empty() && unrecorded_.empty())
      cv_.wait(lock, [this] { return stop_ || wake_; });
    else
      cv_.wait_for(lock, std::chrono::seconds(2), [this] { return stop_ || wake_; });
  }
}

ExpectedVoid Engine::Advance(TxnRow& row, Trigger trigger, const std::string& message) {
  auto next = Next(row.phase, trigger);
  if (!next)
    return Fail("illegal_transition", "no transition from " + std::string(PhaseName(row.phase)));
  return journal_->SetPhase(row, *next, message, PhaseDurability(row.phase, *next));
}

store::Durability Engine::PhaseDurability(Phase from, Phase to) {
  // QUEUED, FETCHING and STAGED take their turn again after a restart; SWITCHING and TESTING
  // roll back. The next durable commit (SWITCHING, a final phase, a progress event) carries a
  // deferred one to the disk: two of an update's five phase commits stay fsync'd.
  bool same_restart = !IsFinal(to) && StepFor(from, true) == StepFor(to, true);
  return same_restart ? store::Durability::kDeferred : store::Durability::kDurable;
}

void Engine::Finish(TxnRow& row, Trigger trigger, const std::string& msg) {
  auto phase = Next(row.phase, trigger).value_or(trigger == Trigger::kRolledBack ? Phase::kRolledBack
                                                 : trigger == Trigger::kCancel  ? Phase::kCancelled
                                                                                : Phase::kWontgo);
  if (auto r = journal_->SetPhase(row, phase, msg); !r) {
    log::Error(kLog, r.error().String());
    unrecorded_[row.id] = {phase, msg};
  }
  UnpinUncommitted(row.rev, phase);
  // From phase, not row.phase: a final phase the journal could not write is reported all the same.
  auto report = FinalReportOf(phase);
  Report(row, std::string(report.status), report.progress, msg);
  auto cur = journal_->Current();  // read before taking mutex_: never the two at once
  if (cur && *cur) {
    std::lock_guard lock(mutex_);
    snapshot_.rev = (*cur)->rev;
    snapshot_.seq = (*cur)->seq;
  }
  reporter_.StateChanged();
}

// A revision that never committed keeps no blocks from collection (unless it is kept).
void Engine::UnpinUncommitted(const std::string& rev, Phase phase) {
  if (phase != Phase::kWontgo && phase != Phase::kCancelled && phase != Phase::kRolledBack) return;
  auto cur = journal_->Current();
  auto prev = journal_->Previous();
  bool kept = (cur && *cur && (*cur)->rev == rev) || (prev && *prev && (*prev)->rev == rev);
  if (!kept) (void)cache_.Unpin(rev);
}

void Engine::RecordUnrecorded(std::vector<TxnRow>& open) {
  std::erase_if(open, [this](TxnRow& row) {
    auto it = unrecorded_.find(row.id);
    if (it == unrecorded_.end()) return false;
    auto [phase, msg] = it->second;
    if (journal_->SetPhase(row, phase, msg)) {
      log::Info(kLog, "recorded the final phase of " + row.cmd_id + " at last");
      // Finish() reported it already (unpersisted, when the outbox could not take it).
      (void)journal_->MarkReported(row.cmd_id);
      UnpinUncommitted(row.rev, phase);
      unrecorded_.erase(it);
    }
    return true;
  });
}

Engine::Step Engine::StepFor(Phase phase, bool entry) {
  struct Row {
    Phase phase;
    Step entry;  // the row was picked up in this phase: a fresh update, or a restart left it here
    Step next;   // the previous step of this execution wrote this phase
  };
  // Picked up before switching, an update takes its turn again (a FETCHING or STAGED row re-checks
  // freshness and its blocks); picked up after switching began, it rolls back.
  static constexpr std::array kSteps = {
      Row{Phase::kQueued, &Engine::StepAdmitTurn, nullptr},
      Row{Phase::kFetching, &Engine::StepAdmitTurn, &Engine::StepFetch},
      Row{Phase::kStaged, &Engine::StepAdmitTurn, &Engine::StepStage},
      Row{Phase::kSwitching, &Engine::StepRestarted, &Engine::StepSwitchAndTest},
      Row{Phase::kTesting, &Engine::StepRestarted, &Engine::StepCommit},
      Row{Phase::kRollingBack, &Engine::StepRestarted, nullptr},
  };
  for (const auto& r : kSteps)
    if (r.phase == phase) return entry ? r.entry : r.next;
  return nullptr;
}

void Engine::Execute(TxnRow row) {
  {
    std::lock_guard lock(mutex_);
    running_id_ = row.id;
    running_rev_ = row.rev;
    running_switching_ = TouchesRunning(row.phase);
    cancel_ = false;
  }
  // However this execution ends, the runner holds no transaction afterwards.
  struct Done {
    Engine& engine;
    ~Done() {
      std::lock_guard lock(engine.mutex_);
      engine.running_id_ = 0;
      engine.running_rev_.clear();
      engine.running_switching_ = false;
    }
  } done{*this};

  // Each step writes the phase it leads to before that phase's side effect: what a restart
  // finds in the journal is what it resumes (or rolls back) from.
  Run run{std::move(row)};
  StepResult result = StepResolve(run);
  for (bool entry = true; result.kind == StepResult::kNext && !IsFinal(run.row.phase); entry = false) {
    Step step = StepFor(run.row.phase, entry);
    if (!step) {  // no step leads to QUEUED or ROLLING_BACK: never happens; the next pick-up resumes
      result = {StepResult::kSuspend, "no step after " + std::string(PhaseName(run.row.phase))};
      break;
    }
    result = (this->*step)(run);
  }
  End(run, result);
}

void Engine::End(Run& run, const StepResult& result) {
  TxnRow& row = run.row;
  switch (result.kind) {
    case StepResult::kNext:  // COMMITTED: StepCommit reported it
      return;
    case StepResult::kSuspend:
      if (!result.message.empty()) log::Info(kLog, result.message);
      return;
    case StepResult::kRefused:
      return Finish(row, Trigger::kRefused, result.message);
    case StepResult::kCancelled:
      return Finish(row, Trigger::kCancel, result.message);
    case StepResult::kFailed:
      // A row recovered in ROLLING_BACK is already there: its rollback is retried.
      if (row.phase != Phase::kRollingBack) (void)Advance(row, Trigger::kFailed, result.message);
      return RollBack(row, run.plan, result.message);
  }
}

// A rollback learns its target at its turn; every transaction's document is parsed here.
Engine::StepResult Engine::StepResolve(Run& run) {
  TxnRow& row = run.row;
  if (row.kind == "rollback" && row.document.empty()) {
    auto prev = journal_->Previous();
    if (!prev || !*prev) return {StepResult::kRefused, "no previous revision to roll back to"};
    row.rev = (*prev)->rev;
    row.seq = (*prev)->seq;
    row.document = (*prev)->document;
    (void)journal_->SetRevision(row);
  }
  auto next = ParseDocState(row.document, options_.reject_bsp, &run.revision);
  if (!next) return StepResult::Refused(next.error());
  run.plan.next = std::move(*next);
  return {};
}

// QUEUED, or FETCHING/STAGED resumed after a restart → FETCHING.
Engine::StepResult Engine::StepAdmitTurn(Run& run) {
  // This update's turn: what admission checked may no longer hold.
  if (auto r = CheckFresh(run.row, run.revision); !r) return StepResult::Refused(r.error());
  if (auto r = Advance(run.row, Trigger::kStart); !r) return StepResult::Refused(r.error());
  return {};
}

// FETCHING → STAGED.
Engine::StepResult Engine::StepFetch(Run& run) {
  TxnRow& row = run.row;
  if (auto r = Fetch(row, run.revision); !r) {
    if (r.error().code == "cancelled" && Stopping()) {
      // The agent is stopping: the row stays FETCHING and the next start resumes it.
      return {StepResult::kSuspend,
              "download of " + row.rev + " interrupted by the agent's stop; it resumes at the next start"};
    }
    if (r.error().code == "cancelled") {
      std::lock_guard lock(mutex_);
      return {StepResult::kCancelled, cancel_reason_};
    }
    return StepResult::Refused(r.error());
  }
  if (auto r = Advance(row, Trigger::kFetched); !r) return StepResult::Refused(r.error());
  return {};
}

// STAGED → SWITCHING: the last step that may still refuse or be cancelled.
Engine::StepResult Engine::StepStage(Run& run) {
  TxnRow& row = run.row;
  if (auto r = Stage(run.plan.next); !r) return StepResult::Refused(r.error());
  // Last check before anything running is touched (the download may have taken long).
  if (auto r = CheckFresh(row, run.revision); !r) return StepResult::Refused(r.error());
  if (Stopping()) return {StepResult::kSuspend, ""};  // STAGED resumes at the next start
  Report(row, "INPROGRESS", 0, "staged");
  std::string cancelled_because;
  {
    std::lock_guard lock(mutex_);
    if (cancel_) cancelled_because = cancel_reason_;
    else running_switching_ = true;  // from here on, cancel is refused
  }
  if (!cancelled_because.empty()) return {StepResult::kCancelled, cancelled_because};
  BuildPlan(run);
  (void)journal_->SetFromRev(row, run.plan.from_rev);
  if (auto r = Advance(row, Trigger::kStaged); !r) return StepResult::Refused(r.error());
  return {};
}

// SWITCHING → TESTING, through the commit window.
Engine::StepResult Engine::StepSwitchAndTest(Run& run) {
  Report(run.row, "INPROGRESS", 10, "switching " + std::to_string(run.plan.changed.size()) + " container(s)");
  if (auto r = SwitchAndTest(run.row, run.plan); !r) return {StepResult::kFailed, r.error().String()};
  return {};
}

// TESTING → COMMITTED.
Engine::StepResult Engine::StepCommit(Run& run) {
  TxnRow& row = run.row;
  auto previous_before = journal_->Previous();
  row.message = "committed";
  if (auto r = journal_->Commit(row, row.kind == "update"); !r)
    return {StepResult::kFailed, r.error().WithContext("commit").String()};
  if (previous_before && *previous_before && (*previous_before)->rev != row.rev &&
      (*previous_before)->rev != run.plan.from_rev)
    (void)cache_.Unpin((*previous_before)->rev);
  {
    std::lock_guard lock(mutex_);
    snapshot_.rev = row.rev;
    snapshot_.seq = row.seq;
    restarts_.clear();
  }
  ReleaseUnused();
  reporter_.Committed(run.plan.next, row.rev);
  auto final_status = FinalStatusOf(row);
  Report(row, final_status.status, final_status.progress, final_status.msg);
  Monitor();
  reporter_.StateChanged();
  return {};
}

// SWITCHING, TESTING or ROLLING_BACK when picked up: only recovery after a restart gets here.
Engine::StepResult Engine::StepRestarted(Run& run) {
  BuildPlan(run);
  // Recovered after a restart mid-switch: power lost before commit is a failed update.
  return {StepResult::kFailed, "agent restarted during " + std::string(PhaseName(run.row.phase))};
}

// The plan against the committed revision.
void Engine::BuildPlan(Run& run) {
  Plan& plan = run.plan;
  auto cur = journal_->Current();
  if (cur && *cur) {
    plan.from_rev = (*cur)->rev;
    auto cs = ParseDocState((*cur)->document, false);
    if (cs) plan.current = std::move(*cs);
  }
  std::set<std::string> next_names;
  for (const auto& c : plan.next.containers) next_names.insert(c.name);
  if (plan.current) {
    for (const auto& c : plan.current->containers) {
      plan.old_instance[c.name] = InstanceOf(c);
      if (!next_names.count(c.name)) plan.removed.push_back(InstanceOf(c));
    }
  }
  for (const auto& c : plan.next.containers) {
    auto it = plan.old_instance.find(c.name);
    if (it == plan.old_instance.end() || it->second != InstanceOf(c)) plan.changed.push_back(&c);
  }
}

ExpectedVoid Engine::Fetch(TxnRow& row, const manifest::Revision& rev) {
  std::vector<cache::BlockRef> blocks;
  std::vector<std::string> ids;
  // Only what Gantry acts on is fetched; ignored keys' blocks (bsp/*) stay on the server.
  for (const auto& id : rev.state.ReferencedBlocks()) {
    auto it = rev.objects.find(id);
    blocks.push_back({id, it == rev.objects.end() ? 0 : it->second});
    ids.push_back(id);
  }
  if (auto r = cache_.Pin(row.rev, ids); !r) return r;
  if (auto r = cache_.CheckSpace(blocks); !r) return r;
  cache::FetchRequest req;
  req.blocks = blocks;
  req.objects_base = !row.objects_base.empty() ? row.objects_base : rev.objects_base.value_or("");
  req.parallel = options_.parallel_downloads;
  req.ca_file = options_.ca_file;
  req.cancel = &cancel_;
  auto last = std::make_shared<int>(-1);
  TxnRow copy = row;
  req.on_progress = [this, copy, last](const cache::Progress& p) {
    int pct = p.total_bytes ? static_cast<int>(p.done_bytes * 100 / p.total_bytes) : 100;
    if (pct == *last) return;
    *last = pct;
    Report(copy, "DOWNLOADING", pct, "downloading",
           {{"total_bytes", p.total_bytes}, {"done_bytes", p.done_bytes}, {"objects", p.objects},
            {"objects_done", p.objects_done}, {"fetched_bytes", p.fetched_bytes},
            {"reused_bytes", p.reused_bytes}});
  };
  std::uint64_t total = 0;
  for (auto& b : blocks) total = AddSat(total, b.size);
  Report(row, "DOWNLOADING", 0, "downloading",
         {{"total_bytes", total}, {"done_bytes", 0}, {"objects", blocks.size()}, {"objects_done", 0}});
  if (req.objects_base.empty() && std::any_of(blocks.begin(), blocks.end(), [&](auto& b) { return !cache_.Has(b.id); }))
    return Fail("no_source", "no objects_base given and blocks are missing from the cache");
  return cache_.Fetch(req);
}

ExpectedVoid Engine::Stage(const manifest::State& next) {
  for (const auto& c : next.containers) {
    auto spec = SpecFor(c);
    // The reader refuses any byte liblxc could read differently, invalid UTF-8 included, so
    // the config that travels to the runtime plugin as JSON text is UTF-8.
    if (auto r = manifest::CheckLxcConfig(spec.lxc_config, options_.allow_lxc_keys); !r)
      return Unexpected(r.error().WithContext("container " + c.name + " (" + c.config_key + ")"));
    if (auto r = runtime_.Prepare(spec); !r)
      return Unexpected(r.error().WithContext("preparing " + c.name));
  }
  return {};
}

ExpectedVoid Engine::ReachGoal(const manifest::Container& c, const std::string& instance,
                               int timeout_s) {
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (true) {
    if (Stopping()) return Fail("stopping", "agent stopping while " + c.name + " was starting");
    auto st = runtime_.GetStatus(instance);
    if (!st) return Unexpected(st.error());
    if (st->state == runtime::State::kRunning) {
      if (c.status_goal != "READY" || !c.health) return {};
      auto code = runtime_.Exec(instance, c.health->argv, std::max(1, c.health->timeout_s));
      if (code && *code == 0) return {};
    } else if (st->state != runtime::State::kStarting) {
      return Fail("container_exited", "container " + c.name + " is " +
                                          runtime::StateName(st->state) + " before reaching " +
                                          c.status_goal);
    }
    if (Clock::now() >= deadline)
      return Fail("goal_timeout", "container " + c.name + " did not reach " + c.status_goal +
                                      " within " + std::to_string(timeout_s) + " s");
    std::this_thread::sleep_for(c.status_goal == "READY" && c.health
                                    ? std::chrono::milliseconds(std::max(100, c.health->interval_s * 1000))
                                    : options_.poll);
  }
}

ExpectedVoid Engine::SwitchAndTest(TxnRow& row, const Plan& plan) {
  std::set<const manifest::Container*> changed(plan.changed.begin(), plan.changed.end());
  for (const auto& group : plan.next.groups) {
    for (const auto& c : plan.next.containers) {
      if (c.group != group.name || !changed.count(&c)) continue;
      std::string inst = InstanceOf(c);
      auto old = plan.old_instance.find(c.name);
      bool has_old = old != plan.old_instance.end();
      if (c.status_goal == "MOUNTED") {
        if (has_old) (void)runtime_.Stop(old->second, options_.stop_timeout_s);
        continue;
      }
      if (c.update_strategy == "start-first") {
        if (auto r = runtime_.Start(inst); !r) return Unexpected(r.error().WithContext("starting " + c.name));
        if (auto r = ReachGoal(c, inst, group.timeout_s); !r) return r;
        if (has_old)
          if (auto r = runtime_.Stop(old->second, options_.stop_timeout_s); !r) return r;
      } else {
        if (has_old)
          if (auto r = runtime_.Stop(old->second, options_.stop_timeout_s); !r) return r;
        if (auto r = runtime_.Start(inst); !r) return Unexpected(r.error().WithContext("starting " + c.name));
        if (auto r = ReachGoal(c, inst, group.timeout_s); !r) return r;
      }
      log::Info(kLog, "switched " + c.name + " to " + inst);
    }
  }
  for (const auto& inst : plan.removed) (void)runtime_.Stop(inst, options_.stop_timeout_s);

  if (auto r = Advance(row, Trigger::kSwitched); !r) return r;
  Report(row, "TESTING", 0, "commit window " + std::to_string(options_.commit_window_s) + " s");
  auto start = Clock::now();
  auto window = std::chrono::seconds(options_.commit_window_s);
  while (true) {
    for (const auto& c : plan.next.containers) {
      if (c.status_goal == "MOUNTED") continue;
      auto st = runtime_.GetStatus(InstanceOf(c));
      if (!st) return Unexpected(st.error());
      if (st->state != runtime::State::kRunning)
        return Fail("container_exited", "container " + c.name + " " + runtime::StateName(st->state) +
                                            " during TESTING");
    }
    if (Clock::now() - start >= window) return {};
    {
      std::unique_lock lock(mutex_);
      if (stop_) return Fail("stopping", "agent stopping during TESTING");
    }
    std::this_thread::sleep_for(options_.poll);
  }
}

void Engine::RollBack(TxnRow& row, const Plan& plan, const std::string& why) {
  Report(row, "INPROGRESS", 0, "rolling back: " + why);
  std::set<std::string> keep;
  for (const auto& [name, inst] : plan.old_instance) keep.insert(inst);
  for (auto it = plan.changed.rbegin(); it != plan.changed.rend(); ++it) {
    auto inst = InstanceOf(**it);
    if (!keep.count(inst)) (void)runtime_.Stop(inst, options_.stop_timeout_s);
  }
  std::string failures;
  if (plan.current) {
    for (const auto& group : plan.current->groups) {
      for (const auto& c : plan.current->containers) {
        if (c.group != group.name || c.status_goal == "MOUNTED") continue;
        auto inst = InstanceOf(c);
        if (auto r = runtime_.Prepare(SpecFor(c)); !r) failures += " " + r.error().String();
        if (auto r = runtime_.Start(inst); !r) failures += " " + r.error().String();
      }
    }
  }
  std::string target = plan.from_rev.empty() ? "no revision (nothing committed)" : plan.from_rev;
  std::string msg = why + "; rolled back to " + target;
  if (!failures.empty()) msg += "; rollback problems:" + failures;
  // The failed revision's instances go before the final status: ERROR means it is all over.
  ReleaseUnused();
  Finish(row, Trigger::kRolledBack, msg);
  Monitor();
}

void Engine::Recover() {
  auto open = journal_->OpenTransactions();
  if (!open) {
    log::Error(kLog, "recovery: " + open.error().String());
    return;
  }
  for (auto& row : *open) {
    if (TouchesRunning(row.phase)) {
      log::Warn(kLog, "recovery: transaction " + std::to_string(row.id) + " was " +
                          std::string(PhaseName(row.phase)) + "; rolling back");
      Execute(row);
    }
  }
  EnsureCurrentRunning();
}

void Engine::EnsureCurrentRunning() {
  auto cur = journal_->Current();
  if (!cur || !*cur) return;
  auto state = ParseDocState((*cur)->document, false);
  if (!state) {
    log::Error(kLog, "committed revision does not parse: " + state.error().String());
    return;
  }
  for (const auto& c : state->containers) {
    auto inst = InstanceOf(c);
    auto st = runtime_.GetStatus(inst);
    if (st && st->state == runtime::State::kRunning) continue;  // adopted as it is
    if (auto r = runtime_.Prepare(SpecFor(c)); !r) {
      log::Error(kLog, "preparing " + c.name + ": " + r.error().String());
      continue;
    }
    if (c.status_goal == "MOUNTED") continue;
    if (auto r = runtime_.Start(inst); !r) log::Error(kLog, "starting " + c.name + ": " + r.error().String());
  }
  Monitor();
}

void Engine::Monitor() {
  auto cur = journal_->Current();
  std::vector<ContainerView> views;
  if (cur && *cur) {
    auto state = ParseDocState((*cur)->document, false);
    if (state) {
      for (const auto& c : state->containers) {
        auto inst = InstanceOf(c);
        auto st = runtime_.GetStatus(inst);
        std::string s = st ? runtime::StateName(st->state) : "FAILED";
        if (st && st->state != runtime::State::kRunning && c.status_goal != "MOUNTED" &&
            c.restart_policy == "container") {
          if (runtime_.Start(inst)) {
            std::lock_guard lock(mutex_);
            ++restarts_[c.name];
            s = "RUNNING";
          }
        }
        int restarts;
        {
          std::lock_guard lock(mutex_);
          restarts = restarts_[c.name];
        }
        views.push_back({c.name, c.group, s, (*cur)->rev, restarts});
      }
    }
  }
  bool changed;
  {
    std::lock_guard lock(mutex_);
    changed = views.size() != snapshot_.containers.size();
    for (size_t i = 0; !changed && i < views.size(); ++i)
      changed = views[i].state != snapshot_.containers[i].state ||
                views[i].restarts != snapshot_.containers[i].restarts;
    snapshot_.containers = std::move(views);
  }
  if (changed) reporter_.StateChanged();
}

void Engine::ReleaseUnused() {
  std::set<std::string> keep;
  for (auto rev : {journal_->Current(), journal_->Previous()}) {
    if (!rev || !*rev) continue;
    auto state = ParseDocState((*rev)->document, false);
    if (!state) continue;
    for (const auto& c : state->containers) keep.insert(InstanceOf(c));
  }
  auto all = runtime_.List();
  if (!all) return;
  for (const auto& inst : *all) {
    if (keep.count(inst)) continue;
    if (auto r = runtime_.Release(inst); !r) log::Warn(kLog, "releasing " + inst + ": " + r.error().String());
  }
}

}  // namespace gantry::txn
