#include <gtest/gtest.h>

#include <string>

#include "digest/sha256.hpp"
#include "test_util.hpp"

using gantry::digest::Sha256;

namespace {
// FIPS 180-2 test vectors.
constexpr char kEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kMillionA[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
}  // namespace

TEST(Digest, KnownVectors) {
  EXPECT_EQ(gantry::digest::Sha256Hex("", 0), kEmpty);
  EXPECT_EQ(gantry::digest::Sha256Hex("abc", 3), kAbc);
  EXPECT_EQ(gantry::digest::Sha256Hex(std::string_view("abc")), kAbc);
}

TEST(Digest, StreamingEqualsOneShotWhateverTheSplit) {
  std::string a(1000000, 'a');
  for (size_t step : {1u, 7u, 4096u, 65537u, 1000000u}) {
    Sha256 h;
    for (size_t off = 0; off < a.size(); off += step)
      h.Update(a.data() + off, std::min(step, a.size() - off));
    EXPECT_EQ(h.FinalHex(), kMillionA) << "step " << step;
  }
}

TEST(Digest, FinalStartsOver) {
  Sha256 h;
  h.Update("xyz", 3);
  h.FinalHex();
  h.Update("abc", 3);
  EXPECT_EQ(h.FinalHex(), kAbc);
}

TEST(Digest, FileMatchesSha256sum) {
  gantry::test::TempDir dir;
  auto f = dir.path() / "f";
  std::string data;
  for (int i = 0; i < 300000; ++i) data.push_back(static_cast<char>(i * 31 + (i >> 8)));
  gantry::test::Spit(f, data);
  auto got = gantry::digest::Sha256File(f);
  ASSERT_TRUE(got) << got.error().String();
  auto [rc, out] = gantry::test::Sh("sha256sum " + f.string());
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(*got, out.substr(0, 64));
}

TEST(Digest, MissingFileIsAnIoError) {
  auto got = gantry::digest::Sha256File("/nonexistent/gantry/file");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, "io");
  EXPECT_NE(got.error().message.find("/nonexistent/gantry/file"), std::string::npos);
}
