#include "crypto/jws.hpp"

#include <algorithm>
#include <set>
#include <system_error>

#include "core/log.hpp"
#include "core/names.hpp"
#include "crypto/base64url.hpp"

namespace gantry::crypto {
namespace {

// A protected header is a few dozen bytes; the cap also bounds the nesting depth the JSON
// parser could be asked to handle.
constexpr size_t kMaxProtectedBytes = 4096;

struct ParsedSignature {
  Alg alg;
  std::string kid;
  std::string signing_input;  // protected + "." + payload, exactly as sent
  std::string signature;      // decoded
};

struct ParsedEnvelope {
  std::string payload;
  std::vector<ParsedSignature> signatures;
};

Unexpected Bad(const std::string& message) { return Fail("bad_envelope", message); }

Expected<std::string> DecodeMember(const nlohmann::json& obj, const char* name,
                                   const std::string& where) {
  auto it = obj.find(name);
  if (it == obj.end()) return Bad(where + "." + name + ": missing");
  if (!it->is_string()) return Bad(where + "." + name + ": must be a string");
  auto bytes = Base64UrlDecode(it->get_ref<const std::string&>());
  if (!bytes) return Bad(where + "." + name + ": " + bytes.error().message);
  return bytes;
}

Expected<ParsedEnvelope> Parse(const nlohmann::json& env) {
  if (!env.is_object()) return Bad("envelope must be a JSON object (JWS General JSON Serialization)");
  if (!env.contains("signatures")) {
    if (env.contains("signature"))
      return Bad("flattened JWS serialization is not accepted; use General JSON (\"signatures\": [...])");
    return Bad("signatures: missing");
  }
  ParsedEnvelope out;
  auto payload = DecodeMember(env, "payload", "envelope");
  if (!payload) return tl::make_unexpected(payload.error());
  out.payload = std::move(*payload);
  const auto& payload_text = env["payload"].get_ref<const std::string&>();

  const auto& sigs = env["signatures"];
  if (!sigs.is_array() || sigs.empty()) return Bad("signatures: must be a non-empty array");
  if (sigs.size() > kMaxSignatures)
    return Bad("signatures: " + std::to_string(sigs.size()) + " entries, at most " +
               std::to_string(kMaxSignatures));
  for (size_t i = 0; i < sigs.size(); ++i) {
    const auto& s = sigs[i];
    std::string where = "signatures[" + std::to_string(i) + "]";
    if (!s.is_object()) return Bad(where + ": must be an object");
    auto protected_bytes = DecodeMember(s, "protected", where);
    if (!protected_bytes) return tl::make_unexpected(protected_bytes.error());
    auto signature = DecodeMember(s, "signature", where);
    if (!signature) return tl::make_unexpected(signature.error());
    if (protected_bytes->size() > kMaxProtectedBytes)
      return Bad(where + ".protected: larger than " + std::to_string(kMaxProtectedBytes) + " bytes");
    auto header = nlohmann::json::parse(*protected_bytes, nullptr, /*allow_exceptions=*/false);
    if (header.is_discarded() || !header.is_object())
      return Bad(where + ".protected: not a JSON object");
    if (header.contains("crit"))
      return Bad(where + ".protected: \"crit\" extensions are not supported");
    if (auto b64 = header.find("b64"); b64 != header.end() && *b64 != true)
      return Bad(where + ".protected: unencoded payloads (b64) are not supported");
    if (auto h = s.find("header"); h != s.end()) {
      if (!h->is_object()) return Bad(where + ".header: must be an object");
      if (h->contains("alg") || h->contains("kid"))
        return Bad(where + ".header: alg and kid must be in the protected header");
    }
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string())
      return Bad(where + ".protected: alg missing or not a string");
    auto alg_value = AlgFromName(alg->get_ref<const std::string&>());
    if (!alg_value)
      return Bad(where + ".protected: unknown alg '" + alg->get<std::string>() +
                 "' (EdDSA or ES256)");
    auto kid = header.find("kid");
    if (kid == header.end() || !kid->is_string())
      return Bad(where + ".protected: kid missing or not a string");
    out.signatures.push_back(ParsedSignature{
        *alg_value, kid->get<std::string>(),
        s["protected"].get_ref<const std::string&>() + "." + payload_text, std::move(*signature)});
  }
  return out;
}

}  // namespace

