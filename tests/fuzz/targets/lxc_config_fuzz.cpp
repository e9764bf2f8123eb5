// The LXC config reader and allow-list (docs/container-isolation.md) on any bytes. Properties
// checked on every input: a config that reads contains no byte liblxc could read differently
// (NUL, CR, other control bytes); the canonical text Gantry writes reads back as exactly the
// same pairs; what the allow-list accepts is a subset of what was read, without owned keys.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "manifest/lxc_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gantry::manifest;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto pairs = ReadLxcConfig(text);
  if (!pairs) return 0;
  for (char c : text)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') || c == 0x7f) std::abort();
  auto again = ReadLxcConfig(WriteLxcConfig(*pairs));
  if (!again || *again != *pairs) std::abort();
  auto checked = CheckLxcConfig(text, {});
  if (checked) {
    for (auto& p : *checked)
      if (IsOwnedLxcKey(p.key) || IsGantryOnlyLxcKey(p.key)) std::abort();
    if (checked->size() > pairs->size()) std::abort();
  }
  return 0;
}
