#include "crypto/jws.hpp"

#include <gtest/gtest.h>

#include "crypto/base64url.hpp"
#include "signing_test_util.hpp"
#include "test_util.hpp"

using namespace gantry;
using namespace gantry::crypto;
using nlohmann::json;

namespace {

class Jws : public testing::Test {
 protected:
  void SetUp() override {
    ed_ = test::MakeTestKey(dir_.path() / "keys", trust_dir(), "ops-ed", "EdDSA");
    ec_ = test::MakeTestKey(dir_.path() / "keys", trust_dir(), "ops-ec", "ES256");
    stranger_ = test::MakeTestKey(dir_.path() / "keys", dir_.path() / "elsewhere", "stranger");
    auto t = TrustStore::LoadDir(trust_dir());
    ASSERT_TRUE(t) << t.error().String();
    trust_ = std::move(*t);
    ASSERT_EQ(trust_.size(), 2u);
  }
  std::filesystem::path trust_dir() const { return dir_.path() / "trust"; }

  Error VerifyError(const json& env, int threshold = 1) {
    auto r = VerifyJws(env, trust_, threshold);
    EXPECT_FALSE(r) << "verified: " << env.dump();
    return r ? Error{} : r.error();
  }

  // A signature entry with an arbitrary protected header, signed by key.
  json SignedEntry(const json& header, const std::string& payload_b64, const SigningKey& key) {
    std::string protected_b64 = Base64UrlEncode(header.dump());
    auto sig = key.Sign(protected_b64 + "." + payload_b64);
    EXPECT_TRUE(sig);
    return {{"protected", protected_b64}, {"signature", Base64UrlEncode(sig.value_or(""))}};
  }

  test::TempDir dir_;
  test::TestKey ed_, ec_, stranger_;
  TrustStore trust_;
  const std::string payload_ = R"({"rev":"42","seq":42})";
};

}  // namespace

TEST_F(Jws, SignedByEachAlgVerifies) {
  for (const auto* k : {&ed_, &ec_}) {
    auto env = test::SignRevisionJson(json::parse(payload_), {k->key});
    auto protected_header =
        json::parse(Base64UrlDecode(env["signatures"][0]["protected"].get<std::string>()).value());
    EXPECT_EQ(protected_header, json({{"alg", AlgName(k->key.alg())}, {"kid", k->kid}}));
    auto v = VerifyJws(env, trust_, 1);
    ASSERT_TRUE(v) << v.error().String();
    EXPECT_EQ(json::parse(v->payload), json::parse(payload_));
    EXPECT_EQ(v->kids, std::vector<std::string>{k->kid});
  }
}

TEST_F(Jws, PayloadBytesArePreservedExactly) {
  std::string odd = "{ \"rev\" : \"a\"  }\n";
  auto env = json::parse(test::SignPayload(odd, {ed_.key}));
  EXPECT_EQ(VerifyJws(env, trust_, 1).value().payload, odd);
}

TEST_F(Jws, TwoDistinctKeysMeetThresholdTwo) {
  auto env = json::parse(test::SignPayload(payload_, {ed_.key, ec_.key}));
  auto v = VerifyJws(env, trust_, 2);
  ASSERT_TRUE(v) << v.error().String();
  EXPECT_EQ(v->kids, (std::vector<std::string>{"ops-ec", "ops-ed"}));
  auto three = VerifyJws(env, trust_, 3);
  ASSERT_FALSE(three);
  EXPECT_EQ(three.error().code, "threshold");
  EXPECT_EQ(three.error().message, "3 valid signatures from distinct trusted keys required, 2 found");
}

TEST_F(Jws, TooFewSignaturesIsThreshold) {
  auto env = json::parse(test::SignPayload(payload_, {ed_.key}));
  auto e = VerifyError(env, 2);
  EXPECT_EQ(e.code, "threshold");
  EXPECT_EQ(e.message, "2 valid signatures from distinct trusted keys required, 1 found");
}

