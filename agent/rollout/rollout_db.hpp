#pragma once
// The orchestrator's own SQLite file (gantryctl rollout --db): one schema, separate from the
// agent's, holding any number of rollouts and every device's outcome. Opened by the
// orchestrator, by `gantryctl rollout pause|resume|abort|status` and by the dashboard.
#include <filesystem>

#include "core/error.hpp"
#include "store/db.hpp"

namespace gantry::rollout {

// Opens (creating, with its directory) the rollout database and applies its migrations.
Expected<store::Db> OpenRolloutDb(const std::filesystem::path& path);

}  // namespace gantry::rollout
