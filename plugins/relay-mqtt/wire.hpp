#pragma once
// The S/data frame of docs/protocol.md, shared by the relay plugin and the sensor simulator:
// a 16-byte big-endian header (u8 version=1, u8 flags, u8 file=1, u8 0, u16 job, u32 offset,
// u16 len, u32 crc32) followed by len raw bytes. The crc is zlib's CRC-32 of those bytes.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gantry::relay::wire {

inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::uint8_t kFlagLast = 1;  // the frame ends the image
inline constexpr std::uint8_t kFlagCrc = 2;   // the crc field is set
inline constexpr std::uint8_t kFileImage = 1;

// zlib's CRC-32 (reflected polynomial 0xEDB88320), table-driven.
inline std::uint32_t Crc32(std::string_view data, std::uint32_t crc = 0) {
  static const auto kTable = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : data) crc = kTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

struct Header {
  std::uint8_t flags = 0;
  std::uint16_t job = 0;
  std::uint32_t offset = 0;
  std::uint16_t len = 0;
  std::uint32_t crc = 0;
};

inline std::string Frame(std::uint16_t job, std::uint32_t offset, std::string_view bytes,
                         bool last) {
  std::string f(kHeaderSize, '\0');
  auto put16 = [&](std::size_t at, std::uint32_t v) {
    f[at] = static_cast<char>(v >> 8);
    f[at + 1] = static_cast<char>(v);
  };
  auto put32 = [&](std::size_t at, std::uint32_t v) {
    put16(at, v >> 16);
    put16(at + 2, v & 0xFFFF);
  };
  f[0] = static_cast<char>(kVersion);
  f[1] = static_cast<char>(kFlagCrc | (last ? kFlagLast : 0));
  f[2] = static_cast<char>(kFileImage);
  put16(4, job);
  put32(6, offset);
  put16(10, static_cast<std::uint32_t>(bytes.size()));
  put32(12, Crc32(bytes));
  f.append(bytes);
  return f;
}

// The header of a well-formed frame (version 1, file 1, len matching the payload), else nullopt.
inline std::optional<Header> Parse(std::string_view frame) {
  if (frame.size() < kHeaderSize) return std::nullopt;
  auto u8 = [&](std::size_t at) { return static_cast<std::uint32_t>(static_cast<unsigned char>(frame[at])); };
  auto u16 = [&](std::size_t at) { return (u8(at) << 8) | u8(at + 1); };
  auto u32 = [&](std::size_t at) { return (u16(at) << 16) | u16(at + 2); };
  if (u8(0) != kVersion || u8(2) != kFileImage) return std::nullopt;
  Header h{static_cast<std::uint8_t>(u8(1)), static_cast<std::uint16_t>(u16(4)), u32(6),
           static_cast<std::uint16_t>(u16(10)), u32(12)};
  if (frame.size() != kHeaderSize + h.len) return std::nullopt;
  return h;
}

}  // namespace gantry::relay::wire
