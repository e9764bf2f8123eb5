#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace gantry {

std::string ToHex(const std::uint8_t* data, size_t size);
// A block id: exactly 64 lowercase hex characters.
bool IsBlockId(std::string_view s);

}  // namespace gantry
