#include "command/command.hpp"

namespace gantry::command {
namespace {

struct TooDeep {};

Rejection Reject(std::optional<std::string> id, std::string code, std::string message) {
  return Rejection{std::move(id), Error{std::move(code), std::move(message)}};
}

}  // namespace

Expected<nlohmann::json> ParseCapped(std::string_view text, size_t max_bytes, int max_depth) {
  if (text.size() > max_bytes)
    return Fail("too_large", "payload is " + std::to_string(text.size()) + " bytes, limit " +
                                 std::to_string(max_bytes));
  // nlohmann 3.11 has no depth limit: the parser callback sees the depth of every event.
  auto cb = [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > max_depth) throw TooDeep{};
    return true;
  };
  try {
    auto j = nlohmann::json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true);
    return j;
  } catch (const TooDeep&) {
    return Fail("too_deep", "JSON nested deeper than " + std::to_string(max_depth) + " levels");
  } catch (const nlohmann::json::exception& e) {
    return Fail("bad_json", e.what());
  }
}

tl::expected<Command, Rejection> Parse(std::string_view payload) {
  auto doc = ParseCapped(payload);
  if (!doc) return tl::unexpected(Rejection{std::nullopt, doc.error()});
  const auto& j = *doc;
  if (!j.is_object()) return tl::unexpected(Reject(std::nullopt, "bad_command", "command must be a JSON object"));
  auto id_it = j.find("id");
  if (id_it == j.end() || !id_it->is_string())
    return tl::unexpected(Reject(std::nullopt, "bad_command", "id: required string"));
  std::string id = id_it->get<std::string>();
  if (id.empty() || id.size() > 64)
    return tl::unexpected(Reject(std::nullopt, "bad_command", "id: must be 1 to 64 characters"));
  auto op_it = j.find("op");
  if (op_it == j.end() || !op_it->is_string())
    return tl::unexpected(Reject(id, "bad_command", "op: required string"));
  Command c;
  c.id = id;
  c.op_name = op_it->get<std::string>();
  if (c.op_name == "update") c.op = Op::kUpdate;
  else if (c.op_name == "rollback") c.op = Op::kRollback;
  else if (c.op_name == "cancel") c.op = Op::kCancel;
  else if (c.op_name == "gc") c.op = Op::kGc;
  else if (c.op_name == "get-state") c.op = Op::kGetState;
  else return tl::unexpected(Reject(id, "bad_command", "op: unknown operation '" + c.op_name + "'"));

  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& k = it.key();
    if (k == "id" || k == "op") continue;
    if (c.op == Op::kUpdate && (k == "revision" || k == "objects_base")) continue;
    return tl::unexpected(Reject(id, "bad_command", k + ": not an argument of " + c.op_name));
  }
  if (c.op == Op::kUpdate) {
    auto r = j.find("revision");
    if (r == j.end() || !r->is_object())
      return tl::unexpected(Reject(id, "bad_command", "revision: required object (a signed envelope)"));
    c.revision = *r;
    if (auto b = j.find("objects_base"); b != j.end()) {
      if (!b->is_string() || b->get<std::string>().empty())
        return tl::unexpected(Reject(id, "bad_command", "objects_base: must be a non-empty string"));
      // Unsigned, beside the revision: held to the same schemes as the signed objects_base.
      const auto& base = b->get_ref<const std::string&>();
      if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0 && base.rfind("file://", 0) != 0)
        return tl::unexpected(
            Reject(id, "bad_command", "objects_base: must be an http://, https:// or file:// URL"));
      c.objects_base = base;
    }
  }
  return c;
}

std::string Reply(const std::optional<std::string>& id, const ExpectedVoid& result) {
  nlohmann::json j;
  j["id"] = id ? nlohmann::json(*id) : nlohmann::json(nullptr);
  j["ok"] = result.has_value();
  if (!result) j["error"] = {{"code", result.error().code}, {"message", result.error().message}};
  // A bad_json message quotes the offending bytes, which need not be UTF-8.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace gantry::command
