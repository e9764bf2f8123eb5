-- Downstream sensors as their last retained hello described them (docs/protocol.md).
CREATE TABLE relay_sensors (
  id TEXT PRIMARY KEY NOT NULL,
  transport TEXT NOT NULL,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  seq INTEGER NOT NULL,
  slot INTEGER NOT NULL,
  max_chunk INTEGER NOT NULL,
  window INTEGER NOT NULL,
  state INTEGER NOT NULL,
  result INTEGER NOT NULL,
  vid TEXT,
  cid TEXT,
  last_hello INTEGER NOT NULL
);
-- One row per (sensor, image): the relay's job for that pair, reused when the image is offered
-- again after a failure. `job` is the wire id (1..65535) while the row is open (final = 0).
-- `blocked` is set once the sensor reverted the image (result 8): it is never offered again.
CREATE TABLE relay_jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job INTEGER,
  sensor TEXT NOT NULL,
  model TEXT NOT NULL,
  rev TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  version TEXT NOT NULL,
  chunk INTEGER NOT NULL,
  window INTEGER NOT NULL,
  state TEXT NOT NULL,
  offset INTEGER NOT NULL DEFAULT 0,
  result INTEGER,
  reason TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  blocked INTEGER NOT NULL DEFAULT 0,
  final INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  UNIQUE (sensor, sha256)
);
CREATE UNIQUE INDEX relay_jobs_open ON relay_jobs(job) WHERE final = 0;
