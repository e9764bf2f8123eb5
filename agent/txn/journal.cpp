#include "txn/journal.hpp"

#include "core/time.hpp"

namespace gantry::txn {
namespace {

constexpr const char* kColumns =
    "id, cmd_id, kind, coalesce(rev,''), seq, state, coalesce(document,''), "
    "coalesce(objects_base,''), coalesce(from_rev,''), store_count, coalesce(message,'')";

Expected<TxnRow> ReadRow(store::Statement& st) {
  TxnRow r;
  r.id = st.Int(0);
  r.cmd_id = st.Text(1);
  r.kind = st.Text(2);
  r.rev = st.Text(3);
  r.seq = st.Int(4);
  auto phase = PhaseFromName(st.Text(5));
  if (!phase) return Fail("db", "transaction " + std::to_string(r.id) + " has unknown state " + st.Text(5));
  r.phase = *phase;
  r.document = st.Text(6);
  r.objects_base = st.Text(7);
  r.from_rev = st.Text(8);
  r.store_count = static_cast<int>(st.Int(9));
  r.message = st.Text(10);
  return r;
}

}  // namespace

Expected<std::int64_t> Journal::Insert(const TxnRow& row) {
  auto lock = db_.Lock();  // the insert id below is this insert's
  auto now = NowUnix();
  auto r = db_.Run(
      "INSERT INTO transactions(cmd_id, kind, rev, seq, state, document, objects_base, from_rev, "
      "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      row.cmd_id, row.kind, row.rev, row.seq, std::string(PhaseName(row.phase)), row.document,
      row.objects_base, row.from_rev, now, now);
  if (!r) return Unexpected(r.error());
  return db_.LastInsertId();
}

Expected<std::vector<TxnRow>> Journal::Rows(const std::string& where) {
  auto st = db_.Prepare(std::string("SELECT ") + kColumns + " FROM transactions WHERE " + where + " ORDER BY id");
  if (!st) return Unexpected(st.error());
  std::vector<TxnRow> out;
  for (;;) {
    auto step = st->Step();
    if (!step) return Unexpected(step.error());
    if (!*step) break;
    auto row = ReadRow(*st);
    if (!row) return Unexpected(row.error());
    out.push_back(std::move(*row));
  }
  return out;
}

Expected<std::vector<TxnRow>> Journal::OpenTransactions() { return Rows("final = 0"); }

Expected<std::vector<TxnRow>> Journal::UnreportedFinals() {
  return Rows("id IN (SELECT txn_id FROM unreported_finals)");
}

ExpectedVoid Journal::MarkReported(const std::string& cmd_id, const std::optional<std::string>& final_event) {
  if (auto r = db_.Run("DELETE FROM unreported_finals WHERE txn_id IN (SELECT id FROM transactions WHERE cmd_id = ?)",
                       cmd_id);
      !r || !final_event)
    return r;
  return db_.Run(
      "INSERT OR REPLACE INTO final_events(txn_id, payload) "
      "SELECT id, ? FROM transactions WHERE cmd_id = ? AND final = 1 ORDER BY id DESC LIMIT 1",
      *final_event, cmd_id);
}

Expected<std::int64_t> Journal::Prune(std::int64_t now_unix, std::int64_t keep_seconds,
                                      std::int64_t keep_at_least) {
  auto st = db_.Prepare(
      "DELETE FROM transactions WHERE final = 1 AND updated_at < ? "
      "AND id <= (SELECT id FROM transactions ORDER BY id DESC LIMIT 1 OFFSET ?) "
      "AND id NOT IN (SELECT txn_id FROM unreported_finals) "
      "AND NOT (state = 'COMMITTED' AND rev IN (SELECT rev FROM revisions))");
  if (!st) return Unexpected(st.error());
  st->BindAll(now_unix - keep_seconds, keep_at_least);
  if (auto r = st->Run(); !r) return Unexpected(r.error());
  return db_.Changes();
}

Expected<std::optional<std::string>> Journal::FinalEvent(const std::string& cmd_id) {
  auto st = db_.Prepare(
      "SELECT f.payload FROM final_events f JOIN transactions t ON t.id = f.txn_id "
      "WHERE t.cmd_id = ? ORDER BY t.id DESC LIMIT 1");
  if (!st) return Unexpected(st.error());
  st->Bind(1, cmd_id);
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  if (!*row) return std::optional<std::string>();
  return std::optional<std::string>(st->Text(0));
}

FinalStatus FinalStatusOf(const TxnRow& row) {
  auto report = FinalReportOf(row.phase);
  // A commit's message is rebuilt; every other final phase stored the message it reported.
  std::string msg = row.phase != Phase::kCommitted ? row.message
                    : row.kind == "rollback"      ? "rolled back to " + row.rev
                                                  : "committed";
  return {std::string(report.status), report.progress, std::move(msg)};
}

Expected<std::optional<TxnRow>> Journal::Get(std::int64_t id) {
  auto st = db_.Prepare(std::string("SELECT ") + kColumns + " FROM transactions WHERE id = ?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, id);
  auto step = st->Step();
  if (!step) return Unexpected(step.error());
  if (!*step) return std::optional<TxnRow>{};
  auto row = ReadRow(*st);
  if (!row) return Unexpected(row.error());
  return std::optional<TxnRow>(std::move(*row));
}

ExpectedVoid Journal::SetPhase(TxnRow& row, Phase phase, const std::string& message,
                              store::Durability durability) {
  if (row.store_count + 1 > kMaxStoreCount && !IsFinal(phase) && phase != Phase::kRollingBack)
    return Fail("loop", "transaction " + std::to_string(row.id) + " stored " +
                            std::to_string(row.store_count) + " times; forcing a rollback");
  auto r = db_.InTransaction([&]() -> ExpectedVoid {
    auto u = db_.Run(
        "UPDATE transactions SET state = ?, message = ?, final = ?, store_count = store_count + 1, "
        "updated_at = ? WHERE id = ?",
        std::string(PhaseName(phase)), message, IsFinal(phase) ? 1 : 0, NowUnix(), row.id);
    if (!u || !IsFinal(phase)) return u;
    return db_.Run("INSERT OR IGNORE INTO unreported_finals(txn_id) VALUES (?)", row.id);
  }, durability);
  if (!r) return r;
  row.phase = phase;
  row.message = message;
  ++row.store_count;
  return {};
}

ExpectedVoid Journal::SetFromRev(TxnRow& row, const std::string& from_rev) {
  auto r = db_.Run("UPDATE transactions SET from_rev = ? WHERE id = ?", from_rev, row.id);
  if (r) row.from_rev = from_rev;
  return r;
}

ExpectedVoid Journal::SetRevision(const TxnRow& row) {
  return db_.Run("UPDATE transactions SET rev = ?, seq = ?, document = ? WHERE id = ?", row.rev, row.seq,
                 row.document, row.id);
}

Expected<std::optional<std::string>> Journal::Meta(const std::string& key) {
  auto st = db_.Prepare("SELECT value FROM meta WHERE key = ?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, key);
  auto step = st->Step();
  if (!step) return Unexpected(step.error());
  if (!*step) return std::optional<std::string>{};
  return std::optional<std::string>(st->Text(0));
}

ExpectedVoid Journal::SetMeta(const std::string& key, const std::string& value) {
  return db_.Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 key, value);
}

Expected<std::optional<RevisionRow>> Journal::Revision(const std::string& rev) {
  auto st = db_.Prepare("SELECT rev, seq, document FROM revisions WHERE rev = ?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, rev);
  auto step = st->Step();
  if (!step) return Unexpected(step.error());
  if (!*step) return std::optional<RevisionRow>{};
  return std::optional<RevisionRow>(RevisionRow{st->Text(0), st->Int(1), st->Text(2)});
}

Expected<std::optional<RevisionRow>> Journal::Current() {
  auto rev = Meta("current_rev");
  if (!rev) return Unexpected(rev.error());
  if (!*rev) return std::optional<RevisionRow>{};
  return Revision(**rev);
}

Expected<std::optional<RevisionRow>> Journal::Previous() {
  auto rev = Meta("previous_rev");
  if (!rev) return Unexpected(rev.error());
  if (!*rev || (*rev)->empty()) return std::optional<RevisionRow>{};
  return Revision(**rev);
}

Expected<std::int64_t> Journal::HighSeq() {
  auto v = Meta("high_seq");
  if (!v) return Unexpected(v.error());
  return *v ? std::stoll(**v) : 0;
}

ExpectedVoid Journal::Commit(TxnRow& row, bool raise_high_seq) {
  return db_.InTransaction([&]() -> ExpectedVoid {
    // Checked first, under the writer lock: nothing is written for a downgrade.
    if (raise_high_seq) {
      auto high = HighSeq();
      if (!high) return Unexpected(high.error());
      if (row.seq <= *high)
        return Fail("downgrade", "revision " + row.rev + " has seq " + std::to_string(row.seq) +
                                     ", not greater than the highest committed seq " + std::to_string(*high));
    }
    auto current = Meta("current_rev");
    if (!current) return Unexpected(current.error());
    std::string old = current->value_or("");
    if (auto r = db_.Run("INSERT OR REPLACE INTO revisions(rev, seq, document, committed_at) VALUES (?, ?, ?, ?)",
                         row.rev, row.seq, row.document, NowUnix());
        !r)
      return r;
    if (auto r = SetMeta("current_rev", row.rev); !r) return r;
    if (old != row.rev)
      if (auto r = SetMeta("previous_rev", old); !r) return r;
    auto prev = Meta("previous_rev");
    if (!prev) return Unexpected(prev.error());
    if (auto r = db_.Run("DELETE FROM revisions WHERE rev <> ? AND rev <> ?", row.rev, prev->value_or(""));
        !r)
      return r;
    if (raise_high_seq)
      if (auto r = SetMeta("high_seq", std::to_string(row.seq)); !r) return r;
    return SetPhase(row, Phase::kCommitted, row.message);
  });
}

}  // namespace gantry::txn
