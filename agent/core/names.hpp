#pragma once
// docs/revision-format.md name rules: anything that becomes a path is checked here and nowhere else.
#include <cstddef>
#include <string_view>

namespace gantry {

// Container names, rev, kid, sensor ids: ^[a-z0-9][a-z0-9._-]{0,62}$ (and never "." or "..").
bool IsSafeName(std::string_view s);
// A container's instance is "<name>-<12 hex of its content key>" and LXC names (like every
// name here) fit 63 characters: a container name longer than this can never start.
inline constexpr std::size_t kMaxContainerName = 63 - 13;
// A state key: relative, no "..", no NUL, no backslash, no empty segment.
bool IsSafeKey(std::string_view s);
// A group: of devices (config mqtt.groups, a revision's "group:<g>" target, one topic level
// of <root>/group/<group>/cmd) or of containers in a state. Mixed case allowed:
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ without "..".
bool IsGroupName(std::string_view s);

}  // namespace gantry