TEST_F(Jws, DuplicateKidCountsOnce) {
  auto env = json::parse(test::SignPayload(payload_, {ed_.key}));
  env["signatures"].push_back(env["signatures"][0]);
  // A second, freshly made signature by the same key over the same header is still one kid.
  env["signatures"].push_back(
      SignedEntry({{"alg", "EdDSA"}, {"kid", "ops-ed"}}, env["payload"], ed_.key));
  auto e = VerifyError(env, 2);
  EXPECT_EQ(e.code, "threshold");
  EXPECT_NE(e.message.find("1 found"), std::string::npos) << e.message;
  EXPECT_TRUE(VerifyJws(env, trust_, 1));
}

TEST_F(Jws, TamperedPayloadIsBadSignature) {
  auto env = json::parse(test::SignPayload(payload_, {ed_.key, ec_.key}));
  auto tampered = test::WithPayload(env, R"({"rev":"42","seq":43})");
  EXPECT_EQ(VerifyError(tampered).code, "bad_signature");
  // Re-encoding the same bytes differently is impossible: base64url is strict.
  auto one_bit = env;
  std::string p = one_bit["payload"];
  p.back() = p.back() == 'A' ? 'B' : 'A';
  one_bit["payload"] = p;
  auto e = VerifyError(one_bit);
  EXPECT_TRUE(e.code == "bad_signature" || e.code == "bad_envelope") << e.String();
}

TEST_F(Jws, TamperedSignatureOrHeaderIsBadSignature) {
  for (const auto* k : {&ed_, &ec_}) {
    auto env = json::parse(test::SignPayload(payload_, {k->key}));
    auto sig = Base64UrlDecode(env["signatures"][0]["signature"].get<std::string>()).value();
    sig[5] = static_cast<char>(sig[5] ^ 0x40);
    auto bad_sig = env;
    bad_sig["signatures"][0]["signature"] = Base64UrlEncode(sig);
    EXPECT_EQ(VerifyError(bad_sig).code, "bad_signature");
    auto short_sig = env;
    short_sig["signatures"][0]["signature"] = Base64UrlEncode(sig.substr(0, 32));
    EXPECT_EQ(VerifyError(short_sig).code, "bad_signature");
  }
  // A header claiming another trusted kid (same alg) over a signature made by ops-ed.
  auto other = test::MakeTestKey(dir_.path() / "keys", trust_dir(), "ops-ed2", "EdDSA");
  auto trust = TrustStore::LoadDir(trust_dir()).value();
  auto env = json::parse(test::SignPayload(payload_, {ed_.key}));
  env["signatures"][0]["protected"] = Base64UrlEncode(R"({"alg":"EdDSA","kid":"ops-ed2"})");
  auto r = VerifyJws(env, trust, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "bad_signature");
  EXPECT_NE(r.error().message.find("ops-ed2"), std::string::npos) << r.error().message;
}

TEST_F(Jws, UnknownKidIsUntrusted) {
  auto env = json::parse(test::SignPayload(payload_, {stranger_.key}));
  auto e = VerifyError(env);
  EXPECT_EQ(e.code, "untrusted_kid");
  EXPECT_NE(e.message.find("stranger"), std::string::npos) << e.message;
  // An unknown kid beside a valid trusted one is skipped...
  auto mixed = json::parse(test::SignPayload(payload_, {stranger_.key, ed_.key}));
  auto v = VerifyJws(mixed, trust_, 1);
  ASSERT_TRUE(v) << v.error().String();
  EXPECT_EQ(v->kids, std::vector<std::string>{"ops-ed"});
  // ...but does not count towards the threshold.
  auto e2 = VerifyError(mixed, 2);
  EXPECT_EQ(e2.code, "threshold");
  EXPECT_NE(e2.message.find("stranger"), std::string::npos) << e2.message;
  // A kid that could never be a file name is just as unknown.
  auto weird = json::parse(test::SignPayload(payload_, {ed_.key}));
  weird["signatures"][0] = SignedEntry({{"alg", "EdDSA"}, {"kid", "../ops-ed"}}, weird["payload"], ed_.key);
  EXPECT_EQ(VerifyError(weird).code, "untrusted_kid");
  // No key trusted at all.
  auto empty = TrustStore::LoadDir(dir_.path() / "keys");  // holds .key files only
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_EQ(VerifyJws(env, *empty, 1).error().code, "untrusted_kid");
}

