#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gantry {

// Seconds since the epoch, UTC.
std::int64_t NowUnix();
// RFC 3339 UTC, second precision: 2026-11-25T12:00:00Z.
std::string Rfc3339(std::int64_t unix_seconds);
inline std::string NowRfc3339() { return Rfc3339(NowUnix()); }
// Accepts "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)"; nullopt for anything else.
std::optional<std::int64_t> ParseRfc3339(std::string_view text);

}  // namespace gantry
