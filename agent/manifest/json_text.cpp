#include "manifest/json_text.hpp"

#include <string>

namespace gantry::manifest {

Expected<nlohmann::json> ParseJsonText(std::string_view text, size_t max_depth) {
  // Depth is counted on the raw text first, so the parser never builds a deep value.
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth)
        return Fail("bad_json", "nested deeper than " + std::to_string(max_depth) +
                                    " levels at byte " + std::to_string(i));
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Fail("bad_json", e.what());
  }
}

}  // namespace gantry::manifest
