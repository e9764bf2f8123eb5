#include "crypto/base64url.hpp"

#include <array>
#include <cstdint>

namespace gantry::crypto {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<std::int8_t, 256> MakeReverse() {
  std::array<std::int8_t, 256> r{};
  for (auto& v : r) v = -1;
  for (int i = 0; i < 64; ++i) r[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  return r;
}
constexpr auto kReverse = MakeReverse();

}  // namespace

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  auto b = [&](size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    std::uint32_t v = b(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    std::uint32_t v = (b(i) << 16) | (b(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

Expected<std::string> Base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1)
    return Fail("bad_base64url", "length " + std::to_string(text.size()) + " is not a valid base64url length");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    std::int8_t v = kReverse[static_cast<unsigned char>(text[i])];
    if (v < 0) {
      if (text[i] == '=')
        return Fail("bad_base64url", "padding '=' at offset " + std::to_string(i) +
                                         " (JWS base64url carries no padding)");
      return Fail("bad_base64url", "character " + std::to_string(static_cast<unsigned char>(text[i])) +
                                       " at offset " + std::to_string(i) + " is not base64url");
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // The leftover bits of the last character must be zero, or two texts would decode alike.
  if ((acc & ((1u << bits) - 1)) != 0)
    return Fail("bad_base64url", "non-zero trailing bits in the last character");
  return out;
}

}  // namespace gantry::crypto
