#include "digest/sha256.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "core/fs.hpp"
#include "core/hex.hpp"

namespace gantry::digest {

struct Sha256::Impl {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx{EVP_MD_CTX_new()};

  // Failure here means the process is out of memory or OpenSSL is broken: nothing sensible
  // to return, and a wrong digest must never be produced silently.
  void Init() {
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) std::abort();
  }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { impl_->Init(); }
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(const void* data, size_t size) {
  if (size > 0 && EVP_DigestUpdate(impl_->ctx.get(), data, size) != 1) std::abort();
}

std::string Sha256::FinalHex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx.get(), md, &len) != 1) std::abort();
  impl_->Init();
  return ToHex(md, len);
}

std::string Sha256Hex(const void* data, size_t size) {
  Sha256 h;
  h.Update(data, size);
  return h.FinalHex();
}

Expected<std::string> Sha256File(const std::filesystem::path& path) {
  fs::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail("io", fs::ErrnoMessage("cannot open", path));
  Sha256 h;
  std::vector<char> buf(256 * 1024);
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail("io", fs::ErrnoMessage("cannot read", path));
    }
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
  }
  return h.FinalHex();
}

}  // namespace gantry::digest
