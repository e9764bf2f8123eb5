#include "manifest/revision.hpp"

#include <algorithm>

#include "core/hex.hpp"
#include "core/names.hpp"
#include "core/time.hpp"
#include "manifest/json_text.hpp"

namespace gantry::manifest {
namespace {

using json = nlohmann::json;

// A revision arrives inside a command envelope capped at 1 MiB; a file given to gantryctl
// may be bigger, but not without bound.
constexpr size_t kMaxPayloadBytes = 16u << 20;

Unexpected Bad(const std::string& path, const std::string& message) {
  return Fail("bad_revision", path + ": " + message);
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool IsTarget(const std::string& t) {
  if (t.rfind("group:", 0) == 0) return IsGroupName(std::string_view(t).substr(6));
  return IsSafeName(t);
}

bool IsObjectsBase(const std::string& url) {
  for (const char* scheme : {"http://", "https://", "file://"})
    if (url.rfind(scheme, 0) == 0) return true;
  return false;
}

}  // namespace

std::uint64_t Revision::ReferencedBytes() const {
  std::uint64_t total = 0;
  for (const auto& b : state.ReferencedBlocks())
    if (auto it = objects.find(b); it != objects.end()) total += it->second;
  return total;
}

Expected<Revision> ParseRevision(std::string_view payload_bytes, const StateOptions& options) {
  if (payload_bytes.size() > kMaxPayloadBytes)
    return Fail("bad_revision", "revision: " + std::to_string(payload_bytes.size()) +
                                    " bytes, at most " + std::to_string(kMaxPayloadBytes));
  auto doc = ParseJsonText(payload_bytes);
  if (!doc) return Fail("bad_revision", "revision is not valid JSON: " + doc.error().message);
  return ParseRevisionJson(*doc, options);
}

Expected<Revision> ParseRevisionJson(const json& doc, const StateOptions& options) {
  if (!doc.is_object()) return Bad("revision", "must be a JSON object");
  // Gantry's own, signed document: closed, so a misspelt field is never silently ignored.
  for (const auto& [k, v] : doc.items())
    if (k != "rev" && k != "seq" && k != "targets" && k != "expires" && k != "objects_base" &&
        k != "objects" && k != "state")
      return Bad(k, "unknown field (rev, seq, targets, expires, objects_base, objects, state)");
  Revision r;

  auto rev = doc.find("rev");
  if (rev == doc.end()) return Bad("rev", "missing");
  if (!rev->is_string()) return Bad("rev", "must be a string");
  r.rev = rev->get<std::string>();
  if (!IsSafeName(r.rev))
    return Fail("bad_name", "rev: " + Dump(*rev) + " must match ^[a-z0-9][a-z0-9._-]{0,62}$");

  auto seq = doc.find("seq");
  if (seq == doc.end()) return Bad("seq", "missing");
  if (!seq->is_number_integer() ||
      (seq->is_number_unsigned() && seq->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) ||
      seq->get<std::int64_t>() < 1)
    return Bad("seq", "must be an integer >= 1, got " + Dump(*seq));
  r.seq = seq->get<std::int64_t>();

  auto targets = doc.find("targets");
  if (targets == doc.end()) return Bad("targets", "missing");
  if (!targets->is_array() || targets->empty())
    return Bad("targets", "must be a non-empty array of device ids and \"group:<name>\"");
  for (size_t i = 0; i < targets->size(); ++i) {
    const json& t = (*targets)[i];
    std::string at = "targets[" + std::to_string(i) + "]";
    if (!t.is_string()) return Bad(at, "must be a string");
    if (!IsTarget(t.get_ref<const std::string&>()))
      return Fail("bad_name", at + ": " + Dump(t) + " is neither a device id nor \"group:<name>\"");
    r.targets.push_back(t.get<std::string>());
  }

  if (auto expires = doc.find("expires"); expires != doc.end()) {
    if (!expires->is_string()) return Bad("expires", "must be an RFC 3339 string");
    r.expires = ParseRfc3339(expires->get_ref<const std::string&>());
    if (!r.expires)
      return Bad("expires", Dump(*expires) + " is not RFC 3339 (e.g. 2027-01-31T00:00:00Z)");
  }

  if (auto base = doc.find("objects_base"); base != doc.end()) {
    if (!base->is_string() || !IsObjectsBase(base->get_ref<const std::string&>()))
      return Bad("objects_base", "must be an http://, https:// or file:// URL");
    r.objects_base = base->get<std::string>();
  }

  if (auto objects = doc.find("objects"); objects != doc.end()) {
    if (!objects->is_object()) return Bad("objects", "must be an object {<sha256>: {\"size\": n}}");
    for (const auto& [id, entry] : objects->items()) {
      if (!IsBlockId(id))
        return Fail("bad_block_id", "objects: key " + Dump(json(id)) +
                                        " is not a block id (64 lowercase hex characters)");
      std::string at = "objects." + id;
      if (!entry.is_object()) return Bad(at, "must be an object {\"size\": n}");
      auto size = entry.find("size");
      if (size == entry.end()) return Bad(at + ".size", "missing");
      if (!size->is_number_unsigned()) return Bad(at + ".size", "must be an integer >= 0");
      r.objects[id] = size->get<std::uint64_t>();
      for (const auto& [k, v] : entry.items())
        if (k != "size") r.warnings.push_back(at + "." + k + ": not acted on");
    }
  }

  auto state = doc.find("state");
  if (state == doc.end()) return Bad("state", "missing");
  auto st = ParseState(*state, options);
  if (!st) return Unexpected(st.error().WithContext("state"));
  r.state = std::move(*st);
  for (auto& s : r.state.sensors)
    if (auto it = r.objects.find(s.block); it != r.objects.end()) s.size = it->second;

  return r;
}

ExpectedVoid CheckRevision(const Revision& revision) {
  std::vector<std::string> missing;
  for (const auto& [key, block] : revision.state.blocks)
    if (!revision.objects.count(block)) missing.push_back(key + " (" + block + ")");
  if (missing.empty()) return {};
  std::string list;
  for (size_t i = 0; i < missing.size() && i < 3; ++i) list += (i ? ", " : "") + missing[i];
  if (missing.size() > 3) list += ", ...";
  return Fail("missing_object", std::to_string(missing.size()) + " block" +
                                    (missing.size() == 1 ? "" : "s") +
                                    " referenced by the state not listed in objects: " + list);
}

ExpectedVoid CheckApplicable(const Revision& revision, const std::string& device_id,
                             const std::vector<std::string>& groups, std::int64_t committed_seq,
                             std::int64_t now_unix) {
  bool addressed = std::any_of(revision.targets.begin(), revision.targets.end(), [&](const auto& t) {
    if (t == device_id) return true;
    return t.rfind("group:", 0) == 0 &&
           std::find(groups.begin(), groups.end(), t.substr(6)) != groups.end();
  });
  if (!addressed) {
    std::string targets, mine;
    for (const auto& t : revision.targets) targets += (targets.empty() ? "" : ", ") + t;
    for (const auto& g : groups) mine += (mine.empty() ? "" : ", ") + g;
    return Fail("not_addressed", "revision " + revision.rev + " targets [" + targets +
                                     "]; this device is " + device_id + " in groups [" + mine + "]");
  }
  return CheckFresh(revision, committed_seq, now_unix);
}

ExpectedVoid CheckFresh(const Revision& revision, std::int64_t committed_seq, std::int64_t now_unix) {
  if (revision.expires && *revision.expires <= now_unix)
    return Fail("expired", "revision " + revision.rev + " expired at " +
                               Rfc3339(*revision.expires) + " (now " + Rfc3339(now_unix) + ")");
  if (revision.seq <= committed_seq)
    return Fail("downgrade", "revision " + revision.rev + " has seq " + std::to_string(revision.seq) +
                                 ", not greater than the highest committed seq " +
                                 std::to_string(committed_seq));
  return {};
}

}  // namespace gantry::manifest
