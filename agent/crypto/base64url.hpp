#pragma once
// base64url without padding (RFC 7515 §2, RFC 4648 §5), the only form JWS uses.
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace gantry::crypto {

std::string Base64UrlEncode(std::string_view bytes);
// Strict: rejects '=', characters outside [A-Za-z0-9_-], an impossible length and non-zero
// trailing bits, so every byte string has exactly one accepted encoding. Code "bad_base64url".
Expected<std::string> Base64UrlDecode(std::string_view text);

}  // namespace gantry::crypto
