#pragma once
// Ed25519 (JWS alg EdDSA) and P-256 (ES256) keys: generation, PEM loading, and signatures in
// JWS form (ES256 = raw 64-byte R||S, not DER).
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace gantry::crypto {

enum class Alg { kEdDSA, kES256 };

std::string_view AlgName(Alg alg);                      // "EdDSA", "ES256"
std::optional<Alg> AlgFromName(std::string_view name);  // exact, case-sensitive (RFC 7518)

struct KeyImpl;  // holds the EVP_PKEY; defined in keys.cpp

class PublicKey {
 public:
  // SPKI PEM ("BEGIN PUBLIC KEY"); Ed25519 or P-256 only. Code "bad_key".
  static Expected<PublicKey> FromPem(std::string_view pem);
  static Expected<PublicKey> Load(const std::filesystem::path& file);

  Alg alg() const { return alg_; }
  // Checks a JWS signature over data. Code "bad_signature" when it does not verify.
  ExpectedVoid Verify(std::string_view data, std::string_view jws_signature) const;

 private:
  std::shared_ptr<const KeyImpl> impl_;
  Alg alg_ = Alg::kEdDSA;
};

class SigningKey {
 public:
  // PKCS#8 PEM ("BEGIN PRIVATE KEY"); the alg follows from the key type. kid must be a safe
  // name. Codes "bad_key", "bad_name".
  static Expected<SigningKey> FromPem(std::string_view pem, std::string kid);

  const std::string& kid() const { return kid_; }
  Alg alg() const { return alg_; }
  // A JWS signature over data (raw R||S for ES256).
  Expected<std::string> Sign(std::string_view data) const;
  // The matching public key, SPKI PEM.
  Expected<std::string> PublicPem() const;

 private:
  std::shared_ptr<const KeyImpl> impl_;
  Alg alg_ = Alg::kEdDSA;
  std::string kid_;
};

Expected<SigningKey> LoadSigningKey(const std::filesystem::path& pem_file, std::string kid);

// Writes a fresh key pair: private_out (PKCS#8 PEM, mode 0600) and public_out (SPKI PEM,
// 0644). alg is "EdDSA" or "ES256". Refuses to overwrite an existing file (code "exists").
ExpectedVoid GenerateKey(std::string_view alg, const std::filesystem::path& private_out,
                         const std::filesystem::path& public_out);

}  // namespace gantry::crypto
