// Interoperability with an independent JWS producer and consumer: the openssl command line.
// Signatures made by `openssl pkeyutl`/`openssl dgst` verify with our code, and ours verify
// with `openssl pkeyutl -verify`. The DER <-> raw R||S conversion here is written
// independently of crypto/keys.cpp on purpose.
#include <gtest/gtest.h>

#include "crypto/base64url.hpp"
#include "crypto/jws.hpp"
#include "signing_test_util.hpp"
#include "test_util.hpp"

using namespace gantry;
using namespace gantry::crypto;
using nlohmann::json;

namespace {

// DER SEQUENCE { INTEGER r, INTEGER s } → 32-byte r || 32-byte s (P-256 lengths are < 128).
std::string DerToRaw(const std::string& der) {
  std::string raw;
  size_t i = 2;
  EXPECT_EQ(static_cast<unsigned char>(der[0]), 0x30);
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(der[i], 0x02);
    size_t len = static_cast<unsigned char>(der[i + 1]);
    std::string v = der.substr(i + 2, len);
    i += 2 + len;
    while (v.size() > 32 && v[0] == '\0') v.erase(0, 1);
    raw += std::string(32 - v.size(), '\0') + v;
  }
  return raw;
}

std::string RawToDer(const std::string& raw) {
  auto integer = [](std::string v) {
    while (v.size() > 1 && v[0] == '\0' && !(static_cast<unsigned char>(v[1]) & 0x80)) v.erase(0, 1);
    if (static_cast<unsigned char>(v[0]) & 0x80) v.insert(0, 1, '\0');
    return std::string("\x02", 1) + static_cast<char>(v.size()) + v;
  };
  std::string body = integer(raw.substr(0, 32)) + integer(raw.substr(32, 32));
  return std::string("\x30", 1) + static_cast<char>(body.size()) + body;
}

class OpenSslInterop : public testing::Test {
 protected:
  void SetUp() override {
    auto [rc, out] = test::Sh("openssl version");
    ASSERT_EQ(rc, 0) << "the openssl command line is required for interop tests: " << out;
  }
  std::string Run(const std::string& cmd) {
    auto [rc, out] = test::Sh("cd " + dir_.path().string() + " && " + cmd);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
    return out;
  }
  // A signature entry for header over payload_b64, signed by `sign_cmd` reading file "input"
  // and writing file "sig".
  json Entry(const json& header, const std::string& payload_b64, const std::string& sign_cmd,
             bool der_to_raw) {
    std::string protected_b64 = Base64UrlEncode(header.dump());
    test::Spit(dir_.path() / "input", protected_b64 + "." + payload_b64);
    Run(sign_cmd);
    std::string sig = test::Slurp(dir_.path() / "sig");
    if (der_to_raw) sig = DerToRaw(sig);
    EXPECT_EQ(sig.size(), 64u);
    return {{"protected", protected_b64}, {"signature", Base64UrlEncode(sig)}};
  }
  test::TempDir dir_;
  const std::string payload_ = R"({"rev":"7","seq":7,"targets":["gw-0001"]})";
};

}  // namespace

TEST_F(OpenSslInterop, OpenSslSignedEnvelopeVerifies) {
  std::filesystem::create_directories(dir_.path() / "trust");
  Run("openssl genpkey -algorithm ed25519 -out ed.key"
      " && openssl pkey -in ed.key -pubout -out trust/cli-ed.pem"
      " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key"
      " && openssl pkey -in ec.key -pubout -out trust/cli-ec.pem");
  auto trust = TrustStore::LoadDir(dir_.path() / "trust");
  ASSERT_TRUE(trust) << trust.error().String();
  ASSERT_EQ(trust->size(), 2u);

  std::string p = Base64UrlEncode(payload_);
  json env = {{"payload", p}, {"signatures", json::array()}};
  env["signatures"].push_back(Entry({{"alg", "EdDSA"}, {"kid", "cli-ed"}}, p,
                                    "openssl pkeyutl -sign -inkey ed.key -rawin -in input -out sig",
                                    false));
  env["signatures"].push_back(Entry({{"alg", "ES256"}, {"kid", "cli-ec"}}, p,
                                    "openssl dgst -sha256 -sign ec.key -out sig input", true));
  auto v = VerifyJws(env, *trust, 2);
  ASSERT_TRUE(v) << v.error().String();
  EXPECT_EQ(v->payload, payload_);
  EXPECT_EQ(v->kids, (std::vector<std::string>{"cli-ec", "cli-ed"}));

  auto tampered = test::WithPayload(env, R"({"rev":"7","seq":8,"targets":["gw-0001"]})");
  auto bad = VerifyJws(tampered, *trust, 1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, "bad_signature");
}

TEST_F(OpenSslInterop, OpenSslKeysSignWithOurCode) {
  Run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key");
  auto k = LoadSigningKey(dir_.path() / "ec.key", "cli-ec");
  ASSERT_TRUE(k) << k.error().String();
  EXPECT_EQ(k->alg(), Alg::kES256);
  // An SEC1 ("BEGIN EC PRIVATE KEY") key as made by `openssl ecparam -genkey` loads too.
  Run("openssl ecparam -name prime256v1 -genkey -noout -out sec1.key");
  ASSERT_NE(test::Slurp(dir_.path() / "sec1.key").find("BEGIN EC PRIVATE KEY"), std::string::npos);
  EXPECT_TRUE(LoadSigningKey(dir_.path() / "sec1.key", "sec1"));
}

TEST_F(OpenSslInterop, OurSignaturesVerifyWithOpenSsl) {
  for (const std::string alg : {"EdDSA", "ES256"}) {
    auto key = test::MakeTestKey(dir_.path() / "keys", dir_.path() / "trust", "ours-" + std::string(alg == "EdDSA" ? "ed" : "ec"), alg);
    Run("openssl pkey -in " + key.private_pem.string() + " -noout");  // our PKCS#8 parses
    auto env = json::parse(test::SignPayload(payload_, {key.key}));
    const auto& s = env["signatures"][0];
    std::string input = s["protected"].get<std::string>() + "." + env["payload"].get<std::string>();
    std::string sig = Base64UrlDecode(s["signature"].get<std::string>()).value();
    test::Spit(dir_.path() / "input", input);
    test::Spit(dir_.path() / "bad-input", input + "x");
    std::string verify;
    if (alg == "EdDSA") {
      test::Spit(dir_.path() / "sig", sig);
      verify = "openssl pkeyutl -verify -pubin -inkey " + key.public_pem.string() +
               " -rawin -sigfile sig -in ";
    } else {
      test::Spit(dir_.path() / "sig", RawToDer(sig));
      Run("openssl dgst -sha256 -binary -out input.dgst input"
          " && openssl dgst -sha256 -binary -out bad-input.dgst bad-input");
      verify = "openssl pkeyutl -verify -pubin -inkey " + key.public_pem.string() +
               " -sigfile sig -in ";
    }
    std::string suffix = alg == "EdDSA" ? "" : ".dgst";
    auto out = Run(verify + "input" + suffix);
    EXPECT_NE(out.find("Signature Verified Successfully"), std::string::npos) << alg << ": " << out;
    auto [rc, bad_out] = test::Sh("cd " + dir_.path().string() + " && " + verify + "bad-input" + suffix);
    EXPECT_NE(rc, 0) << alg << ": openssl accepted a signature over other bytes: " << bad_out;
  }
}
