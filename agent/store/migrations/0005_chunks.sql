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
