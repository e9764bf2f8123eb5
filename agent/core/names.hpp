#pragma once
// docs/revision-format.md name rules: anything that becomes a path is checked here and nowhere else.
#include <string_view>

namespace gantry {

// Container names, rev, kid, sensor ids: ^[a-z0-9][a-z0-9._-]{0,62}$ (and never "." or "..").
bool IsSafeName(std::string_view s);
// A state key: relative, no "..", no NUL, no backslash, no empty segment.
bool IsSafeKey(std::string_view s);

}  // namespace gantry
