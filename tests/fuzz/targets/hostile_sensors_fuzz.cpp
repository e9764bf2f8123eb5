// Hostile sensors against the relay engine and its job store (docs/relay.md): each input is a
// sequence of up to 64 steps decoded from the fuzzer's bytes, each step one of
//   hello  from one of 12 sensor ids (or a fresh id), any model/seq/slot/chunk/window/result,
//          sometimes with a field missing or of the wrong type;
//   status for the job the sensor was offered (or any wire id), any state/result/offset;
//   get    for the job the sensor was offered (or any wire id), served by a fake transport
//          the way relay-mqtt serves it: from the jobs the engine handed it, by (job, sensor);
//   tick   with the clock moved forward (job time-outs);
//   a new revision (the firmware set replaced).
// After every step the engine's promises are checked, and a violation aborts:
//   - at most max_concurrent jobs are servable, with distinct wire ids;
//   - a get is served only for a job the store holds open and active for that very sensor;
//   - at most max_sensors sensors are tracked and max_listed listed;
//   - every progress event is an object with a known status.
// Unlike relay_fuzz (events as JSON lines), the bytes here choose the steps, so long
// hello → offer → get → status → time-out sequences are reached at once.
#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "relay/job_state.hpp"
#include "relay/job_store.hpp"
#include "relay/relay_engine.hpp"
#include "relay/transport.hpp"
#include "store/db.hpp"

namespace {

using nlohmann::json;
using gantry::relay::RelayEngine;

constexpr int kMaxConcurrent = 2;
constexpr int kMaxSensors = 8;
constexpr int kMaxListed = 4;

// What a transport is told, kept so that gets can be served as relay-mqtt serves them.
class FakeTransport : public gantry::relay::Transport {
 public:
  const std::string& Name() const override { return name_; }
  gantry::ExpectedVoid Offer(const std::string& sensor, const json& offer) override {
    if (!offer.is_object() || !offer.contains("job")) std::abort();
    offers[sensor] = offer["job"].get<std::int64_t>();
    return {};
  }
  gantry::ExpectedVoid ClearOffer(const std::string& sensor) override {
    offers.erase(sensor);
    return {};
  }
  gantry::ExpectedVoid SendCmd(const std::string&, const json& cmd) override {
    if (!cmd.is_object() || !cmd.contains("op")) std::abort();
    return {};
  }
  gantry::ExpectedVoid SetImages(const json& images) override {
    jobs.clear();
    std::set<std::int64_t> wires;
    for (const auto& j : images.at("jobs")) {
      auto wire = j.at("job").get<std::int64_t>();
      if (!wires.insert(wire).second) std::abort();  // two servable jobs with one wire id
      jobs[wire] = j.at("sensor").get<std::string>();
    }
    if (jobs.size() > static_cast<std::size_t>(kMaxConcurrent)) std::abort();
    return {};
  }
  gantry::ExpectedVoid UpdateJobs(const json& delta) override {
    for (const auto& id : delta.at("remove")) jobs.erase(id.get<std::int64_t>());
    for (const auto& j : delta.at("add")) {
      auto wire = j.at("job").get<std::int64_t>();
      if (!jobs.emplace(wire, j.at("sensor").get<std::string>()).second) std::abort();  // one wire id, two jobs
    }
    if (jobs.size() > static_cast<std::size_t>(kMaxConcurrent)) std::abort();
    return {};
  }
  gantry::Expected<json> Stats() override { return json::object(); }

  // relay-mqtt's rule: a get names a job; it is served only to the sensor the job is for.
  bool Serves(const std::string& sensor, std::int64_t wire) const {
    auto it = jobs.find(wire);
    return it != jobs.end() && it->second == sensor;
  }

