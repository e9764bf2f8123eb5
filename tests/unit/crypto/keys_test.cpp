#include "crypto/keys.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "test_util.hpp"

using namespace gantry;
using namespace gantry::crypto;

namespace {

mode_t Mode(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0);
  return st.st_mode & 0777;
}

}  // namespace

class KeyGen : public testing::TestWithParam<std::string> {};

TEST_P(KeyGen, WritesPkcs8PrivateAndSpkiPublicThatSignAndVerify) {
  test::TempDir dir;
  auto priv = dir.path() / "k.key", pub = dir.path() / "k.pem";
  ASSERT_TRUE(GenerateKey(GetParam(), priv, pub));
  EXPECT_EQ(Mode(priv), 0600u);
  EXPECT_EQ(Mode(pub), 0644u);
  EXPECT_NE(test::Slurp(priv).find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(test::Slurp(pub).find("-----BEGIN PUBLIC KEY-----"), std::string::npos);

  auto sk = LoadSigningKey(priv, "ops-2026");
  ASSERT_TRUE(sk) << sk.error().String();
  EXPECT_EQ(AlgName(sk->alg()), GetParam());
  EXPECT_EQ(sk->kid(), "ops-2026");
  auto pk = PublicKey::Load(pub);
  ASSERT_TRUE(pk) << pk.error().String();
  EXPECT_EQ(pk->alg(), sk->alg());
  EXPECT_EQ(sk->PublicPem().value(), test::Slurp(pub));

  auto sig = sk->Sign("hello");
  ASSERT_TRUE(sig) << sig.error().String();
  EXPECT_EQ(sig->size(), 64u);  // raw R||S for ES256, the Ed25519 signature for EdDSA
  EXPECT_TRUE(pk->Verify("hello", *sig));
  auto wrong_data = pk->Verify("hellO", *sig);
  ASSERT_FALSE(wrong_data);
  EXPECT_EQ(wrong_data.error().code, "bad_signature");
  std::string flipped = *sig;
  flipped[10] = static_cast<char>(flipped[10] ^ 1);
  EXPECT_EQ(pk->Verify("hello", flipped).error().code, "bad_signature");
  EXPECT_EQ(pk->Verify("hello", sig->substr(0, 63)).error().code, "bad_signature");
}

TEST_P(KeyGen, RefusesToOverwriteAKey) {
  test::TempDir dir;
  auto priv = dir.path() / "k.key", pub = dir.path() / "k.pem";
  ASSERT_TRUE(GenerateKey(GetParam(), priv, pub));
  std::string before = test::Slurp(priv);
  auto again = GenerateKey(GetParam(), priv, dir.path() / "other.pem");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, "exists");
  EXPECT_EQ(test::Slurp(priv), before);
}

INSTANTIATE_TEST_SUITE_P(Algs, KeyGen, testing::Values("EdDSA", "ES256"));

TEST(Keys, UnknownAlgIsRefused) {
  test::TempDir dir;
  for (const char* alg : {"RS256", "eddsa", "ES384", ""}) {
    auto r = GenerateKey(alg, dir.path() / "a.key", dir.path() / "a.pem");
    ASSERT_FALSE(r) << alg;
    EXPECT_EQ(r.error().code, "bad_alg");
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "a.key"));
}

TEST(Keys, SigningKeyNeedsAPrivateKeyAndASafeKid) {
  test::TempDir dir;
  auto priv = dir.path() / "k.key", pub = dir.path() / "k.pem";
  ASSERT_TRUE(GenerateKey("EdDSA", priv, pub));
  auto from_public = LoadSigningKey(pub, "ops");
  ASSERT_FALSE(from_public);
  EXPECT_EQ(from_public.error().code, "bad_key");
  for (const char* kid : {"../etc", "Ops", "", "a/b", "-x"}) {
    auto r = LoadSigningKey(priv, kid);
    ASSERT_FALSE(r) << kid;
    EXPECT_EQ(r.error().code, "bad_name");
  }
  EXPECT_EQ(LoadSigningKey(dir.path() / "missing.key", "ops").error().code, "io");
  EXPECT_EQ(PublicKey::FromPem("not a pem").error().code, "bad_key");
  // A private key is not a public key file.
  EXPECT_EQ(PublicKey::FromPem(test::Slurp(priv)).error().code, "bad_key");
}

TEST(Keys, UnsupportedKeyTypesAreRefusedByName) {
  test::TempDir dir;
  auto [rc, out] = test::Sh("cd " + dir.path().string() +
                            " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024"
                            " -out rsa.key && openssl pkey -in rsa.key -pubout -out rsa.pem"
                            " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384"
                            " -out p384.key && openssl pkey -in p384.key -pubout -out p384.pem");
  ASSERT_EQ(rc, 0) << "openssl command line needed for this test: " << out;
  auto rsa = LoadSigningKey(dir.path() / "rsa.key", "rsa");
  ASSERT_FALSE(rsa);
  EXPECT_EQ(rsa.error().code, "bad_key");
  EXPECT_NE(rsa.error().message.find("RSA"), std::string::npos) << rsa.error().message;
  auto p384 = PublicKey::Load(dir.path() / "p384.pem");
  ASSERT_FALSE(p384);
  EXPECT_EQ(p384.error().code, "bad_key");
  EXPECT_NE(p384.error().message.find("secp384r1"), std::string::npos) << p384.error().message;
}

TEST(Keys, EncryptedPrivateKeyIsRefusedWithoutPrompting) {
  test::TempDir dir;
  auto [rc, out] = test::Sh("cd " + dir.path().string() +
                            " && openssl genpkey -algorithm ed25519 -aes256 -pass pass:secret"
                            " -out enc.key </dev/null");
  ASSERT_EQ(rc, 0) << out;
  auto r = LoadSigningKey(dir.path() / "enc.key", "enc");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "bad_key");
}
