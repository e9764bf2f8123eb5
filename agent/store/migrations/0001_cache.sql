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
