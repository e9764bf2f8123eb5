#include "crypto/base64url.hpp"

#include <gtest/gtest.h>

#include <random>

using gantry::crypto::Base64UrlDecode;
using gantry::crypto::Base64UrlEncode;

TEST(Base64Url, KnownVectors) {
  // RFC 4648 §10 without padding, plus the two URL-safe characters.
  EXPECT_EQ(Base64UrlEncode(""), "");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(Base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(Base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64UrlEncode(std::string("\xfb\xff", 2)), "-_8");
  EXPECT_EQ(Base64UrlDecode("-_8").value(), std::string("\xfb\xff", 2));
  EXPECT_EQ(Base64UrlDecode("Zm9vYmE").value(), "fooba");
  EXPECT_EQ(Base64UrlDecode("").value(), "");
}

TEST(Base64Url, RoundTripsEveryLength) {
  std::mt19937 rng(7);
  for (size_t n = 0; n < 70; ++n) {
    std::string bytes(n, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() & 0xff);
    auto enc = Base64UrlEncode(bytes);
    EXPECT_EQ(enc.find('='), std::string::npos);
    auto dec = Base64UrlDecode(enc);
    ASSERT_TRUE(dec) << dec.error().String();
    EXPECT_EQ(*dec, bytes);
  }
}

TEST(Base64Url, RejectsPaddingBadCharactersAndNonCanonicalText) {
  for (const char* bad : {"Zg==", "Zg=", "Zm9v=", "=Zm9", "Z", "Zm9vY", "Zm+v", "Zm/v", "Zm9v!",
                          "Zm 9v", "Zm9v\n", "Zh", "Zm8="}) {
    auto r = Base64UrlDecode(bad);
    EXPECT_FALSE(r) << "accepted '" << bad << "'";
    if (!r) {
      EXPECT_EQ(r.error().code, "bad_base64url");
    }
  }
  // "Zh": 'h' leaves non-zero trailing bits; "Zg" is the one canonical encoding of "f".
  EXPECT_EQ(Base64UrlDecode("Zg").value(), "f");
  auto nul = Base64UrlDecode(std::string("Zm\0v", 4));
  EXPECT_FALSE(nul);
}
