#pragma once
// One-shot SHA-256 for small inputs (content keys, test fixtures). Streaming hashes of blocks
// live in digest/.
#include <string>
#include <string_view>

namespace gantry::crypto {

// Lowercase hex, 64 characters.
std::string Sha256Hex(std::string_view data);

}  // namespace gantry::crypto
