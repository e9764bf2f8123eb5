#pragma once
// A sensor job's state (docs/relay.md) and the moves allowed between states. The names are
// what the store keeps and what P/state and P/progress show.
#include <optional>
#include <string_view>

namespace gantry::relay {

enum class JobState {
  kWaiting,        // held back by relay.max_concurrent (P/state only)
  kOffered,        // S/offer published, no byte asked for yet
  kDownloading,    // the sensor reported state 1
  kDownloaded,     // the sensor verified the image (state 2)
  kUpdating,       // the update command was sent
  kSucceeded,      // the sensor runs the image
  kFailed,         // the sensor failed, reverted or went silent (relay.job_timeout_s)
  kNotApplicable,  // nothing to offer this sensor (model, seq, slot, targets)
  kCancelled,      // superseded by a later revision (P/state only)
};

std::string_view JobStateName(JobState s);
std::optional<JobState> JobStateFromName(std::string_view name);

// Holds a slot of relay.max_concurrent.
bool IsActive(JobState s);
bool IsFinal(JobState s);
// Whether a job may move from one state to another. A settled job (final) may be reopened
// (WAITING) or re-judged (NOT_APPLICABLE) when the sensor or the revision changes.
bool CanMove(JobState from, JobState to);

}  // namespace gantry::relay
