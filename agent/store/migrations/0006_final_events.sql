-- Each final transaction's final progress event exactly as it was published: a repeated
-- command id publishes it again byte for byte (docs/protocol.md), after the outbox row is gone.
CREATE TABLE final_events (
  txn_id INTEGER PRIMARY KEY NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
  payload TEXT NOT NULL
);
