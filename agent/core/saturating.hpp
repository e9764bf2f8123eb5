#pragma once
// Sums of sizes a revision declares: hostile input may put them near 2^64, and a wrapped sum
// would make a huge update look small. Saturated, the sum stays "too big" and is refused.
#include <cstdint>
#include <limits>

namespace gantry {

inline std::uint64_t AddSat(std::uint64_t a, std::uint64_t b) {
  return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max() : a + b;
}

}  // namespace gantry
