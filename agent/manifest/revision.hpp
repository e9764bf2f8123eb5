#pragma once
// The revision document carried in the signed envelope (docs/revision-format.md) and the checks that decide
// whether this device takes it (failures become WONTGO with the error's code and message).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "manifest/state.hpp"

namespace gantry::manifest {

struct Revision {
  std::string rev;                           // a safe name
  std::int64_t seq = 0;                      // >= 1
  std::vector<std::string> targets;          // device ids and "group:<g>"
  std::optional<std::int64_t> expires;       // unix seconds
  std::optional<std::string> objects_base;
  std::map<std::string, std::uint64_t> objects;  // block id → size in bytes
  State state;
  std::vector<std::string> warnings;  // unknown members of objects entries; the state has its own

  // Sum of the sizes of state.ReferencedBlocks() (what a fresh device must fetch).
  std::uint64_t ReferencedBytes() const;
};

// payload_bytes: the verified JWS payload (or a file). The document is closed (an unknown
// top-level field is an error); the state inside is open (see state.hpp). Codes:
// "bad_revision" (message starts with the JSON path, e.g. "seq: must be an integer >= 1"), plus ParseState's "bad_state",
// "bad_name", "bad_block_id" with "state." prefixed to their message.
Expected<Revision> ParseRevision(std::string_view payload_bytes, const StateOptions& options = {});
// The same for an already parsed document.
Expected<Revision> ParseRevisionJson(const nlohmann::json& doc, const StateOptions& options = {});

// Every block the state references, Gantry's or not, is listed in objects with its size
// ("missing_object", naming the key).
ExpectedVoid CheckRevision(const Revision& revision);

// Whether this device takes the revision, checked in this order: "not_addressed" (no target
// is device_id or "group:<g>" for one of groups), "expired" (expires <= now), "downgrade"
// (seq <= committed_seq, the highest seq ever committed).
ExpectedVoid CheckApplicable(const Revision& revision, const std::string& device_id,
                             const std::vector<std::string>& groups, std::int64_t committed_seq,
                             std::int64_t now_unix);
// The part of CheckApplicable that time and other commits can change ("expired",
// "downgrade"): checked again when a queued update's turn comes and before it switches.
ExpectedVoid CheckFresh(const Revision& revision, std::int64_t committed_seq, std::int64_t now_unix);

}  // namespace gantry::manifest