Expected<TrustStore> TrustStore::LoadDir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return Fail("io", "cannot read trust directory " + dir.string() + ": " + ec.message());
  TrustStore store;
  for (const auto& entry : it) {
    const auto& p = entry.path();
    if (p.extension() != ".pem" || !entry.is_regular_file(ec)) {
      log::Info("crypto", "trust directory: ignoring " + p.string() + " (not a <kid>.pem file)");
      continue;
    }
    std::string kid = p.stem().string();
    if (!IsSafeName(kid)) {
      log::Warn("crypto", "trust directory: ignoring " + p.string() + ": kid '" + kid +
                              "' is not a safe name");
      continue;
    }
    auto key = PublicKey::Load(p);
    if (!key) return tl::make_unexpected(key.error());
    store.keys_.emplace(std::move(kid), std::move(*key));
  }
  return store;
}

ExpectedVoid TrustStore::Add(const std::string& kid, std::string_view spki_pem) {
  if (!IsSafeName(kid)) return Fail("bad_name", "kid '" + kid + "' is not a safe name");
  auto key = PublicKey::FromPem(spki_pem);
  if (!key) return tl::make_unexpected(key.error().WithContext("kid " + kid));
  keys_.insert_or_assign(kid, std::move(*key));
  return {};
}

const PublicKey* TrustStore::Find(std::string_view kid) const {
  auto it = keys_.find(kid);
  return it == keys_.end() ? nullptr : &it->second;
}

std::vector<std::string> TrustStore::Kids() const {
  std::vector<std::string> out;
  for (const auto& [kid, key] : keys_) out.push_back(kid);
  return out;
}

Expected<Envelope> DecodeJwsUnverified(const nlohmann::json& envelope) {
  auto parsed = Parse(envelope);
  if (!parsed) return tl::make_unexpected(parsed.error());
  Envelope out{std::move(parsed->payload), {}};
  for (const auto& s : parsed->signatures)
    out.signatures.push_back(SignatureInfo{std::string(AlgName(s.alg)), s.kid});
  return out;
}

Expected<Verified> VerifyJws(const nlohmann::json& envelope, const TrustStore& trust,
                             int threshold) {
  auto parsed = Parse(envelope);
  if (!parsed) return tl::make_unexpected(parsed.error());
  size_t required = static_cast<size_t>(std::max(threshold, 1));
  std::set<std::string> valid;
  std::vector<std::string> unknown;
  for (const auto& s : parsed->signatures) {
    const PublicKey* key = trust.Find(s.kid);
    if (key == nullptr) {
      unknown.push_back(s.kid);
      continue;
    }
    if (key->alg() != s.alg)
      return Fail("bad_signature", "kid " + s.kid + ": alg " + std::string(AlgName(s.alg)) +
                                       " does not match its " + std::string(AlgName(key->alg())) +
                                       " key");
    if (auto ok = key->Verify(s.signing_input, s.signature); !ok)
      return tl::make_unexpected(ok.error().WithContext("kid " + s.kid));
    valid.insert(s.kid);
  }
  auto join = [](const auto& v) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
    return out;
  };
  if (valid.empty() && !unknown.empty())
    return Fail("untrusted_kid", "no signature by a trusted key; unknown kid(s): " + join(unknown));
  if (valid.size() < required)
    return Fail("threshold", std::to_string(required) + " valid signature" +
                                 (required == 1 ? "" : "s") +
                                 " from distinct trusted keys required, " +
                                 std::to_string(valid.size()) + " found" +
                                 (unknown.empty() ? "" : " (unknown kid(s): " + join(unknown) + ")"));
  return Verified{std::move(parsed->payload), std::vector<std::string>(valid.begin(), valid.end())};
}

Expected<std::string> SignJws(std::string_view payload, const std::vector<SigningKey>& keys) {
  if (keys.empty()) return Fail("bad_key", "at least one signing key is required");
  std::set<std::string> kids;
  std::string payload_b64 = Base64UrlEncode(payload);
  nlohmann::json sigs = nlohmann::json::array();
  for (const auto& k : keys) {
    if (!kids.insert(k.kid()).second)
      return Fail("bad_key", "kid " + k.kid() + " given twice; a kid signs once");
    nlohmann::json header = {{"alg", AlgName(k.alg())}, {"kid", k.kid()}};
    std::string protected_b64 = Base64UrlEncode(header.dump());
    auto sig = k.Sign(protected_b64 + "." + payload_b64);
    if (!sig) return tl::make_unexpected(sig.error().WithContext("kid " + k.kid()));
    sigs.push_back({{"protected", protected_b64}, {"signature", Base64UrlEncode(*sig)}});
  }
  nlohmann::json env = {{"payload", payload_b64}, {"signatures", std::move(sigs)}};
  return env.dump();
}

}  // namespace gantry::crypto
