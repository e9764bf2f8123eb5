#pragma once
// A revision's LXC config, read exactly as liblxc reads it and checked against an allow-list
// (docs/container-isolation.md). The runtime never hands the revision's text to liblxc: it
// writes the container's config itself from the pairs that passed (WriteLxcConfig).
//
// The reader follows liblxc's parse_line: one "key = value" a line ('\n' ends a line), blanks
// and tabs trimmed around key and value, a line whose first non-blank byte is '#' is a comment,
// one pair of matching quotes (' or ") around a value is stripped. Wherever liblxc could read
// the bytes differently from this reader, the config is refused instead: a NUL (liblxc stops
// reading there) or any control byte other than tab and newline, a CR, invalid UTF-8, a line
// ending in a backslash (a continuation in other config dialects), a line that is not a
// comment and has no '='.
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace gantry::manifest {

struct LxcPair {
  std::string key;
  std::string value;
  bool operator==(const LxcPair&) const = default;
};

// Every "key = value" of text in order (comments and blank lines skipped). Error code
// "bad_lxc_config" naming the line, column and byte.
Expected<std::vector<LxcPair>> ReadLxcConfig(std::string_view text);

// The keys Gantry sets itself (rootfs path, uts name, log file and level): pvr exports carry
// them, so they are dropped rather than refused.
bool IsOwnedLxcKey(std::string_view key);

// Keys that would undo the isolation itself and that runtime.allow_lxc_keys cannot admit:
// lxc.idmap, lxc.include (a file whose lines nobody checked), lxc.rootfs and lxc.rootfs.*.
bool IsGantryOnlyLxcKey(std::string_view key);

// Reads text, drops the owned keys and checks every other pair against the allow-list and its
// value rule. allow_keys (runtime.allow_lxc_keys) admits a key whatever its value: an entry
// is a key ("lxc.cap.keep") or a prefix ending in ".*" ("lxc.hook.*"). Error codes:
// "bad_lxc_config" (see ReadLxcConfig), "lxc_key" (names the key, its value and the rule).
Expected<std::vector<LxcPair>> CheckLxcConfig(std::string_view text,
                                              const std::vector<std::string>& allow_keys);

// The canonical text of pairs: "key = \"value\"\n" each, which liblxc reads back as exactly
// these pairs (the quotes it strips protect values that begin or end with blanks or quotes).
std::string WriteLxcConfig(const std::vector<LxcPair>& pairs);

// The revision's config as the agent hands it to the runtime: the canonical text of the
// pairs without the owned keys, or the text unchanged when it does not read (the check then
// refuses it naming the byte).
std::string WithoutOwnedKeys(std::string_view config_text);

}  // namespace gantry::manifest
