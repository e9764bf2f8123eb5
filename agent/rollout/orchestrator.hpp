#pragma once
// The fleet rollout orchestrator (docs/rollouts.md): waves of per-device update commands,
// soak, abort condition, time-outs and retries, all kept in the rollout database so that a
// killed orchestrator started again continues where it stopped. Device ids in commands are
// <name>.<device>.<attempt>: re-sent after a restart, the agent answers them from its stored
// reply and never installs twice.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "rollout/outcome.hpp"

namespace gantry::rollout {

struct Plan {
  std::string name;
  std::string envelope;  // the signed revision (gantryctl sign), sent verbatim
  std::optional<std::string> group;  // --group, or
  std::vector<std::string> devices;  // --devices
  std::vector<double> waves = {1, 10, 50, 100};  // cumulative percentages
  int soak_s = 30;
  double abort_failed_pct = 5;
  int min_executed = 20;
  int timeout_s = 600;
  int retries = 2;
  int max_inflight = 200;
  std::string on_abort = "pause";
  std::vector<std::string> brokers = {"tcp://127.0.0.1:1883"};
  std::string root = "gantry";
};

// Records a new rollout, or checks that an existing one of that name has the same revision
// (starting it again continues it). Errors: "bad_input", "conflict", "db".
ExpectedVoid CreateRollout(const std::filesystem::path& db, const Plan& plan);

// Runs the rollout until it is DONE, PAUSED or ABORTED and nothing it sent is still in
// flight, or until *stop. Errors: "busy" (another orchestrator runs it), "not_found", "db".
Expected<RolloutState> Run(const std::filesystem::path& db, const std::string& name,
                           const std::atomic<bool>& stop);

// The summary published on <root>/rollouts/<name>/status (schemas/rollout-status.schema.json).
Expected<nlohmann::json> Summary(const std::filesystem::path& db, const std::string& name);

}  // namespace gantry::rollout
