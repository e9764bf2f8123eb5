#include "core/names.hpp"

namespace gantry {

bool IsSafeName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto ok_first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok_first(s[0])) return false;
  for (char c : s)
    if (!(ok_first(c) || c == '.' || c == '_' || c == '-')) return false;
  return s != "." && s != ".." && s.find("..") == std::string_view::npos;
}

bool IsGroupName(std::string_view s) {
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (s.empty() || s.size() > 63 || !alnum(s[0])) return false;
  for (char c : s)
    if (!(alnum(c) || c == '.' || c == '_' || c == '-')) return false;
  return s.find("..") == std::string_view::npos;
}

bool IsSafeKey(std::string_view s) {
  if (s.empty() || s.front() == '/') return false;
  // docs/revision-format.md: no key "contains ..", not only as a whole segment.
  if (s.find('\0') != std::string_view::npos || s.find('\\') != std::string_view::npos ||
      s.find("..") != std::string_view::npos)
    return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('/', start);
    if (end == std::string_view::npos) end = s.size();
    auto seg = s.substr(start, end - start);
    if (seg.empty() || seg == ".") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace gantry
