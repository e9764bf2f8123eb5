#pragma once
// Private to crypto/: owning handles for OpenSSL objects and error-queue draining.
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

namespace gantry::crypto::detail {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
template <class T, void (*F)(T*)>
using CPtr = std::unique_ptr<T, Deleter<T, F>>;

inline void FreeBio(BIO* b) { BIO_free_all(b); }

using PkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using PkeyCtxPtr = CPtr<EVP_PKEY_CTX, &EVP_PKEY_CTX_free>;
using MdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using BioPtr = CPtr<BIO, &FreeBio>;
using EcdsaSigPtr = CPtr<ECDSA_SIG, &ECDSA_SIG_free>;
using BignumPtr = CPtr<BIGNUM, &BN_free>;

// Drains OpenSSL's thread-local error queue into one line, so no stale error leaks into a
// later, unrelated call.
inline std::string OpenSslErrors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

inline BioPtr MemBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

}  // namespace gantry::crypto::detail
