#include "rollout/outcome.hpp"

#include <array>

namespace gantry::rollout {
namespace {

template <class S, class E>
struct Row {
  S from;
  E event;
  S to;
};

using R = RolloutState;
using RE = RolloutEvent;
constexpr std::array<Row<R, RE>, 14> kRolloutTable = {{
    {R::kRunning, RE::kPause, R::kPaused},
    {R::kRunning, RE::kResume, R::kRunning},
    {R::kRunning, RE::kAbort, R::kAborted},
    {R::kRunning, RE::kRetryFailed, R::kRunning},
    {R::kRunning, RE::kThresholdPause, R::kPaused},
    {R::kRunning, RE::kThresholdAbort, R::kAborted},
    {R::kRunning, RE::kAllFinal, R::kDone},
    {R::kPaused, RE::kPause, R::kPaused},
    {R::kPaused, RE::kResume, R::kRunning},
    {R::kPaused, RE::kAbort, R::kAborted},
    {R::kPaused, RE::kRetryFailed, R::kRunning},
    {R::kAborted, RE::kAbort, R::kAborted},
    {R::kDone, RE::kRetryFailed, R::kRunning},  // a device that was offline came back
    {R::kDone, RE::kResume, R::kDone},
}};

using D = DeviceStatus;
using DE = DeviceEvent;
constexpr std::array<Row<D, DE>, 16> kDeviceTable = {{
    {D::kPending, DE::kDone, D::kSucceeded},
    {D::kPending, DE::kFailed, D::kFailed},
    {D::kPending, DE::kTransient, D::kRetrying},
    {D::kPending, DE::kTimedOut, D::kTimedOut},
    {D::kPending, DE::kAlreadyOn, D::kSkipped},
    {D::kPending, DE::kCancel, D::kCancelled},
    {D::kRetrying, DE::kResend, D::kPending},
    {D::kRetrying, DE::kDone, D::kSucceeded},   // an earlier attempt finished late
    {D::kRetrying, DE::kCancel, D::kCancelled},
    {D::kRetrying, DE::kFailed, D::kFailed},
    {D::kTimedOut, DE::kDone, D::kSucceeded},   // an offline device came back and installed
    {D::kTimedOut, DE::kRetry, D::kPending},
    {D::kFailed, DE::kRetry, D::kPending},
    {D::kFailed, DE::kDone, D::kSucceeded},
    {D::kCancelled, DE::kRetry, D::kPending},
    {D::kCancelled, DE::kDone, D::kSucceeded},
}};

constexpr std::array<std::string_view, 4> kRolloutNames = {"RUNNING", "PAUSED", "ABORTED", "DONE"};
constexpr std::array<std::string_view, 7> kDeviceNames = {
    "PENDING", "SUCCEEDED", "FAILED", "TIMED_OUT", "RETRYING", "CANCELLED", "SKIPPED"};

template <class S, class E, size_t N>
std::optional<S> Lookup(const std::array<Row<S, E>, N>& table, S from, E event) {
  for (const auto& r : table)
    if (r.from == from && r.event == event) return r.to;
  return std::nullopt;
}

template <class S, size_t N>
std::optional<S> FromName(const std::array<std::string_view, N>& names, std::string_view name) {
  for (size_t i = 0; i < N; ++i)
    if (names[i] == name) return static_cast<S>(i);
  return std::nullopt;
}

}  // namespace

std::optional<RolloutState> Next(RolloutState from, RolloutEvent event) {
  return Lookup(kRolloutTable, from, event);
}
std::optional<DeviceStatus> Next(DeviceStatus from, DeviceEvent event) {
  return Lookup(kDeviceTable, from, event);
}
std::string_view Name(RolloutState s) { return kRolloutNames[static_cast<size_t>(s)]; }
std::string_view Name(DeviceStatus s) { return kDeviceNames[static_cast<size_t>(s)]; }
std::optional<RolloutState> RolloutStateFromName(std::string_view n) { return FromName<RolloutState>(kRolloutNames, n); }
std::optional<DeviceStatus> DeviceStatusFromName(std::string_view n) { return FromName<DeviceStatus>(kDeviceNames, n); }

bool IsFinal(DeviceStatus s) {
  return s == D::kSucceeded || s == D::kFailed || s == D::kTimedOut || s == D::kCancelled ||
         s == D::kSkipped;
}

}  // namespace gantry::rollout
