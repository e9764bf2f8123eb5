#pragma once
// The update transaction's states and its one transition table (docs/architecture.md).
#include <optional>
#include <string_view>

namespace gantry::txn {

enum class Phase {
  kQueued,
  kFetching,
  kStaged,
  kSwitching,
  kTesting,
  kCommitted,    // final: DONE
  kWontgo,       // final: refused before any running container was touched
  kRollingBack,
  kRolledBack,   // final: ERROR
  kCancelled,    // final
};

enum class Trigger {
  kStart,      // the runner takes the transaction
  kFetched,    // every block verified in the cache
  kStaged,     // mounts and configs ready; switching may begin
  kSwitched,   // changed containers started and reached their goals
  kTested,     // commit window passed
  kRefused,    // trust, space, fetch or staging failure: nothing running touched
  kFailed,     // failure after switching began
  kRolledBack,
  kCancel,
};

std::string_view PhaseName(Phase p);  // "QUEUED", "FETCHING", ... as stored in SQLite
std::optional<Phase> PhaseFromName(std::string_view name);
bool IsFinal(Phase p);
// Running containers may have been touched: a restart in these phases rolls back.
bool TouchesRunning(Phase p);
// The one table: the next phase, or nullopt when the trigger is not allowed in that phase.
std::optional<Phase> Next(Phase from, Trigger trigger);

// What a transaction that ended in a final phase reports: COMMITTED is DONE 100, ROLLED_BACK
// ERROR 100, CANCELLED CANCELLED 0, WONTGO (and anything else) WONTGO 0. The one phase→status
// mapping: the engine reports through it and the journal rebuilds unreported finals with it.
struct FinalReport {
  std::string_view status;
  int progress = 0;
};
FinalReport FinalReportOf(Phase final_phase);

}  // namespace gantry::txn
