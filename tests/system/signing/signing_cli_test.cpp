#include <gtest/gtest.h>
#include <sys/stat.h>

#include "crypto/base64url.hpp"
#include "crypto/jws.hpp"
#include "manifest/json_text.hpp"
#include "manifest/revision.hpp"
#include "test_util.hpp"

using namespace gantry;
using nlohmann::json;

namespace {

const std::filesystem::path kStates = GANTRY_STATES_DIR;

class SigningCli : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(GANTRYCTL)) << GANTRYCTL << " was not built";
  }
  // Runs gantryctl with args; returns {exit code, stdout+stderr}.
  std::pair<int, std::string> Ctl(const std::string& args) {
    return test::Sh(std::string(GANTRYCTL) + " " + args);
  }
  std::string Keys() const { return (dir_.path() / "keys").string(); }
  test::TempDir dir_;
};

}  // namespace

TEST_F(SigningCli, KeygenWritesAPrivateAndAPublicKey) {
  for (const std::string alg : {"EdDSA", "ES256"}) {
    std::string kid = alg == "EdDSA" ? "ops-ed" : "ops-ec";
    auto [rc, out] = Ctl("keygen --alg " + alg + " --kid " + kid + " --out " + Keys());
    ASSERT_EQ(rc, 0) << out;
    auto priv = dir_.path() / "keys" / (kid + ".key"), pub = dir_.path() / "keys" / (kid + ".pem");
    struct stat st {};
    ASSERT_EQ(::stat(priv.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((dir_.path() / "keys").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    // Independent check of both files' formats.
    auto [prc, pout] = test::Sh("openssl pkey -in " + priv.string() + " -noout && openssl pkey -pubin -in " +
                                pub.string() + " -noout -text");
    EXPECT_EQ(prc, 0) << pout;
    EXPECT_NE(pout.find(alg == "EdDSA" ? "ED25519" : "P-256"), std::string::npos) << pout;
    auto [again, again_out] = Ctl("keygen --alg " + alg + " --kid " + kid + " --out " + Keys());
    EXPECT_EQ(again, 2) << again_out;
    EXPECT_NE(again_out.find("already exists"), std::string::npos) << again_out;
  }
  EXPECT_EQ(Ctl("keygen --alg RS256 --kid x --out " + Keys()).first, 2);
  EXPECT_EQ(Ctl("keygen --alg EdDSA --kid ../x --out " + Keys()).first, 2);
  EXPECT_EQ(Ctl("keygen --alg EdDSA --out " + Keys()).first, 2);
}

TEST_F(SigningCli, KeygenLeavesTheModeOfAnExistingDirectory) {
  auto shared = dir_.path() / "shared";
  std::filesystem::create_directories(shared);
  ::chmod(shared.c_str(), 0755);
  auto [rc, out] = Ctl("keygen --alg EdDSA --kid ops --out " + shared.string());
  ASSERT_EQ(rc, 0) << out;
  struct stat st {};
  ASSERT_EQ(::stat(shared.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  ASSERT_EQ(::stat((shared / "ops.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(SigningCli, SignedRevisionVerifiesWithTheKeysDirectory) {
  ASSERT_EQ(Ctl("keygen --alg EdDSA --kid ops-a --out " + Keys()).first, 0);
  ASSERT_EQ(Ctl("keygen --alg ES256 --kid ops-b --out " + Keys()).first, 0);
  auto revision = kStates / "revision.json";
  auto env_file = dir_.path() / "rev.jws";
  auto [rc, out] = Ctl("sign --key " + Keys() + "/ops-a.key --kid ops-a --key " + Keys() +
                       "/ops-b.key --kid ops-b " + revision.string() + " --out " + env_file.string());
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("signed rev 42 seq 42"), std::string::npos) << out;

  // The keys directory doubles as a trust directory: *.key files are skipped.
  auto trust = crypto::TrustStore::LoadDir(dir_.path() / "keys");
  ASSERT_TRUE(trust) << trust.error().String();
  auto env = manifest::ParseJsonText(test::Slurp(env_file));
  ASSERT_TRUE(env) << env.error().String();
  auto v = crypto::VerifyJws(*env, *trust, 2);
  ASSERT_TRUE(v) << v.error().String();
  EXPECT_EQ(v->payload, test::Slurp(revision));  // the file's bytes, untouched
  EXPECT_EQ(v->kids, (std::vector<std::string>{"ops-a", "ops-b"}));

  // To stdout by default.
  auto [rc2, out2] = test::Sh("(" + std::string(GANTRYCTL) + " sign --key " + Keys() +
                              "/ops-a.key " + revision.string() + " 2>/dev/null)");
  ASSERT_EQ(rc2, 0);
  auto env2 = manifest::ParseJsonText(out2);
  ASSERT_TRUE(env2) << out2;
  EXPECT_TRUE(crypto::VerifyJws(*env2, *trust, 1));
}

TEST_F(SigningCli, SignRefusesBadInput) {
  ASSERT_EQ(Ctl("keygen --alg EdDSA --kid ops --out " + Keys()).first, 0);
  std::string key = Keys() + "/ops.key";
  auto rev = json::parse(test::Slurp(kStates / "revision.json"));

  test::Spit(dir_.path() / "garbage.json", "{not json");
  auto [rc, out] = Ctl("sign --key " + key + " " + (dir_.path() / "garbage.json").string());
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("bad_revision"), std::string::npos) << out;

  json incomplete = rev;
  incomplete["objects"].erase(incomplete["objects"].begin());
  test::Spit(dir_.path() / "incomplete.json", incomplete.dump());
  auto [rc2, out2] = Ctl("sign --key " + key + " " + (dir_.path() / "incomplete.json").string());
  EXPECT_EQ(rc2, 2) << out2;
  EXPECT_NE(out2.find("missing_object"), std::string::npos) << out2;

  auto good = (kStates / "revision.json").string();
  EXPECT_EQ(Ctl("sign --key " + key + " --kid a --kid b " + good).first, 2);
  EXPECT_EQ(Ctl("sign --key " + key + " --kid Bad " + good).first, 2);
  EXPECT_EQ(Ctl("sign --key " + Keys() + "/ops.pem " + good).first, 2);  // a public key
  EXPECT_EQ(Ctl("sign --key " + Keys() + "/none.key " + good).first, 2);
  EXPECT_EQ(Ctl("sign --key " + key + " --key " + key + " " + good).first, 2);  // one kid twice
}

TEST_F(SigningCli, InspectReadsStatesRevisionsAndEnvelopes) {
  auto [rc, out] = Ctl("state inspect " + (kStates / "pvr-real.json").string());
  ASSERT_EQ(rc, 0) << out;
  for (const char* s : {"kind: bare state", "pv-avahi", "webapp", "th-sensor", "bsp/kernel.img",
                        "network-mapping.json: not acted on", "containers (start order): 2"})
    EXPECT_NE(out.find(s), std::string::npos) << s << "\n" << out;

  auto [erc, eout] = Ctl("state inspect " + (kStates / "empty.json").string());
  EXPECT_EQ(erc, 0) << eout;
  EXPECT_NE(eout.find("containers (start order): 0"), std::string::npos) << eout;

  auto [rrc, rout] = Ctl("state inspect " + (kStates / "revision.json").string());
  EXPECT_EQ(rrc, 0) << rout;
  EXPECT_NE(rout.find("kind: revision document"), std::string::npos) << rout;
  EXPECT_NE(rout.find("rev: 42  seq: 42"), std::string::npos) << rout;

  ASSERT_EQ(Ctl("keygen --alg EdDSA --kid ops --out " + Keys()).first, 0);
  auto env_file = dir_.path() / "rev.jws";
  ASSERT_EQ(Ctl("sign --key " + Keys() + "/ops.key " + (kStates / "revision.json").string() +
                " --out " + env_file.string()).first, 0);
  auto [vrc, vout] = Ctl("state inspect " + env_file.string());
  EXPECT_EQ(vrc, 0) << vout;
  EXPECT_NE(vout.find("signatures NOT verified"), std::string::npos) << vout;
  EXPECT_NE(vout.find("kid ops  alg EdDSA"), std::string::npos) << vout;
  EXPECT_NE(vout.find("webapp"), std::string::npos) << vout;
}

TEST_F(SigningCli, InspectFailsWithAPreciseError) {
  auto write = [&](const std::string& name, const std::string& text) {
    test::Spit(dir_.path() / name, text);
    return (dir_.path() / name).string();
  };
  struct Case {
    std::string file, needle;
  };
  std::vector<Case> cases = {
      {write("broken.json", "{\"#spec\": "), "bad_json"},
      {write("deep.json", std::string(200, '[') + std::string(200, ']')), "nested deeper"},
      {write("badname.json", R"({"#spec":"pantavisor-service-system@1","Web/run.json":{"name":"Web"}})"), "bad_name"},
      {write("docker.json", R"({"#spec":"pantavisor-service-system@1","w/run.json":{"#spec":"service-manifest-run@1","name":"w","type":"docker"}})"), "lxc"},
      {write("badblock.json", R"({"#spec":"pantavisor-service-system@1","w/root.squashfs":"abc"})"), "bad_block_id"},
      {write("badrev.json", R"({"rev":"1","seq":0,"targets":["gw"],"state":{"#spec":"pantavisor-service-system@1"}})"), "seq"},
      {write("badenv.json", R"({"payload":"e30=","signatures":[]})"), "bad_envelope"},
      {(dir_.path() / "missing.json").string(), "missing.json"},
  };
  for (const auto& c : cases) {
    auto [rc, out] = Ctl("state inspect " + c.file);
    EXPECT_EQ(rc, 2) << c.file << "\n" << out;
    EXPECT_NE(out.find("error: "), std::string::npos) << out;
    EXPECT_NE(out.find(c.needle), std::string::npos) << c.needle << "\n" << out;
  }
  auto bsp = Ctl("state inspect --bsp reject " + (kStates / "pvr-real.json").string());
  EXPECT_EQ(bsp.first, 2) << bsp.second;
  EXPECT_NE(bsp.second.find("bsp/"), std::string::npos) << bsp.second;
}

TEST_F(SigningCli, HelpHasAnExampleForEveryCommand) {
  for (const char* cmd : {"keygen", "sign", "state inspect"}) {
    auto [rc, out] = Ctl(std::string(cmd) + " --help");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("Example:"), std::string::npos) << cmd << "\n" << out;
  }
}
