// The sensors' hello/status messages (docs/protocol.md). The MQTT plugin only checks that a message is
// a JSON object of at most 4 KiB before posting it as an event; every field is read by
// RelayEngine::OnTransportEvent, which is not separable from the engine, so the engine runs
// here whole: an in-memory store, one firmware image, and a transport that accepts everything.
// An input is up to 16 lines, each one event as the plugin posts it:
//   {"type": "relay.hello"|"relay.status", "transport": "mqtt", "sensor": id, "msg": {...}}
// so that sequences (hello, then statuses for the offered job) are reachable. Longer lines are
// skipped: the plugin drops messages over 4 KiB before they become events. The store is
// emptied before each input to keep runs reproducible.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "relay/relay_engine.hpp"
#include "relay/transport.hpp"
#include "store/db.hpp"

namespace {

using nlohmann::json;

constexpr std::size_t kMaxEventBytes = 4096 + 256;  // the plugin's message cap + the wrapper

class AcceptingTransport : public gantry::relay::Transport {
 public:
  const std::string& Name() const override { return name_; }
  gantry::ExpectedVoid Offer(const std::string&, const json&) override { return {}; }
  gantry::ExpectedVoid ClearOffer(const std::string&) override { return {}; }
  gantry::ExpectedVoid SendCmd(const std::string&, const json&) override { return {}; }
  gantry::ExpectedVoid SetImages(const json&) override { return {}; }
  gantry::ExpectedVoid UpdateJobs(const json&) override { return {}; }
  gantry::Expected<json> Stats() override { return json::object(); }

 private:
  std::string name_ = "mqtt";
};

gantry::store::Db& Store() {
  static gantry::store::Db db = [] {
    auto d = gantry::store::Db::OpenBare(":memory:");
    if (!d || !d->Migrate()) std::abort();
    return std::move(*d);
  }();
  return db;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gantry::log::SetLevel(gantry::log::Level::kError);
  auto& db = Store();
  if (!db.Exec("DELETE FROM relay_jobs; DELETE FROM relay_sensors; DELETE FROM sqlite_sequence;"))
    std::abort();
  std::vector<std::unique_ptr<gantry::relay::Transport>> transports;
  transports.push_back(std::make_unique<AcceptingTransport>());
  gantry::relay::RelayEngine engine(db, std::move(transports), gantry::relay::Limits{2}, [](const json& event) {
    if (!event.is_object()) std::abort();
    (void)event.dump();  // published upstream as is
  });
  gantry::relay::Firmware fw;
  fw.model = "th-1";
  fw.sha256 = std::string(64, 'a');
  fw.size = 4096;
  fw.version = "2.0.0";
  fw.seq = 5;
  fw.image = "/nonexistent/firmware.bin";
  if (!engine.SetFirmware("rev-1", {fw})) std::abort();

  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (int line = 0; line < 16 && !input.empty(); ++line) {
    auto end = input.find('\n');
    auto text = input.substr(0, end);
    input = end == std::string_view::npos ? std::string_view() : input.substr(end + 1);
    if (text.size() > kMaxEventBytes) continue;
    auto event = json::parse(text, nullptr, false);
    if (event.is_discarded()) continue;
    engine.OnTransportEvent(event);
  }
  (void)engine.SensorsJson().dump();
  return 0;
}