TEST_F(Jws, AnyInvalidTrustedSignatureFailsEvenWhenOthersSuffice) {
  auto env = json::parse(test::SignPayload(payload_, {ed_.key, ec_.key}));
  auto sig = Base64UrlDecode(env["signatures"][1]["signature"].get<std::string>()).value();
  sig[0] = static_cast<char>(sig[0] ^ 1);
  env["signatures"][1]["signature"] = Base64UrlEncode(sig);
  auto e = VerifyError(env, 1);
  EXPECT_EQ(e.code, "bad_signature");
  EXPECT_NE(e.message.find("ops-ec"), std::string::npos) << e.message;
}

TEST_F(Jws, KeyTypeMustMatchAlg) {
  auto env = json::parse(test::SignPayload(payload_, {ed_.key}));
  // An ES256 header naming the Ed25519 key, signed (validly, as bytes) by that Ed25519 key.
  env["signatures"][0] = SignedEntry({{"alg", "ES256"}, {"kid", "ops-ed"}}, env["payload"], ed_.key);
  auto e = VerifyError(env);
  EXPECT_EQ(e.code, "bad_signature");
  EXPECT_NE(e.message.find("does not match"), std::string::npos) << e.message;
  env["signatures"][0] = SignedEntry({{"alg", "EdDSA"}, {"kid", "ops-ec"}}, env["payload"], ec_.key);
  EXPECT_EQ(VerifyError(env).code, "bad_signature");
}

TEST_F(Jws, ThresholdBelowOneMeansOne) {
  auto env = json::parse(test::SignPayload(payload_, {ed_.key}));
  EXPECT_TRUE(VerifyJws(env, trust_, 0));
  EXPECT_EQ(VerifyError(json::parse(test::SignPayload(payload_, {stranger_.key})), 0).code,
            "untrusted_kid");
}

TEST_F(Jws, MalformedEnvelopesAreBadEnvelope) {
  const json good = json::parse(test::SignPayload(payload_, {ed_.key}));
  const std::string p = good["payload"];
  const json sig = good["signatures"][0];
  auto with_header = [&](const json& header) {
    return json{{"payload", p}, {"signatures", {SignedEntry(header, p, ed_.key)}}};
  };
  auto with_raw_protected = [&](const std::string& raw) {
    json e = good;
    e["signatures"][0]["protected"] = Base64UrlEncode(raw);
    return e;
  };
  std::vector<std::pair<std::string, json>> cases = {
      {"array", json::array({good})},
      {"string", json("abc")},
      {"null", json()},
      {"missing payload", {{"signatures", {sig}}}},
      {"payload number", {{"payload", 1}, {"signatures", {sig}}}},
      {"payload padded", {{"payload", p + "="}, {"signatures", {sig}}}},
      {"payload bad chars", {{"payload", "a+b/"}, {"signatures", {sig}}}},
      {"missing signatures", {{"payload", p}}},
      {"flattened", {{"payload", p}, {"protected", sig["protected"]}, {"signature", sig["signature"]}}},
      {"signatures object", {{"payload", p}, {"signatures", sig}}},
      {"signatures empty", {{"payload", p}, {"signatures", json::array()}}},
      {"signature entry string", {{"payload", p}, {"signatures", {"x"}}}},
      {"protected missing", {{"payload", p}, {"signatures", {{{"signature", sig["signature"]}}}}}},
      {"signature missing", {{"payload", p}, {"signatures", {{{"protected", sig["protected"]}}}}}},
      {"signature not b64", {{"payload", p}, {"signatures", {{{"protected", sig["protected"]}, {"signature", "!!"}}}}}},
      {"protected not b64", with_raw_protected("x") /* replaced below */},
      {"protected not json", with_raw_protected("{alg:EdDSA")},
      {"protected array", with_raw_protected(R"(["EdDSA","ops-ed"])")},
      {"alg missing", with_header({{"kid", "ops-ed"}})},
      {"alg number", with_header({{"alg", 1}, {"kid", "ops-ed"}})},
      {"alg none", with_header({{"alg", "none"}, {"kid", "ops-ed"}})},
      {"alg HS256", with_header({{"alg", "HS256"}, {"kid", "ops-ed"}})},
      {"alg RS256", with_header({{"alg", "RS256"}, {"kid", "ops-ed"}})},
      {"alg lowercase", with_header({{"alg", "eddsa"}, {"kid", "ops-ed"}})},
      {"kid missing", with_header({{"alg", "EdDSA"}})},
      {"kid number", with_header({{"alg", "EdDSA"}, {"kid", 7}})},
      {"crit", with_header({{"alg", "EdDSA"}, {"kid", "ops-ed"}, {"crit", {"exp"}}, {"exp", 1}})},
      {"b64 false", with_header({{"alg", "EdDSA"}, {"kid", "ops-ed"}, {"b64", false}})},
  };
  cases[15].second["signatures"][0]["protected"] = "a+b";
  json unprotected_kid = good;
  unprotected_kid["signatures"][0]["header"] = {{"kid", "ops-ed"}};
  cases.emplace_back("kid in unprotected header", unprotected_kid);
  json too_many = good;
  for (int i = 0; i < 64; ++i) too_many["signatures"].push_back(sig);
  cases.emplace_back("65 signatures", too_many);
  for (const auto& [name, env] : cases) {
    auto r = VerifyJws(env, trust_, 1);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().code, "bad_envelope") << name << ": " << r.error().String();
    EXPECT_FALSE(r.error().message.empty()) << name;
    auto d = DecodeJwsUnverified(env);
    EXPECT_FALSE(d) << name;
  }
  // Members JWS does not define are ignored (RFC 7515 §7.2.1).
  json extra = good;
  extra["x-note"] = "hi";
  extra["signatures"][0]["header"] = {{"x5u", "ignored"}};
  EXPECT_TRUE(VerifyJws(extra, trust_, 1));
}

