#pragma once
// What the transaction engine persists (tables transactions, revisions, meta). Each thread
// uses its own Journal over its own Db connection.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "store/db.hpp"
#include "txn/phase.hpp"

namespace gantry::txn {

struct TxnRow {
  std::int64_t id = 0;
  std::string cmd_id;
  std::string kind;  // update | rollback
  std::string rev;
  std::int64_t seq = 0;
  Phase phase = Phase::kQueued;
  std::string document;  // the revision document (JSON text)
  std::string objects_base;
  std::string from_rev;  // committed revision when the switch began
  int store_count = 0;
  std::string message;
};

struct RevisionRow {
  std::string rev;
  std::int64_t seq = 0;
  std::string document;
};

// The final progress event of a transaction in a final phase: what the engine reported when
// it got there (DONE, ERROR after a rollback, WONTGO, CANCELLED).
struct FinalStatus {
  std::string status;
  int progress = 0;
  std::string msg;
};
FinalStatus FinalStatusOf(const TxnRow& row);

// A transaction written more often than this is looping: the engine forces a rollback.
inline constexpr int kMaxStoreCount = 64;

class Journal {
 public:
  explicit Journal(store::Db& db) : db_(db) {}

  Expected<std::int64_t> Insert(const TxnRow& row);
  Expected<std::vector<TxnRow>> OpenTransactions();  // final = 0, oldest first
  Expected<std::optional<TxnRow>> Get(std::int64_t id);
  // Writes the phase (and message), bumping the store counter; error "loop" past the limit.
  // A final phase also records the transaction as unreported, in the same SQLite transaction.
  // kDeferred only for a phase whose loss a restart could not tell apart (Engine::Advance).
  ExpectedVoid SetPhase(TxnRow& row, Phase phase, const std::string& message = "",
                        store::Durability durability = store::Durability::kDurable);
  ExpectedVoid SetFromRev(TxnRow& row, const std::string& from_rev);
  // A rollback learns its target when its turn comes: rev, seq and document from the row.
  ExpectedVoid SetRevision(const TxnRow& row);
  // Final transactions whose final event has not reached the outbox (a crash in between),
  // oldest first; MarkReported is written with the outbox row that carries the event, and
  // keeps that event's bytes (FinalEvent) for a repeated command id, when given.
  Expected<std::vector<TxnRow>> UnreportedFinals();
  ExpectedVoid MarkReported(const std::string& cmd_id, const std::optional<std::string>& final_event = std::nullopt);
  // Drops final transactions (and their kept final events) last changed before
  // now - keep_seconds, beyond the newest keep_at_least, as the command ids they answer are
  // forgotten; never one not yet reported or one that committed a revision still kept.
  // Returns how many.
  Expected<std::int64_t> Prune(std::int64_t now_unix, std::int64_t keep_seconds, std::int64_t keep_at_least);
  // The final progress event of the command's transaction as it was published; nullopt when
  // the command started no transaction or it is not final yet.
  Expected<std::optional<std::string>> FinalEvent(const std::string& cmd_id);

  // The revision now running, the rollback target and the anti-rollback high-water mark.
  Expected<std::optional<RevisionRow>> Current();
  Expected<std::optional<RevisionRow>> Previous();
  Expected<std::int64_t> HighSeq();
  // In one SQLite transaction: row → COMMITTED, current = row's revision, previous = the
  // old current, high_seq raised (never lowered), revisions other than these two dropped.
  // With raise_high_seq (an update), error "downgrade" when row.seq is not above high_seq:
  // the committed seq only grows, whatever was checked before.
  ExpectedVoid Commit(TxnRow& row, bool raise_high_seq);

 private:
  // Transactions matching a fixed SQL condition (never caller input), oldest first.
  Expected<std::vector<TxnRow>> Rows(const std::string& where);
  Expected<std::optional<std::string>> Meta(const std::string& key);
  ExpectedVoid SetMeta(const std::string& key, const std::string& value);
  Expected<std::optional<RevisionRow>> Revision(const std::string& rev);

  store::Db& db_;
};

}  // namespace gantry::txn
