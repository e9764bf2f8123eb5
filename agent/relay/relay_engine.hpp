#pragma once
// The downstream sensor relay (docs/relay.md): decides which sensor gets which firmware image,
// keeps jobs in SQLite so they survive a restart, and drives each job from the sensors'
// hello/status messages. Bytes never pass through here: the transport plugin serves the
// sensor-paced pulls itself from the image files the engine hands it.
//
// Sensors are hostile until proven otherwise: a job that makes no progress for
// Limits::job_timeout ends FAILED and frees its slot (Tick()), at most Limits::max_sensors
// sensors are tracked, and P/state lists at most Limits::max_listed of them plus counts.
//
// Threading: owned by the agent's event-loop thread. Every method runs on that thread; plugin
// threads only post events, which the host hands to OnTransportEvent().
#include <chrono>
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
#include "relay/job_state.hpp"
#include "relay/job_store.hpp"
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

struct Limits {
  int max_concurrent = 8;                        // relay.max_concurrent
  std::chrono::seconds job_timeout{300};         // relay.job_timeout_s
  int max_sensors = 1024;                        // relay.max_sensors
  int max_listed = 256;                          // sensors listed in P/state
};

class RelayEngine {
 public:
  using Clock = std::chrono::steady_clock;
  // A sensor progress event: {"sensor", "model", "status", "progress", "msg", "job", "seq",
  // "version"}; the agent adds id/rev/ts and publishes it on P/progress.
  using Report = std::function<void(const nlohmann::json& progress_event)>;

  // Open jobs found in the store are resumed by the first SetFirmware() (offers re-published).
  RelayEngine(store::Db& db, std::vector<std::unique_ptr<Transport>> transports, Limits limits,
              Report report);

  // The committed revision's sensor firmware, at start and after every commit. Open jobs whose
  // image is no longer in the revision are cancelled; every known sensor is re-evaluated.
  ExpectedVoid SetFirmware(const std::string& rev, std::vector<Firmware> firmware);

  // A plugin event, as posted through GantryHostV1::post_event:
  //   {"type": "relay.hello"|"relay.status", "transport": "mqtt", "sensor": id, "msg": {...}}
  // Malformed events are logged and dropped.
  void OnTransportEvent(const nlohmann::json& event);

  // Ends the active jobs with no progress since now - job_timeout (FAILED, slot freed) and
  // offers the freed slots. The agent calls it every second; costs O(active jobs).
  void Tick(Clock::time_point now = Clock::now());
  // Whether Tick() has a job to watch; when not, an idle agent needs no timer for the relay.
  bool HasActiveJobs() const { return !progress_at_.empty(); }
  // Called on the loop when a job becomes active while none was, so the agent re-arms Tick().
  void SetOnFirstActiveJob(std::function<void()> f) { on_first_active_ = std::move(f); }

  // P/state "sensors": at most max_listed [{"id", "model", "version", "seq", "job": {...} | null}].
  nlohmann::json SensorsJson() const;
  // P/state "sensor_counts": {"tracked", "listed", "ignored_hellos", "dropped_events",
  // "jobs": {"<STATE>": n}}.
  nlohmann::json CountsJson() const;
  // Where "dropped_events" comes from: the host's count of transport events it dropped
  // because the loop was behind (they never reach this engine). Called on the loop.
  void SetDroppedEvents(std::function<std::uint64_t()> count) { dropped_events_ = std::move(count); }

  // Per-transport counters (frames and bytes served), for tests and diagnostics.
  Expected<nlohmann::json> TransportStats(const std::string& transport);

 private:
  void OnHello(const std::string& transport, const std::string& id, const nlohmann::json& msg);
  void OnStatus(const std::string& id, const nlohmann::json& msg);
  // Decides what the sensor should get under the current firmware set; creates, reopens or
  // marks a job NOT_APPLICABLE.
  ExpectedVoid Evaluate(const Sensor& sensor);
  // Offers WAITING jobs while fewer than max_concurrent jobs are active.
  ExpectedVoid FillSlots();
  ExpectedVoid Finish(Job& job, JobState state, std::optional<int> result,
                      const std::string& reason, bool blocked);
  // Moves job to state and saves it; refuses a move the transition table does not allow.
  ExpectedVoid Move(Job& job, JobState state);
  // Sends every transport the full set of servable jobs and the revision's images.
  ExpectedVoid PushImages();
  // Sends the transports only what changed: jobs now servable, job ids no longer servable.
  ExpectedVoid PushJobs(nlohmann::json add, nlohmann::json remove);
  // The transports' entry for a job they may serve, or nothing when it may not be served.
  std::optional<nlohmann::json> ServableEntry(const Job& job) const;
  void Emit(const Job& job, JobState status, int progress, const std::string& msg);
  Transport* TransportFor(const std::string& sensor);
  Expected<int> NextWireId(std::int64_t row);
  static nlohmann::json OfferJson(const Job& job);
  // Records progress on an active job (its time-out counts from at); keep_older leaves an
  // existing record alone.
  // offset: the sensor's offset when it reported one (kept in memory only: a job's offset is
  // written when its state changes, not at every report, which saves an fsync per report).
  void MarkProgress(std::int64_t row, Clock::time_point at, std::int64_t offset = -1,
                    bool keep_older = false);
  // Brings a job read from the store up to the offset last reported in memory.
  void Overlay(Job& job) const;

  store::Db& db_;
  JobStore store_;
  std::vector<std::unique_ptr<Transport>> transports_;
  Limits limits_;
  Report report_;
  std::string rev_;
  std::map<std::string, Firmware> firmware_;  // by model
  bool have_firmware_ = false;
  std::int64_t tracked_ = 0;         // rows in relay_sensors
  std::uint64_t ignored_hellos_ = 0;  // hellos from sensors beyond max_sensors
  std::function<std::uint64_t()> dropped_events_;
  bool waiting_ = true;               // a WAITING job may exist (FillSlots has work)
  // Jobs in an active state: counted from the store when unknown, then followed through
  // Move(), and forgotten when a commit fails (its moves may have been rolled back). Counting
  // in SQL after every sensor message cost a third of the relay's CPU at 1,000 sensors.
  std::optional<int> active_;
  struct Watch {
    Clock::time_point at;     // last progress (new state or higher offset)
    std::int64_t offset = -1;  // last reported offset, when newer than the stored one
  };
  std::map<std::int64_t, Watch> progress_at_;  // active job row → its progress
  std::function<void()> on_first_active_;
};

}  // namespace gantry::relay
