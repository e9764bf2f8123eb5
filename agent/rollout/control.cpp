#include "rollout/control.hpp"

#include <string>

#include "core/time.hpp"
#include "rollout/outcome.hpp"
#include "rollout/rollout_db.hpp"

namespace gantry::rollout {
namespace {

RolloutEvent EventFor(RolloutAction a) {
  switch (a) {
    case RolloutAction::kPause: return RolloutEvent::kPause;
    case RolloutAction::kResume: return RolloutEvent::kResume;
    case RolloutAction::kAbort: return RolloutEvent::kAbort;
    case RolloutAction::kRetryFailed: return RolloutEvent::kRetryFailed;
  }
  return RolloutEvent::kPause;
}

std::string_view ActionName(RolloutAction a) {
  switch (a) {
    case RolloutAction::kPause: return "pause";
    case RolloutAction::kResume: return "resume";
    case RolloutAction::kAbort: return "abort";
    case RolloutAction::kRetryFailed: return "retry-failed";
  }
  return "?";
}

}  // namespace

tl::expected<void, gantry::Error> RequestAction(const std::filesystem::path& path,
                                               std::string_view name, RolloutAction action) {
  auto db = OpenRolloutDb(path);
  if (!db) return Unexpected(db.error());
  return db->InTransaction([&]() -> ExpectedVoid {
    auto st = db->Prepare("SELECT state FROM rollouts WHERE name = ?");
    if (!st) return Unexpected(st.error());
    st->Bind(1, name);
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) return Fail("not_found", "no rollout named '" + std::string(name) + "' in " + path.string());
    auto from = RolloutStateFromName(st->Text(0));
    if (!from) return Fail("bad_db", "rollout '" + std::string(name) + "' has an unknown state " + st->Text(0));
    auto to = Next(*from, EventFor(action));
    if (!to)
      return Fail("bad_state", "cannot " + std::string(ActionName(action)) + " rollout '" + std::string(name) +
                                   "': it is " + std::string(Name(*from)));
    if (action == RolloutAction::kRetryFailed) {
      // Failed and timed-out devices go again with the next attempt id; the orchestrator asks
      // each for its state first, so one that installed meanwhile is counted, not re-sent.
      auto r = db->Run(
          "UPDATE devices SET status = 'PENDING', attempt = attempt + 1, sent_at = NULL, retry_at = NULL, "
          "reason = '', ts = ? WHERE rollout = ? AND status IN ('FAILED', 'TIMED_OUT')",
          NowRfc3339(), name);
      if (!r) return r;
    }
    if (action == RolloutAction::kResume || action == RolloutAction::kRetryFailed) {
      // The abort condition judges what becomes final after the operator's decision.
      auto r = db->Run(
          "UPDATE rollouts SET baseline_final = (SELECT count(*) FROM devices WHERE rollout = ?1 AND status IN "
          "('SUCCEEDED','FAILED','TIMED_OUT')), baseline_bad = (SELECT count(*) FROM devices WHERE rollout = ?1 "
          "AND status IN ('FAILED','TIMED_OUT')) WHERE name = ?1",
          name);
      if (!r) return r;
    }
    int pending = action == RolloutAction::kAbort && *from != RolloutState::kAborted ? 1 : 0;
    return db->Run("UPDATE rollouts SET state = ?, abort_pending = max(abort_pending, ?) WHERE name = ?",
                   Name(*to), pending, name);
  });
}

}  // namespace gantry::rollout
