#pragma once
// Operator requests on a rollout, shared by `gantryctl rollout pause|resume|abort|retry-failed`
// and the dashboard. A request is a state change written to the rollout database; a running
// orchestrator reads its rollout's state from the database every tick (well within a second)
// and acts on it, and one started later finds it there.
#include <filesystem>
#include <string_view>

#include <tl/expected.hpp>

#include "core/error.hpp"

namespace gantry::rollout {

enum class RolloutAction { kPause, kResume, kAbort, kRetryFailed };

// Errors: "not_found" (no such rollout in db), "bad_state" (e.g. resuming an ABORTED
// rollout), "io"/"db" for the database itself.
tl::expected<void, gantry::Error> RequestAction(const std::filesystem::path& db,
                                               std::string_view name, RolloutAction action);

}  // namespace gantry::rollout
