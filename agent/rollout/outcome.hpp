#pragma once
// The rollout's and each device's states and the transitions between them, one table each
// (docs/rollouts.md describes them for operators).
#include <optional>
#include <string_view>

namespace gantry::rollout {

enum class RolloutState { kRunning, kPaused, kAborted, kDone };
enum class RolloutEvent {
  kPause,           // operator
  kResume,          // operator
  kAbort,           // operator
  kRetryFailed,     // operator: failed and timed-out devices get another attempt
  kThresholdPause,  // abort condition met, --on-abort pause
  kThresholdAbort,  // abort condition met, --on-abort cancel|rollback
  kAllFinal,        // every device of the last wave final and soaked
};

enum class DeviceStatus { kPending, kSucceeded, kFailed, kTimedOut, kRetrying, kCancelled, kSkipped };
enum class DeviceEvent {
  kDone,       // the device reported DONE for one of this rollout's ids
  kFailed,     // ERROR or WONTGO that a retry cannot fix, or retries used up
  kTransient,  // a download or space error, retries left
  kTimedOut,   // no final status within --timeout, retries used up
  kResend,     // a RETRYING device's backoff passed: the next attempt goes out
  kAlreadyOn,  // the device runs the revision already (never sent anything)
  kCancel,     // abort: a device that was never sent the command
  kRetry,      // retry-failed
};

std::optional<RolloutState> Next(RolloutState from, RolloutEvent event);
std::optional<DeviceStatus> Next(DeviceStatus from, DeviceEvent event);

std::string_view Name(RolloutState s);
std::string_view Name(DeviceStatus s);
std::optional<RolloutState> RolloutStateFromName(std::string_view name);
std::optional<DeviceStatus> DeviceStatusFromName(std::string_view name);
// SUCCEEDED, FAILED, TIMED_OUT, CANCELLED and SKIPPED: nothing more is sent unless an
// operator asks (retry-failed).
bool IsFinal(DeviceStatus s);

}  // namespace gantry::rollout
