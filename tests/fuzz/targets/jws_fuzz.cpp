// The signed revision envelope (docs/revision-format.md): a General JSON JWS checked against a fixed trust
// store of one Ed25519 and one P-256 key (kids "ed" and "p256"; the private halves made the
// valid seeds in ../corpus/jws). Thresholds 1 and 2 are both tried so that the multi-signature
// paths run.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "command/command.hpp"
#include "core/log.hpp"
#include "crypto/jws.hpp"

namespace {

constexpr std::string_view kEdPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEARF7syy3FS/E8gqhe73CV/2TkhOil7IDtT+RTAd0CADM=\n"
    "-----END PUBLIC KEY-----\n";
constexpr std::string_view kP256Pem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQcWGdPMxoDUEXeeDN9FKhn1ZjACf\n"
    "Wcou/K6l0CBEc8PmKCoESrJdITqNjxZ56qVl9MGyIyd0lsNifaWwPhqNmQ==\n"
    "-----END PUBLIC KEY-----\n";

const gantry::crypto::TrustStore& Trust() {
  static const gantry::crypto::TrustStore trust = [] {
    gantry::crypto::TrustStore t;
    if (!t.Add("ed", kEdPem) || !t.Add("p256", kP256Pem)) std::abort();
    return t;
  }();
  return trust;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gantry::log::SetLevel(gantry::log::Level::kError);
  // The envelope reaches VerifyJws the way the agent gets it: through the capped parser.
  auto doc = gantry::command::ParseCapped(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!doc) return 0;
  auto one = gantry::crypto::VerifyJws(*doc, Trust(), 1);
  auto two = gantry::crypto::VerifyJws(*doc, Trust(), 2);
  // Two valid distinct signatures also satisfy one, and the payload is the same either way.
  if (two && (!one || one->payload != two->payload)) std::abort();
  (void)gantry::crypto::DecodeJwsUnverified(*doc);
  return 0;
}
