#include "txn/phase.hpp"

#include <array>

namespace gantry::txn {
namespace {

struct Row {
  Phase from;
  Trigger trigger;
  Phase to;
};

constexpr std::array kTable = {
    Row{Phase::kQueued, Trigger::kStart, Phase::kFetching},
    Row{Phase::kQueued, Trigger::kCancel, Phase::kCancelled},
    Row{Phase::kQueued, Trigger::kRefused, Phase::kWontgo},
    Row{Phase::kFetching, Trigger::kStart, Phase::kFetching},  // resumed after a restart
    Row{Phase::kFetching, Trigger::kFetched, Phase::kStaged},
    Row{Phase::kFetching, Trigger::kRefused, Phase::kWontgo},
    Row{Phase::kFetching, Trigger::kCancel, Phase::kCancelled},
    Row{Phase::kStaged, Trigger::kStart, Phase::kFetching},  // resumed: re-check the blocks
    Row{Phase::kStaged, Trigger::kStaged, Phase::kSwitching},
    Row{Phase::kStaged, Trigger::kRefused, Phase::kWontgo},
    Row{Phase::kStaged, Trigger::kCancel, Phase::kCancelled},
    Row{Phase::kSwitching, Trigger::kSwitched, Phase::kTesting},
    Row{Phase::kSwitching, Trigger::kFailed, Phase::kRollingBack},
    Row{Phase::kTesting, Trigger::kTested, Phase::kCommitted},
    Row{Phase::kTesting, Trigger::kFailed, Phase::kRollingBack},
    Row{Phase::kRollingBack, Trigger::kRolledBack, Phase::kRolledBack},
    Row{Phase::kRollingBack, Trigger::kFailed, Phase::kRollingBack},  // retried after a restart
};

constexpr std::array<std::string_view, 10> kNames = {
    "QUEUED", "FETCHING", "STAGED", "SWITCHING", "TESTING",
    "COMMITTED", "WONTGO", "ROLLING_BACK", "ROLLED_BACK", "CANCELLED"};

}  // namespace

std::string_view PhaseName(Phase p) { return kNames[static_cast<size_t>(p)]; }

std::optional<Phase> PhaseFromName(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i)
    if (kNames[i] == name) return static_cast<Phase>(i);
  return std::nullopt;
}

bool IsFinal(Phase p) {
  return p == Phase::kCommitted || p == Phase::kWontgo || p == Phase::kRolledBack ||
         p == Phase::kCancelled;
}

bool TouchesRunning(Phase p) {
  return p == Phase::kSwitching || p == Phase::kTesting || p == Phase::kRollingBack;
}

std::optional<Phase> Next(Phase from, Trigger trigger) {
  for (const auto& r : kTable)
    if (r.from == from && r.trigger == trigger) return r.to;
  return std::nullopt;
}

FinalReport FinalReportOf(Phase final_phase) {
  switch (final_phase) {
    case Phase::kCommitted:
      return {"DONE", 100};
    case Phase::kRolledBack:
      return {"ERROR", 100};
    case Phase::kCancelled:
      return {"CANCELLED", 0};
    default:
      return {"WONTGO", 0};
  }
}

}  // namespace gantry::txn
