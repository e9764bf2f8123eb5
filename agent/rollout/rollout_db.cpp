#include "rollout/rollout_db.hpp"

#include <array>
#include <string_view>

namespace gantry::rollout {
namespace {

// Numbered, never edited; a new version appends a string. Version i+1 is kMigrations[i].
constexpr std::array<std::string_view, 1> kMigrations = {
    R"sql(
CREATE TABLE rollouts (
  name TEXT PRIMARY KEY,
  rev TEXT NOT NULL,
  seq INTEGER NOT NULL,
  envelope TEXT NOT NULL,          -- the signed revision, sent verbatim in every update
  target_group TEXT,               -- --group, or NULL for --devices
  waves TEXT NOT NULL,             -- JSON array of cumulative percentages
  soak_s INTEGER NOT NULL,
  abort_failed_pct REAL NOT NULL,
  min_executed INTEGER NOT NULL,
  timeout_s INTEGER NOT NULL,
  retries INTEGER NOT NULL,
  max_inflight INTEGER NOT NULL,
  on_abort TEXT NOT NULL,          -- pause | cancel | rollback
  brokers TEXT NOT NULL DEFAULT '[]', -- JSON array of broker URIs, tried in order
  root TEXT NOT NULL DEFAULT 'gantry',
  state TEXT NOT NULL,             -- RUNNING | PAUSED | ABORTED | DONE
  wave INTEGER NOT NULL DEFAULT 1, -- the wave being sent (1-based)
  wave_final_at INTEGER,           -- ms since the epoch: when the current wave became final
  abort_pending INTEGER NOT NULL DEFAULT 0, -- an abort whose on-abort action is not yet done
  baseline_final INTEGER NOT NULL DEFAULT 0, -- counts at the last resume: the abort condition
  baseline_bad INTEGER NOT NULL DEFAULT 0,   -- judges only what became final after it
  created_at TEXT NOT NULL
);
CREATE TABLE devices (
  rollout TEXT NOT NULL REFERENCES rollouts(name) ON DELETE CASCADE,
  device TEXT NOT NULL,
  wave INTEGER,                     -- NULL until the device is placed in a wave
  status TEXT NOT NULL,             -- PENDING SUCCEEDED FAILED TIMED_OUT RETRYING CANCELLED SKIPPED
  attempt INTEGER NOT NULL DEFAULT 0, -- the attempt last sent (ids <name>.<device>.<attempt>)
  sent_at INTEGER,                  -- ms: when the current attempt was sent; NULL = not sent
  retry_at INTEGER,                 -- ms: when a RETRYING device is sent again
  reason TEXT NOT NULL DEFAULT '',
  rolled_back INTEGER NOT NULL DEFAULT 0,
  ts TEXT NOT NULL,
  PRIMARY KEY (rollout, device)
);
)sql",
};

}  // namespace

Expected<store::Db> OpenRolloutDb(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  auto db = store::Db::OpenBare(path.string());
  if (!db) return Unexpected(db.error().WithContext("opening " + path.string()));
  // Killed at any point and started again: the orchestrator's state must survive a crash.
  if (auto r = db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"); !r)
    return Unexpected(r.error().WithContext("opening " + path.string()));
  int version = db->SchemaVersion();
  if (version < 0 || version > static_cast<int>(kMigrations.size()))
    return Fail("bad_db", path.string() + " is not a rollout database this gantryctl knows (schema " +
                              std::to_string(version) + ")");
  for (size_t i = static_cast<size_t>(version); i < kMigrations.size(); ++i) {
    auto r = db->InTransaction([&]() -> ExpectedVoid {
      if (auto e = db->Exec(kMigrations[i]); !e) return e;
      return db->Exec("PRAGMA user_version=" + std::to_string(i + 1));
    });
    if (!r) return Unexpected(r.error().WithContext("migrating " + path.string()));
  }
  return db;
}

}  // namespace gantry::rollout
