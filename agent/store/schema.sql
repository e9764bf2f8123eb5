-- Verified blocks in objects/. A row exists only once the file is renamed into place.
-- added_at and last_used are Unix milliseconds; last_used orders eviction (LRU).
CREATE TABLE blocks (
  id TEXT PRIMARY KEY NOT NULL,
  size INTEGER NOT NULL,
  added_at INTEGER NOT NULL,
  last_used INTEGER NOT NULL
);
CREATE INDEX blocks_lru ON blocks(last_used);
-- A pinned block is never collected: the current, the in-flight and the rollback revision.
CREATE TABLE pins (
  rev TEXT NOT NULL,
  block_id TEXT NOT NULL,
  PRIMARY KEY (rev, block_id)
);
CREATE INDEX pins_block ON pins(block_id);

-- Every handled command id with the exact reply sent: a repeated id gets it back, byte for byte.
CREATE TABLE commands (
  id TEXT PRIMARY KEY NOT NULL,
  op TEXT NOT NULL,
  reply TEXT NOT NULL,
  received_at INTEGER NOT NULL
);
-- Messages for the broker, in order; a row is deleted only once the broker acknowledged it.
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL
);
-- The update/rollback transactions. At most one is open (final = 0) at a time; queued
-- updates wait in state QUEUED. The state is written before its side effect.
CREATE TABLE transactions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cmd_id TEXT NOT NULL,
  kind TEXT NOT NULL,            -- update | rollback
  rev TEXT,
  seq INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  document TEXT,                 -- the verified revision document (JSON)
  objects_base TEXT,
  from_rev TEXT,                 -- the committed revision when the transaction began
  store_count INTEGER NOT NULL DEFAULT 0,
  message TEXT,
  final INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX transactions_open ON transactions(final, id);
-- Revisions kept on the device: the current one and the rollback target.
CREATE TABLE revisions (
  rev TEXT PRIMARY KEY NOT NULL,
  seq INTEGER NOT NULL,
  document TEXT NOT NULL,
  committed_at INTEGER NOT NULL
);
-- Small named values: current_rev, previous_rev, high_seq.
CREATE TABLE meta (
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
);
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
-- Transactions that reached a final state whose final progress event is not yet in the
-- outbox. The engine adds a row in the same SQLite transaction as the final phase; the
-- dispatcher removes it in the same SQLite transaction as it enqueues the event; a starting
-- agent re-emits what is left, so a crash between the two cannot lose a final status.
CREATE TABLE unreported_finals (
  txn_id INTEGER PRIMARY KEY NOT NULL
);
-- Chunked blocks (docs/chunked-blocks.md): where each content-defined chunk of a cached
-- block lies, so a new block can be assembled from chunks already on the device. Rows go
-- with their block (ON DELETE CASCADE): eviction and Reconcile need no extra step.
CREATE TABLE chunks (
  block_id TEXT NOT NULL REFERENCES blocks(id) ON DELETE CASCADE,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  sha TEXT NOT NULL,
  PRIMARY KEY (block_id, offset)
);
CREATE INDEX chunks_sha ON chunks(sha);
-- Blocks whose chunks are recorded (a block of 0 bytes has none), with what its assembly
-- fetched and reused (both 0 for a block fetched whole or adopted and chunked locally).
CREATE TABLE chunked_blocks (
  block_id TEXT PRIMARY KEY NOT NULL REFERENCES blocks(id) ON DELETE CASCADE,
  fetched_bytes INTEGER NOT NULL DEFAULT 0,
  reused_bytes INTEGER NOT NULL DEFAULT 0
);
-- Each final transaction's final progress event exactly as it was published: a repeated
-- command id publishes it again byte for byte (docs/protocol.md), after the outbox row is gone.
CREATE TABLE final_events (
  txn_id INTEGER PRIMARY KEY NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
  payload TEXT NOT NULL
);
