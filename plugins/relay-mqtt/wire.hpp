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

// zlib's CRC-32 (reflected polynomial 0xEDB88320), eight bytes per step ("slicing by 8"):
// a byte at a time it was a twentieth of the relay's CPU at 1,000 sensors.
inline std::uint32_t Crc32(std::string_view data, std::uint32_t crc = 0) {
  using Tables = std::array<std::array<std::uint32_t, 256>, 8>;
  static const Tables kT = [] {
    Tables t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    // t[k][i]: the CRC of byte i followed by k zero bytes.
    for (std::size_t k = 1; k < 8; ++k)
      for (std::uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
    return t;
  }();
  auto byte = [&](std::size_t at) { return static_cast<std::uint32_t>(static_cast<unsigned char>(data[at])); };
  crc = ~crc;
  std::size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    std::uint32_t lo = crc ^ (byte(i) | byte(i + 1) << 8 | byte(i + 2) << 16 | byte(i + 3) << 24);
    crc = kT[7][lo & 0xFF] ^ kT[6][(lo >> 8) & 0xFF] ^ kT[5][(lo >> 16) & 0xFF] ^ kT[4][lo >> 24] ^
          kT[3][byte(i + 4)] ^ kT[2][byte(i + 5)] ^ kT[1][byte(i + 6)] ^ kT[0][byte(i + 7)];
  }
  for (; i < data.size(); ++i) crc = kT[0][(crc ^ byte(i)) & 0xFF] ^ (crc >> 8);
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
