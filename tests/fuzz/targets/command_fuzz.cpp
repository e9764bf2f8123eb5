// The command envelope (docs/protocol.md) as it arrives on G/cmd: any bytes, at most 64 KiB here.
// Parse must return a value or a rejection, and the reply built from either must be valid JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "command/command.hpp"
#include "core/log.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gantry::log::SetLevel(gantry::log::Level::kError);
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  auto parsed = gantry::command::Parse(payload);
  std::string reply = parsed ? gantry::command::Reply(parsed->id, {})
                             : gantry::command::Reply(parsed.error().id,
                                                      tl::unexpected(parsed.error().error));
  // The reply goes back on the wire: it must always be one JSON object.
  if (!nlohmann::json::parse(reply, nullptr, false).is_object()) std::abort();
  return 0;
}
