#include "core/time.hpp"

#include <cstdio>
#include <ctime>

namespace gantry {

std::int64_t NowUnix() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string Rfc3339(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<std::int64_t> ParseRfc3339(std::string_view text) {
  std::string s(text);
  std::tm tm{};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return std::nullopt;
  if (*rest == '.') {
    ++rest;
    if (*rest < '0' || *rest > '9') return std::nullopt;
    while (*rest >= '0' && *rest <= '9') ++rest;
  }
  std::int64_t offset = 0;
  if (*rest == 'Z' || *rest == 'z') {
    ++rest;
  } else if (*rest == '+' || *rest == '-') {
    int hh = 0, mm = 0;
    if (std::sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59) return std::nullopt;
    offset = (hh * 3600 + mm * 60) * (*rest == '+' ? 1 : -1);
    rest += 6;
  } else {
    return std::nullopt;
  }
  if (*rest != '\0') return std::nullopt;
  return static_cast<std::int64_t>(timegm(&tm)) - offset;
}

}  // namespace gantry
