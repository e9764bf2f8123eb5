#include "command/ledger.hpp"

namespace gantry::command {

std::optional<std::string> Ledger::StoredReply(const std::string& id) {
  auto st = db_.Prepare("SELECT reply FROM commands WHERE id = ?");
  if (!st) return std::nullopt;
  st->Bind(1, id);
  if (!st->Step().value_or(false)) return std::nullopt;
  return st->Text(0);
}

ExpectedVoid Ledger::Record(const std::string& id, const std::string& op, const std::string& reply,
                            std::int64_t now_unix) {
  return db_.Run("INSERT OR IGNORE INTO commands(id, op, reply, received_at) VALUES (?, ?, ?, ?)", id, op,
                 reply, now_unix);
}

Expected<std::int64_t> Ledger::Prune(std::int64_t now_unix) {
  // rowid grows with every insert: the newest kKeepAtLeast rows are the highest rowids.
  auto st = db_.Prepare(
      "DELETE FROM commands WHERE received_at < ? AND rowid <= "
      "(SELECT rowid FROM commands ORDER BY rowid DESC LIMIT 1 OFFSET ?)");
  if (!st) return Unexpected(st.error());
  st->BindAll(now_unix - kKeepSeconds, kKeepAtLeast);
  if (auto r = st->Run(); !r) return Unexpected(r.error());
  auto n = db_.Prepare("SELECT changes()");
  if (!n || !n->Step().value_or(false)) return 0;
  return n->Int(0);
}

}  // namespace gantry::command
