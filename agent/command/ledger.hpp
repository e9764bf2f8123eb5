#pragma once
// The command ledger (table commands): every handled command id with the exact reply sent,
// so a repeated id gets that reply back, byte for byte, and is never executed twice
// (docs/protocol.md). Ids are kept for 30 days and at least the last 10,000 commands.
#include <cstdint>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "store/db.hpp"

namespace gantry::command {

class Ledger {
 public:
  static constexpr std::int64_t kKeepSeconds = 30 * 24 * 3600;
  static constexpr std::int64_t kKeepAtLeast = 10000;

  explicit Ledger(store::Db& db) : db_(db) {}

  std::optional<std::string> StoredReply(const std::string& id);
  // Inside the caller's transaction, with the command's effects.
  ExpectedVoid Record(const std::string& id, const std::string& op, const std::string& reply,
                      std::int64_t now_unix);
  // Drops ids older than kKeepSeconds beyond the newest kKeepAtLeast; returns how many.
  Expected<std::int64_t> Prune(std::int64_t now_unix);

 private:
  store::Db& db_;
};

}  // namespace gantry::command
