// Prints a C++ parser's verdict on each file named on the command line, one line each, for
// check_schemas.py to compare with the matching schema's verdict:
//   verdict config FILE...   "ok" or "error<TAB>message"       (config::Load)
//   verdict command FILE...  "ok<TAB>reply" or "error<TAB>reply" (command::Parse; the reply
//                            the agent would send, which must match reply.schema.json)
//   verdict jws FILE...      "ok" or "error<TAB>message"       (crypto::DecodeJwsUnverified)
//   verdict revision FILE... "ok" or "error<TAB>code: message" (manifest::ParseRevision)
//   verdict state FILE...    "ok" or "error<TAB>code: message" (manifest::ParseState)
//   verdict jws-sign DIR     one line: an envelope signed with a fresh Ed25519 and a fresh
//                            P-256 key (written to DIR), as gantryctl sign makes them
//   verdict jws-verify KEYS_DIR THRESHOLD FILE
//                            "ok<TAB>kids" or "error<TAB>code: message" (crypto::VerifyJws
//                            with the agent's trust store; exit 0 only when it verifies);
//                            tests/docs checks the documented openssl signing example with it
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "command/command.hpp"
#include "config/config.hpp"
#include "core/fs.hpp"
#include "crypto/jws.hpp"
#include "crypto/keys.hpp"
#include "manifest/revision.hpp"
#include "manifest/state.hpp"

namespace {

std::string OneLine(std::string s) {
  for (auto& ch : s)
    if (ch == '\n' || ch == '\t') ch = ' ';
  return s;
}

void Config(const char* file) {
  auto c = gantry::config::Load(file);
  std::cout << (c ? "ok" : "error\t" + OneLine(c.error().message)) << "\n";
}

void Command(const char* file) {
  auto text = gantry::fs::ReadFile(file);
  if (!text) {
    std::cout << "error\tunreadable: " << OneLine(text.error().message) << "\n";
    return;
  }
  auto c = gantry::command::Parse(*text);
  if (c)
    std::cout << "ok\t" << gantry::command::Reply(c->id, {}) << "\n";
  else
    std::cout << "error\t" << gantry::command::Reply(c.error().id, gantry::Unexpected(c.error().error))
              << "\n";
}

void Jws(const char* file) {
  auto text = gantry::fs::ReadFile(file);
  if (!text) {
    std::cout << "error\tunreadable: " << OneLine(text.error().message) << "\n";
    return;
  }
  auto doc = nlohmann::json::parse(*text, nullptr, false);
  auto env = gantry::crypto::DecodeJwsUnverified(doc);
  std::cout << (env ? "ok" : "error\t" + OneLine(env.error().message)) << "\n";
}

template <class Parse>
void Manifest(const char* file, Parse parse) {
  auto text = gantry::fs::ReadFile(file);
  if (!text) {
    std::cout << "error\tunreadable: " << OneLine(text.error().message) << "\n";
    return;
  }
  auto r = parse(*text);
  std::cout << (r ? "ok" : "error\t" + OneLine(r.error().String())) << "\n";
}

void Revision(const char* file) {
  Manifest(file, [](const std::string& text) { return gantry::manifest::ParseRevision(text); });
}

void State(const char* file) {
  Manifest(file, [](const std::string& text) -> gantry::Expected<gantry::manifest::State> {
    auto doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded()) return gantry::Fail("bad_state", "not JSON");
    return gantry::manifest::ParseState(doc);
  });
}

int JwsSign(const std::filesystem::path& dir) {
  std::vector<gantry::crypto::SigningKey> keys;
  for (auto [alg, kid] : {std::pair{"EdDSA", "ops-ed"}, std::pair{"ES256", "ops-p256"}}) {
    auto priv = dir / (std::string(kid) + ".key"), pub = dir / (std::string(kid) + ".pem");
    auto key = gantry::crypto::GenerateKey(alg, priv, pub).and_then(
        [&] { return gantry::crypto::LoadSigningKey(priv, kid); });
    if (!key) {
      std::cerr << key.error().String() << "\n";
      return 1;
    }
    keys.push_back(*key);
  }
  auto env = gantry::crypto::SignJws(R"({"rev":"42","seq":42})", keys);
  if (!env) {
    std::cerr << env.error().String() << "\n";
    return 1;
  }
  std::cout << OneLine(*env) << "\n";
  return 0;
}

int JwsVerify(const char* keys_dir, const char* threshold, const char* file) {
  auto trust = gantry::crypto::TrustStore::LoadDir(keys_dir);
  auto text = gantry::fs::ReadFile(file, 16u << 20);
  if (!trust || !text) {
    std::cout << "error\t" << OneLine((!trust ? trust.error() : text.error()).String()) << "\n";
    return 1;
  }
  auto doc = nlohmann::json::parse(*text, nullptr, false);
  auto v = gantry::crypto::VerifyJws(doc, *trust, std::atoi(threshold));
  if (!v) {
    std::cout << "error\t" << OneLine(v.error().String()) << "\n";
    return 1;
  }
  std::cout << "ok";
  for (const auto& kid : v->kids) std::cout << "\t" << kid;
  std::cout << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "jws-sign" && argc == 3) return JwsSign(argv[2]);
  if (mode == "jws-verify" && argc == 5) return JwsVerify(argv[2], argv[3], argv[4]);
  void (*each)(const char*) = mode == "config"    ? Config
                              : mode == "command" ? Command
                              : mode == "jws"     ? Jws
                              : mode == "revision" ? Revision
                              : mode == "state"   ? State
                                                  : nullptr;
  if (!each) {
    std::cerr << "usage: verdict config|command|jws|revision|state FILE... | verdict jws-sign DIR\n";
    return 2;
  }
  for (int i = 2; i < argc; ++i) each(argv[i]);
  return 0;
}
