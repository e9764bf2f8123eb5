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

namespace {
// n decimal digits at text[pos], or -1; never reads past the end.
int Digits(std::string_view text, size_t pos, size_t n) {
  if (pos + n > text.size()) return -1;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return -1;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}
bool At(std::string_view text, size_t pos, char c) { return pos < text.size() && text[pos] == c; }
}  // namespace

// Exactly YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM); 't' and 'z' are allowed as RFC 3339
// says. Every field is read by position with its length checked first.
std::optional<std::int64_t> ParseRfc3339(std::string_view text) {
  int year = Digits(text, 0, 4), mon = Digits(text, 5, 2), day = Digits(text, 8, 2);
  int hh = Digits(text, 11, 2), mi = Digits(text, 14, 2), ss = Digits(text, 17, 2);
  if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || hh < 0 || hh > 23 || mi < 0 ||
      mi > 59 || ss < 0 || ss > 60)
    return std::nullopt;
  if (!At(text, 4, '-') || !At(text, 7, '-') || !(At(text, 10, 'T') || At(text, 10, 't')) ||
      !At(text, 13, ':') || !At(text, 16, ':'))
    return std::nullopt;
  size_t pos = 19;
  if (At(text, pos, '.')) {
    ++pos;
    size_t first = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
    if (pos == first) return std::nullopt;
  }
  std::int64_t offset = 0;
  if (At(text, pos, 'Z') || At(text, pos, 'z')) {
    ++pos;
  } else if (At(text, pos, '+') || At(text, pos, '-')) {
    int oh = Digits(text, pos + 1, 2), om = Digits(text, pos + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59 || !At(text, pos + 3, ':')) return std::nullopt;
    offset = (oh * 3600 + om * 60) * (text[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hh;
  tm.tm_min = mi;
  tm.tm_sec = ss;
  return static_cast<std::int64_t>(timegm(&tm)) - offset;
}

}  // namespace gantry