TEST_F(Jws, DecodeUnverifiedListsSignaturesWithoutCheckingThem) {
  auto env = test::WithPayload(json::parse(test::SignPayload(payload_, {stranger_.key, ec_.key})),
                               "tampered");
  auto d = DecodeJwsUnverified(env);
  ASSERT_TRUE(d) << d.error().String();
  EXPECT_EQ(d->payload, "tampered");
  ASSERT_EQ(d->signatures.size(), 2u);
  EXPECT_EQ(d->signatures[0].kid, "stranger");
  EXPECT_EQ(d->signatures[0].alg, "EdDSA");
  EXPECT_EQ(d->signatures[1].alg, "ES256");
}

TEST_F(Jws, SignRefusesNoKeysAndRepeatedKids) {
  EXPECT_EQ(SignJws(payload_, {}).error().code, "bad_key");
  EXPECT_EQ(SignJws(payload_, {ed_.key, ed_.key}).error().code, "bad_key");
}

TEST(TrustStore, LoadsKidPemFilesAndSkipsOthers) {
  test::TempDir dir;
  auto trust = dir.path() / "trust";
  test::MakeTestKey(dir.path() / "keys", trust, "a-1");
  test::MakeTestKey(dir.path() / "keys", trust, "b.2", "ES256");
  test::Spit(trust / "README.txt", "not a key");
  std::filesystem::copy_file(trust / "a-1.pem", trust / "Bad Name.pem");
  std::filesystem::create_directories(trust / "sub.pem");
  auto t = TrustStore::LoadDir(trust);
  ASSERT_TRUE(t) << t.error().String();
  EXPECT_EQ(t->Kids(), (std::vector<std::string>{"a-1", "b.2"}));
  ASSERT_NE(t->Find("b.2"), nullptr);
  EXPECT_EQ(t->Find("b.2")->alg(), Alg::kES256);
  EXPECT_EQ(t->Find("Bad Name"), nullptr);

  test::Spit(trust / "broken.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
  auto broken = TrustStore::LoadDir(trust);
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().code, "bad_key");
  EXPECT_NE(broken.error().message.find("broken.pem"), std::string::npos);

  auto missing = TrustStore::LoadDir(dir.path() / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "io");
}

TEST(TrustStore, AddChecksKidAndKey) {
  test::TempDir dir;
  auto k = test::MakeTestKey(dir.path() / "keys", dir.path() / "trust", "ops");
  TrustStore t;
  EXPECT_EQ(t.Add("../x", test::Slurp(k.public_pem)).error().code, "bad_name");
  EXPECT_EQ(t.Add("ops", "garbage").error().code, "bad_key");
  ASSERT_TRUE(t.Add("ops", test::Slurp(k.public_pem)));
  EXPECT_EQ(t.size(), 1u);
}