  std::map<std::string, std::int64_t> offers;  // sensor → wire id of its retained offer
  std::map<std::int64_t, std::string> jobs;    // servable wire id → sensor

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

gantry::relay::Firmware Fw(const std::string& model, char sha, std::uint64_t size, std::int64_t seq) {
  gantry::relay::Firmware fw;
  fw.model = model;
  fw.sha256 = std::string(64, sha);
  fw.size = size;
  fw.version = "v" + std::to_string(seq);
  fw.seq = seq;
  fw.image = "/nonexistent/firmware.bin";
  return fw;
}

// A value for a message field: usually of the right type, sometimes not, sometimes missing.
void Field(FuzzedDataProvider& in, json& msg, const char* key, json good) {
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: return;  // missing
    case 1: msg[key] = "x"; return;
    case 2: msg[key] = -1; return;
    case 3: msg[key] = json::array(); return;
    default: msg[key] = std::move(good);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gantry::log::SetLevel(gantry::log::Level::kError);
  auto& db = Store();
  if (!db.Exec("DELETE FROM relay_jobs; DELETE FROM relay_sensors; DELETE FROM sqlite_sequence;"))
    std::abort();
  FuzzedDataProvider in(data, size);

  auto owned = std::make_unique<FakeTransport>();
  FakeTransport& transport = *owned;
  std::vector<std::unique_ptr<gantry::relay::Transport>> transports;
  transports.push_back(std::move(owned));
  gantry::relay::Limits limits;
  limits.max_concurrent = kMaxConcurrent;
  limits.job_timeout = std::chrono::seconds(10);
  limits.max_sensors = kMaxSensors;
  limits.max_listed = kMaxListed;
  RelayEngine engine(db, std::move(transports), limits, [](const json& event) {
    if (!event.is_object() || !event.contains("status") || !event["status"].is_string()) std::abort();
    if (!gantry::relay::JobStateFromName(event["status"].get<std::string>())) std::abort();
    (void)event.dump();  // published upstream as is: must be valid UTF-8
  });
  gantry::relay::JobStore store(db);
  if (!engine.SetFirmware("rev-1", {Fw("th", 'a', 4096, 5), Fw("big", 'b', 1 << 20, 2)})) std::abort();

  auto now = RelayEngine::Clock::now();
  int fresh = 0;
  for (int step = 0; step < 64 && in.remaining_bytes() > 0; ++step) {
    std::string sensor = in.ConsumeBool() ? "s" + std::to_string(in.ConsumeIntegralInRange<int>(0, 11))
                                          : "f" + std::to_string(fresh++);
    // The job the sensor was offered, or a guess.
    auto offered = transport.offers.find(sensor);
    std::int64_t wire = offered != transport.offers.end() && in.ConsumeBool()
                            ? offered->second
                            : in.ConsumeIntegralInRange<std::int64_t>(-1, 70000);
    switch (in.ConsumeIntegralInRange<int>(0, 9)) {
      case 0: case 1: case 2: {  // hello
        json msg = json::object();
        Field(in, msg, "model", in.PickValueInArray({"th", "big", "zz", "../x"}));
        Field(in, msg, "version", "v" + std::to_string(in.ConsumeIntegral<std::uint8_t>()));
        Field(in, msg, "seq", in.ConsumeIntegralInRange<std::int64_t>(0, 8));
        Field(in, msg, "slot", in.PickValueInArray<std::int64_t>({0, 4095, 4096, 1 << 22}));
        Field(in, msg, "max_chunk", in.PickValueInArray<std::int64_t>({0, 63, 64, 512, 1 << 30}));
        Field(in, msg, "window", in.ConsumeIntegralInRange<std::int64_t>(0, 100));
        Field(in, msg, "state", in.ConsumeIntegralInRange<std::int64_t>(0, 5));
        Field(in, msg, "result", in.PickValueInArray<std::int64_t>({0, 1, 8, 9}));
        engine.OnTransportEvent({{"type", "relay.hello"}, {"transport", "mqtt"}, {"sensor", sensor}, {"msg", msg}});
        break;
      }
      case 3: case 4: case 5: {  // status
        json msg = json::object();
        Field(in, msg, "job", wire);
        Field(in, msg, "state", in.ConsumeIntegralInRange<std::int64_t>(0, 5));
        Field(in, msg, "result", in.PickValueInArray<std::int64_t>({0, 0, 0, 1, 3, 7, 8, 9}));
        Field(in, msg, "off", in.ConsumeIntegralInRange<std::int64_t>(-10, 1 << 21));
        if (in.ConsumeBool()) {
          // Valid UTF-8 only, as the plugin parsed it: ASCII and multi-byte characters.
          std::string reason;
          for (int n = in.ConsumeIntegralInRange<int>(0, 300); n > 0; --n)
            reason += in.PickValueInArray({"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x93\xa1"});
          msg["reason"] = reason;
        }
        engine.OnTransportEvent({{"type", "relay.status"}, {"transport", "mqtt"}, {"sensor", sensor}, {"msg", msg}});
        break;
      }
      case 6: case 7: {  // get: served by the transport alone, never for another sensor's job
        if (transport.Serves(sensor, wire)) {
          auto job = store.OpenJobByWire(sensor, wire);
          if (!job || !*job || !gantry::relay::IsActive((*job)->state)) std::abort();
        }
        break;
      }
      case 8:  // time passes
        now += std::chrono::seconds(in.ConsumeIntegralInRange<int>(0, 15));
        engine.Tick(now);
        break;
      case 9:  // a new revision
        if (!engine.SetFirmware("rev-" + std::to_string(step),
                                {Fw("th", in.PickValueInArray({'a', 'c'}), 4096,
                                    in.ConsumeIntegralInRange<std::int64_t>(0, 9))}))
          std::abort();
        break;
    }
    auto counts = engine.CountsJson();
    if (counts["tracked"].get<std::int64_t>() > kMaxSensors) std::abort();
    std::int64_t active = 0;
    for (const char* s : {"OFFERED", "DOWNLOADING", "DOWNLOADED", "UPDATING"})
      if (counts["jobs"].contains(s)) active += counts["jobs"][s].get<std::int64_t>();
    if (active > kMaxConcurrent) std::abort();
    if (engine.SensorsJson().size() > static_cast<std::size_t>(kMaxListed)) std::abort();
  }
  return 0;
}
