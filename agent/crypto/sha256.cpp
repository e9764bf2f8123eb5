#include "crypto/sha256.hpp"

#include <openssl/evp.h>

#include <cstdlib>

#include "core/hex.hpp"

namespace gantry::crypto {

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_Digest fails only on allocation failure; there is no sensible hash to return then.
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) std::abort();
  return ToHex(md, len);
}

}  // namespace gantry::crypto
