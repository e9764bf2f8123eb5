#pragma once
// Streaming SHA-256 (block ids, manifests, firmware images). No OpenSSL header leaks out.
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace gantry::digest {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void Update(const void* data, size_t size);
  // Lowercase hex of the digest; the object starts over afterwards.
  std::string FinalHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string Sha256Hex(const void* data, size_t size);
inline std::string Sha256Hex(std::string_view data) { return Sha256Hex(data.data(), data.size()); }
Expected<std::string> Sha256File(const std::filesystem::path& path);

}  // namespace gantry::digest
