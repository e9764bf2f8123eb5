// The revision document and the Pantavisor state inside it (docs/revision-format.md), as a verified JWS
// payload: any bytes. Parsed under both BSP policies; what parses is then checked the way the
// agent checks it (objects complete, applicable to this device).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/log.hpp"
#include "manifest/revision.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gantry::manifest;
  gantry::log::SetLevel(gantry::log::Level::kError);
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  for (auto bsp : {BspPolicy::kIgnore, BspPolicy::kReject}) {
    auto revision = ParseRevision(payload, StateOptions{bsp});
    if (!revision) continue;
    (void)CheckRevision(*revision);
    (void)revision->ReferencedBytes();
    (void)CheckApplicable(*revision, "gw-1", {"lab"}, 1, 1700000000);
  }
  return 0;
}
