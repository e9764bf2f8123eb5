#include "relay/job_state.hpp"

#include <array>

namespace gantry::relay {
namespace {

struct Move {
  JobState from, to;
};

using S = JobState;
constexpr std::array kMoves = {
    Move{S::kWaiting, S::kOffered},
    Move{S::kWaiting, S::kCancelled},
    Move{S::kOffered, S::kOffered},  // offered again after a restart
    Move{S::kOffered, S::kDownloading},
    Move{S::kOffered, S::kDownloaded},
    Move{S::kOffered, S::kFailed},
    Move{S::kOffered, S::kCancelled},
    Move{S::kDownloading, S::kDownloading},
    Move{S::kDownloading, S::kDownloaded},
    Move{S::kDownloading, S::kFailed},
    Move{S::kDownloading, S::kCancelled},
    Move{S::kDownloaded, S::kUpdating},
    Move{S::kDownloaded, S::kSucceeded},
    Move{S::kDownloaded, S::kFailed},
    Move{S::kDownloaded, S::kCancelled},
    Move{S::kUpdating, S::kSucceeded},
    Move{S::kUpdating, S::kFailed},
};

constexpr std::array<std::string_view, 9> kNames = {
    "WAITING",   "OFFERED", "DOWNLOADING",    "DOWNLOADED", "UPDATING",
    "SUCCEEDED", "FAILED",  "NOT_APPLICABLE", "CANCELLED"};

}  // namespace

std::string_view JobStateName(JobState s) { return kNames[static_cast<std::size_t>(s)]; }

std::optional<JobState> JobStateFromName(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i)
    if (kNames[i] == name) return static_cast<JobState>(i);
  return std::nullopt;
}

bool IsActive(JobState s) {
  return s == S::kOffered || s == S::kDownloading || s == S::kDownloaded || s == S::kUpdating;
}

bool IsFinal(JobState s) {
  return s == S::kSucceeded || s == S::kFailed || s == S::kNotApplicable || s == S::kCancelled;
}

bool CanMove(JobState from, JobState to) {
  if (IsFinal(from)) return to == S::kWaiting || to == S::kNotApplicable;
  for (const auto& m : kMoves)
    if (m.from == from && m.to == to) return true;
  return false;
}

}  // namespace gantry::relay
