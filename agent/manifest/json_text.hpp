#pragma once
// JSON text → nlohmann::json without exceptions and without unbounded nesting: nlohmann 3.11
// has no depth limit, and dumping or destroying a deeply nested value recurses.
#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace gantry::manifest {

inline constexpr size_t kMaxJsonDepth = 64;

// Code "bad_json" with the byte offset of the problem.
Expected<nlohmann::json> ParseJsonText(std::string_view text, size_t max_depth = kMaxJsonDepth);

}  // namespace gantry::manifest
