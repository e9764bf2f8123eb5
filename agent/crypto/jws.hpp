#pragma once
// The signed envelope of docs/revision-format.md: JWS (RFC 7515) General JSON Serialization, alg EdDSA or
// ES256, kid in the protected header, a threshold of distinct trusted keys.
//
// Error codes (sent on the wire in replies and WONTGO events):
//   bad_envelope   not a General JSON JWS: missing/mistyped members, bad base64url, a protected
//                  header that is not a JSON object with string "alg" and "kid", "crit" present,
//                  alg/kid outside the protected header, an alg other than EdDSA/ES256, more
//                  than kMaxSignatures signatures.
//   bad_signature  a signature by a trusted kid that does not verify (tampered payload or
//                  header, wrong key), or whose alg does not match that key's type.
//   untrusted_kid  no signature at all is by a trusted kid.
//   threshold      fewer than `threshold` distinct trusted kids have a valid signature.
// Precedence for mixed envelopes: the whole envelope is checked for structure first
// (bad_envelope); then any invalid signature from a trusted kid fails the envelope
// (bad_signature) even if enough other signatures are valid — a trusted key that does not sign
// these bytes means someone altered them. Signatures by unknown kids are skipped. Then, with
// zero valid trusted signatures and at least one unknown kid → untrusted_kid; otherwise too few
// distinct valid kids → threshold. A kid that signs twice counts once.
#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "crypto/keys.hpp"

namespace gantry::crypto {

inline constexpr size_t kMaxSignatures = 64;

class TrustStore {
 public:
  // Every `<kid>.pem` (SPKI PEM, Ed25519 or P-256) in dir. Files not ending in .pem, and .pem
  // files whose stem is not a safe name, are skipped with a log line. A `<kid>.pem` that does
  // not hold a usable public key fails the load ("bad_key", naming the file): a broken trust
  // directory must be noticed, not silently shrink. A missing directory is "io"; an empty one
  // is a store of size 0 (every envelope is then untrusted_kid).
  static Expected<TrustStore> LoadDir(const std::filesystem::path& dir);

  ExpectedVoid Add(const std::string& kid, std::string_view spki_pem);
  size_t size() const { return keys_.size(); }
  const PublicKey* Find(std::string_view kid) const;
  std::vector<std::string> Kids() const;

 private:
  std::map<std::string, PublicKey, std::less<>> keys_;
};

struct SignatureInfo {
  std::string alg;
  std::string kid;
};

// The decoded envelope, structure checked, nothing verified.
struct Envelope {
  std::string payload;  // the decoded payload bytes
  std::vector<SignatureInfo> signatures;
};

struct Verified {
  std::string payload;            // the decoded payload bytes
  std::vector<std::string> kids;  // distinct trusted kids with a valid signature, sorted
};

// Structure only (code bad_envelope): for `gantryctl state inspect`, which says it did not
// verify. Never use the payload of this for anything that acts on it.
Expected<Envelope> DecodeJwsUnverified(const nlohmann::json& envelope);

// threshold < 1 is treated as 1.
Expected<Verified> VerifyJws(const nlohmann::json& envelope, const TrustStore& trust,
                             int threshold);

// One signature per key, protected header {"alg", "kid"}; returns the envelope JSON text.
// Keys must have distinct kids ("bad_key").
Expected<std::string> SignJws(std::string_view payload, const std::vector<SigningKey>& keys);

}  // namespace gantry::crypto
