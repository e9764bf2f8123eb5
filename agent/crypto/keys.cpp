#include "crypto/keys.hpp"

#include <openssl/objects.h>
#include <openssl/pem.h>

#include <system_error>

#include "core/fs.hpp"
#include "core/names.hpp"
#include "crypto/openssl_util.hpp"

namespace gantry::crypto {

using detail::BioPtr;
using detail::BignumPtr;
using detail::EcdsaSigPtr;
using detail::MdCtxPtr;
using detail::OpenSslErrors;
using detail::PkeyPtr;

struct KeyImpl {
  PkeyPtr pkey;
};

namespace {

constexpr size_t kEs256Half = 32;  // bytes of R and of S for P-256
constexpr std::uint64_t kMaxPemBytes = 64 * 1024;

Expected<Alg> KeyAlg(EVP_PKEY* k) {
  int id = EVP_PKEY_get_base_id(k);
  if (id == EVP_PKEY_ED25519) return Alg::kEdDSA;
  if (id == EVP_PKEY_EC) {
    char name[80] = {};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(k, name, sizeof name, &len) != 1) {
      ERR_clear_error();
      return Fail("bad_key", "EC key without a named curve; only P-256 (ES256) is supported");
    }
    int nid = OBJ_sn2nid(name);
    if (nid == NID_undef) nid = EC_curve_nist2nid(name);
    if (nid == NID_X9_62_prime256v1) return Alg::kES256;
    return Fail("bad_key", std::string("EC key on curve ") + name +
                               "; only P-256 (ES256) is supported");
  }
  const char* type = EVP_PKEY_get0_type_name(k);
  return Fail("bad_key", std::string("key type ") + (type ? type : "unknown") +
                             " is not supported (Ed25519 for EdDSA, P-256 for ES256)");
}

// OpenSSL would prompt on the terminal for an encrypted key; refuse instead.
int NoPassword(char*, int, int, void*) { return 0; }

// ECDSA signatures come out of OpenSSL as DER SEQUENCE{r, s}; JWS wants R||S, 32 bytes each.
Expected<std::string> DerToRaw(const std::string& der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return Fail("crypto", "cannot decode ECDSA signature: " + OpenSslErrors());
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string raw(2 * kEs256Half, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  if (BN_bn2binpad(r, out, kEs256Half) < 0 || BN_bn2binpad(s, out + kEs256Half, kEs256Half) < 0)
    return Fail("crypto", "ECDSA signature component larger than 32 bytes");
  return raw;
}

Expected<std::string> RawToDer(std::string_view raw) {
  auto* in = reinterpret_cast<const unsigned char*>(raw.data());
  BignumPtr r(BN_bin2bn(in, kEs256Half, nullptr));
  BignumPtr s(BN_bin2bn(in + kEs256Half, kEs256Half, nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig) return Fail("crypto", "out of memory: " + OpenSslErrors());
  if (ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1)
    return Fail("crypto", "ECDSA_SIG_set0: " + OpenSslErrors());
  r.release();  // owned by sig now
  s.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return Fail("crypto", "cannot encode ECDSA signature: " + OpenSslErrors());
  std::string der(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

const EVP_MD* DigestFor(Alg alg) { return alg == Alg::kES256 ? EVP_sha256() : nullptr; }

}  // namespace

std::string_view AlgName(Alg alg) { return alg == Alg::kEdDSA ? "EdDSA" : "ES256"; }

std::optional<Alg> AlgFromName(std::string_view name) {
  if (name == "EdDSA") return Alg::kEdDSA;
  if (name == "ES256") return Alg::kES256;
  return std::nullopt;
}

Expected<PublicKey> PublicKey::FromPem(std::string_view pem) {
  auto bio = detail::MemBio(pem);
  PkeyPtr k(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, &NoPassword, nullptr) : nullptr);
  if (!k) return Fail("bad_key", "not an SPKI PEM public key: " + OpenSslErrors());
  auto alg = KeyAlg(k.get());
  if (!alg) return tl::make_unexpected(alg.error());
  PublicKey out;
  out.alg_ = *alg;
  out.impl_ = std::make_shared<const KeyImpl>(KeyImpl{std::move(k)});
  return out;
}

Expected<PublicKey> PublicKey::Load(const std::filesystem::path& file) {
  auto pem = fs::ReadFile(file, kMaxPemBytes);
  if (!pem) return tl::make_unexpected(pem.error());
  auto key = FromPem(*pem);
  if (!key) return tl::make_unexpected(key.error().WithContext(file.string()));
  return key;
}

ExpectedVoid PublicKey::Verify(std::string_view data, std::string_view jws_signature) const {
  if (jws_signature.size() != 2 * kEs256Half)  // 64 bytes for both Ed25519 and ES256
    return Fail("bad_signature", std::string(AlgName(alg_)) + " signature is " +
                                     std::to_string(jws_signature.size()) + " bytes, not 64");
  std::string der;
  std::string_view sig = jws_signature;
  if (alg_ == Alg::kES256) {
    auto d = RawToDer(jws_signature);
    if (!d) return tl::make_unexpected(d.error());
    der = std::move(*d);
    sig = der;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, DigestFor(alg_), nullptr,
                                   impl_->pkey.get()) != 1)
    return Fail("crypto", "EVP_DigestVerifyInit: " + OpenSslErrors());
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                            sig.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
  if (rc == 1) return {};
  ERR_clear_error();
  return Fail("bad_signature", std::string(AlgName(alg_)) + " signature does not verify");
}

Expected<SigningKey> SigningKey::FromPem(std::string_view pem, std::string kid) {
  if (!IsSafeName(kid)) return Fail("bad_name", "kid '" + kid + "' is not a safe name");
  auto bio = detail::MemBio(pem);
  PkeyPtr k(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, &NoPassword, nullptr) : nullptr);
  if (!k)
    return Fail("bad_key", "not an unencrypted PKCS#8 PEM private key: " + OpenSslErrors());
  auto alg = KeyAlg(k.get());
  if (!alg) return tl::make_unexpected(alg.error());
  SigningKey out;
  out.alg_ = *alg;
  out.kid_ = std::move(kid);
  out.impl_ = std::make_shared<const KeyImpl>(KeyImpl{std::move(k)});
  return out;
}

Expected<std::string> SigningKey::Sign(std::string_view data) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY* k = impl_->pkey.get();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, DigestFor(alg_), nullptr, k) != 1)
    return Fail("crypto", "EVP_DigestSignInit: " + OpenSslErrors());
  size_t len = static_cast<size_t>(EVP_PKEY_get_size(k));
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
    return Fail("crypto", "EVP_DigestSign: " + OpenSslErrors());
  sig.resize(len);
  if (alg_ == Alg::kES256) return DerToRaw(sig);
  return sig;
}

