-- Transactions that reached a final state whose final progress event is not yet in the
-- outbox. The engine adds a row in the same SQLite transaction as the final phase; the
-- dispatcher removes it in the same SQLite transaction as it enqueues the event; a starting
-- agent re-emits what is left, so a crash between the two cannot lose a final status.
CREATE TABLE unreported_finals (
  txn_id INTEGER PRIMARY KEY NOT NULL
);
