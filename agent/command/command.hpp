#pragma once
// The command envelope of docs/protocol.md: size and depth capped before and while parsing, then
// strictly typed. Nothing here executes a command.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace gantry::command {

inline constexpr size_t kMaxBytes = 1u << 20;
inline constexpr int kMaxDepth = 64;

enum class Op { kUpdate, kRollback, kCancel, kGc, kGetState };

struct Command {
  std::string id;
  Op op;
  std::string op_name;
  nlohmann::json revision;                  // update only: the signed envelope, unverified
  std::optional<std::string> objects_base;  // update only
};

struct Rejection {
  std::optional<std::string> id;  // null when the id could not be read
  Error error;
};

// Codes: too_large, too_deep, bad_json, bad_command.
tl::expected<Command, Rejection> Parse(std::string_view payload);

// Parses JSON text with the size and depth caps (also used for other hostile documents).
Expected<nlohmann::json> ParseCapped(std::string_view text, size_t max_bytes = kMaxBytes,
                                     int max_depth = kMaxDepth);

// The reply of docs/protocol.md: {"id", "ok", "error": {"code", "message"}}.
std::string Reply(const std::optional<std::string>& id, const ExpectedVoid& result);

}  // namespace gantry::command