Expected<std::string> SigningKey::PublicPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), impl_->pkey.get()) != 1)
    return Fail("crypto", "PEM_write_bio_PUBKEY: " + OpenSslErrors());
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Expected<SigningKey> LoadSigningKey(const std::filesystem::path& pem_file, std::string kid) {
  auto pem = fs::ReadFile(pem_file, kMaxPemBytes);
  if (!pem) return tl::make_unexpected(pem.error());
  auto key = SigningKey::FromPem(*pem, std::move(kid));
  if (!key) return tl::make_unexpected(key.error().WithContext(pem_file.string()));
  return key;
}

ExpectedVoid GenerateKey(std::string_view alg, const std::filesystem::path& private_out,
                         const std::filesystem::path& public_out) {
  auto a = AlgFromName(alg);
  if (!a) return Fail("bad_alg", "alg '" + std::string(alg) + "' is not EdDSA or ES256");
  for (const auto& p : {private_out, public_out}) {
    std::error_code ec;
    if (std::filesystem::exists(p, ec) || ec)
      return Fail("exists", p.string() + " already exists; refusing to overwrite a key");
  }
  PkeyPtr k(*a == Alg::kEdDSA ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                              : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!k) return Fail("crypto", "key generation failed: " + OpenSslErrors());

  BioPtr priv(BIO_new(BIO_s_mem())), pub(BIO_new(BIO_s_mem()));
  if (!priv || !pub ||
      PEM_write_bio_PrivateKey(priv.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_PUBKEY(pub.get(), k.get()) != 1)
    return Fail("crypto", "cannot encode the key pair: " + OpenSslErrors());
  auto text = [](BIO* b) {
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    return std::string(data, static_cast<size_t>(n));
  };
  if (auto w = fs::WriteFileAtomic(private_out, text(priv.get()), 0600); !w) return w;
  return fs::WriteFileAtomic(public_out, text(pub.get()), 0644);
}

}  // namespace gantry::crypto
