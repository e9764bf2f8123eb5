#include <gtest/gtest.h>

#include "wire.hpp"

using namespace gantry::relay;

TEST(RelayWire, Crc32IsZlibs) {
  EXPECT_EQ(wire::Crc32("123456789"), 0xCBF43926u);  // the CRC-32 check value
  EXPECT_EQ(wire::Crc32(""), 0u);
  EXPECT_EQ(wire::Crc32("The quick brown fox jumps over the lazy dog"), 0x414FA339u);
}

// Eight bytes per step must equal one bit per step, at every length and split.
TEST(RelayWire, Crc32MatchesTheBitwiseDefinitionAtEveryLength) {
  auto bitwise = [](std::string_view d) {
    std::uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : d) {
      c ^= b;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
  };
  std::string data;
  std::uint32_t x = 12345;
  for (int i = 0; i < 300; ++i) {
    x = x * 1103515245u + 12345u;
    data.push_back(static_cast<char>(x >> 24));
  }
  for (std::size_t n = 0; n <= data.size(); ++n) {
    std::string_view d(data.data(), n);
    ASSERT_EQ(wire::Crc32(d), bitwise(d)) << "length " << n;
    ASSERT_EQ(wire::Crc32(d.substr(n / 3), wire::Crc32(d.substr(0, n / 3))), bitwise(d)) << "split " << n;
  }
}

TEST(RelayWire, FrameHeaderIsBigEndianAndRoundTrips) {
  std::string bytes = "hello, sensor";
  auto f = wire::Frame(0x1234, 0x01020304, bytes, true);
  ASSERT_EQ(f.size(), 16u + bytes.size());
  EXPECT_EQ(static_cast<unsigned char>(f[0]), 1);     // version
  EXPECT_EQ(static_cast<unsigned char>(f[1]), 3);     // last | crc
  EXPECT_EQ(static_cast<unsigned char>(f[2]), 1);     // file
  EXPECT_EQ(static_cast<unsigned char>(f[4]), 0x12);  // job, big-endian
  EXPECT_EQ(static_cast<unsigned char>(f[6]), 0x01);  // offset, big-endian
  EXPECT_EQ(static_cast<unsigned char>(f[9]), 0x04);
  auto h = wire::Parse(f);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->job, 0x1234);
  EXPECT_EQ(h->offset, 0x01020304u);
  EXPECT_EQ(h->len, bytes.size());
  EXPECT_EQ(h->crc, wire::Crc32(bytes));
  EXPECT_EQ(f.substr(16), bytes);
}

TEST(RelayWire, ParseRefusesTruncatedOrForeignFrames) {
  auto f = wire::Frame(1, 0, "abc", false);
  EXPECT_FALSE(wire::Parse(f.substr(0, 10)));
  EXPECT_FALSE(wire::Parse(f + "x"));  // len does not match the payload
  auto other = f;
  other[0] = 2;
  EXPECT_FALSE(wire::Parse(other));
}
