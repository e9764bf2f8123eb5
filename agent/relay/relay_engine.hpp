#pragma once
// The downstream sensor relay (docs/protocol.md): decides which sensor gets which firmware image,
// keeps jobs in SQLite so they survive a restart, and drives each job from the sensors'
// hello/status messages. Bytes never pass through here: the transport plugin serves the
// sensor-paced pulls itself from the image files the engine hands it.
//
// Threading: owned by the agent's event-loop thread. Every method runs on that thread; plugin
// threads only post events, which the host hands to OnTransportEvent().
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "relay/transport.hpp"
#include "store/db.hpp"

namespace gantry::relay {

// One model's firmware in a revision: `_sensors/<model>/firmware.bin` + `sensor.json`.
struct Firmware {
  std::string model, sha256;
  std::uint64_t size = 0;
  std::string version;
  std::int64_t seq = 0;
  std::optional<std::string> vid, cid;
  std::vector<std::string> targets = {"*"};  // sensor ids, or "*" for every sensor of the model
  std::filesystem::path image;               // the verified block in the cache
};

// Sensor job statuses as reported upstream (P/progress "status", P/state sensors[].job.state).
// WAITING (held back by max_concurrent) and CANCELLED (superseded) are only visible in P/state.
inline constexpr const char* kOffered = "OFFERED";
inline constexpr const char* kDownloading = "DOWNLOADING";
inline constexpr const char* kDownloaded = "DOWNLOADED";
inline constexpr const char* kUpdating = "UPDATING";
inline constexpr const char* kSucceeded = "SUCCEEDED";
inline constexpr const char* kFailed = "FAILED";
inline constexpr const char* kNotApplicable = "NOT_APPLICABLE";
inline constexpr const char* kWaiting = "WAITING";
inline constexpr const char* kCancelled = "CANCELLED";

class RelayEngine {
 public:
  // A sensor progress event: {"sensor", "model", "status", "progress", "msg", "job", "seq",
  // "version"}; the agent adds id/rev/ts and publishes it on P/progress.
  using Report = std::function<void(const nlohmann::json& progress_event)>;

  // Open jobs found in the store are resumed by the first SetFirmware() (offers re-published).
  RelayEngine(store::Db& db, std::vector<std::unique_ptr<Transport>> transports,
              int max_concurrent, Report report);

  // The committed revision's sensor firmware, at start and after every commit. Open jobs whose
  // image is no longer in the revision are cancelled; every known sensor is re-evaluated.
  ExpectedVoid SetFirmware(const std::string& rev, std::vector<Firmware> firmware);

  // A plugin event, as posted through GantryHostV1::post_event:
  //   {"type": "relay.hello"|"relay.status", "transport": "mqtt", "sensor": id, "msg": {...}}
  // Malformed events are logged and dropped.
  void OnTransportEvent(const nlohmann::json& event);

  // P/state "sensors": [{"id", "model", "version", "seq", "job": {...} | null}].
  nlohmann::json SensorsJson() const;

  // Per-transport counters (frames and bytes served), for tests and diagnostics.
  Expected<nlohmann::json> TransportStats(const std::string& transport);

 private:
  struct Sensor;
  struct Job;

  void OnHello(const std::string& transport, const std::string& id, const nlohmann::json& msg);
  void OnStatus(const std::string& id, const nlohmann::json& msg);
  // Decides what the sensor should get under the current firmware set; creates, reopens or
  // marks a job NOT_APPLICABLE.
  ExpectedVoid Evaluate(const Sensor& sensor);
  // Offers WAITING jobs while fewer than max_concurrent jobs are active.
  ExpectedVoid FillSlots();
  ExpectedVoid Offer(Job& job);
  ExpectedVoid Finish(Job& job, const char* state, std::optional<int> result,
                      const std::string& reason, bool blocked);
  ExpectedVoid PushImages();
  ExpectedVoid SaveJob(const Job& job);
  void Emit(const Job& job, const std::string& status, int progress, const std::string& msg);
  Transport* TransportFor(const std::string& sensor);

  Expected<std::optional<Sensor>> LoadSensor(const std::string& id) const;
  Expected<std::vector<Sensor>> LoadSensors() const;
  Expected<std::optional<Job>> LoadJob(const std::string& where, const std::string& arg) const;
  Expected<std::vector<Job>> LoadJobs(const std::string& where) const;
  Expected<int> NextWireId(std::int64_t row);
  static nlohmann::json OfferJson(const Job& job);

  store::Db& db_;
  std::vector<std::unique_ptr<Transport>> transports_;
  int max_concurrent_;
  Report report_;
  std::string rev_;
  std::map<std::string, Firmware> firmware_;  // by model
  bool have_firmware_ = false;
};

}  // namespace gantry::relay
