#pragma once
// Shared by every test that needs a signed revision: real keys generated with gantry's own
// crypto (the same code path as `gantryctl keygen`), a trust directory, and envelopes.
//
//   test::TempDir dir;
//   auto key = test::MakeTestKey(dir.path() / "keys", dir.path() / "trust", "ops", "EdDSA");
//   std::string envelope = test::SignRevision(revision_json, {key.key});
//   // config: trust.keys_dir = dir.path() / "trust"
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/base64url.hpp"
#include "crypto/jws.hpp"
#include "crypto/keys.hpp"

namespace gantry::test {

struct TestKey {
  std::string kid;
  std::filesystem::path private_pem;  // <keys_dir>/<kid>.key
  std::filesystem::path public_pem;   // <trust_dir>/<kid>.pem
  crypto::SigningKey key;
};

// Generates a key pair; the public half lands in trust_dir as <kid>.pem (trusted). Pass an
// unrelated trust_dir to make an untrusted key.
inline TestKey MakeTestKey(const std::filesystem::path& keys_dir,
                           const std::filesystem::path& trust_dir, const std::string& kid,
                           const std::string& alg = "EdDSA") {
  std::filesystem::create_directories(keys_dir);
  std::filesystem::create_directories(trust_dir);
  TestKey k{kid, keys_dir / (kid + ".key"), trust_dir / (kid + ".pem"), {}};
  if (auto g = crypto::GenerateKey(alg, k.private_pem, k.public_pem); !g)
    throw std::runtime_error("GenerateKey: " + g.error().String());
  auto sk = crypto::LoadSigningKey(k.private_pem, kid);
  if (!sk) throw std::runtime_error("LoadSigningKey: " + sk.error().String());
  k.key = *sk;
  return k;
}

// The envelope text for exactly these payload bytes.
inline std::string SignPayload(const std::string& payload,
                               const std::vector<crypto::SigningKey>& keys) {
  auto env = crypto::SignJws(payload, keys);
  if (!env) throw std::runtime_error("SignJws: " + env.error().String());
  return *env;
}

inline std::string SignRevision(const nlohmann::json& revision,
                                const std::vector<crypto::SigningKey>& keys) {
  return SignPayload(revision.dump(), keys);
}

inline nlohmann::json SignRevisionJson(const nlohmann::json& revision,
                                       const std::vector<crypto::SigningKey>& keys) {
  return nlohmann::json::parse(SignRevision(revision, keys));
}

// Replaces the payload of a signed envelope, keeping its signatures (a tampered update).
inline nlohmann::json WithPayload(nlohmann::json envelope, const std::string& payload) {
  envelope["payload"] = crypto::Base64UrlEncode(payload);
  return envelope;
}

}  // namespace gantry::test
