#pragma once
// The relay's tables (relay_sensors, relay_jobs; agent/store/migrations/0003_relay.sql) behind
// named queries. Every value is a bound parameter; the SQL text is fixed. Owned by the loop
// thread, like the engine that uses it.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "relay/job_state.hpp"
#include "store/db.hpp"

namespace gantry::relay {

// A sensor as its last hello described it.
struct Sensor {
  std::string id, transport, model, version;
  std::int64_t seq = 0, slot = 0, max_chunk = 0, window = 1, state = 0, result = 0;
  std::optional<std::string> vid, cid;

  bool operator==(const Sensor&) const = default;
};

// One (sensor, image) pair; `job` is the wire id (1..65535) while the job is open.
struct Job {
  std::int64_t row = 0;  // 0 = not stored yet
  std::optional<std::int64_t> job;
  std::string sensor, model, rev, sha256;
  std::int64_t size = 0, seq = 0;
  std::string version;
  std::int64_t chunk = 0, window = 0;
  JobState state = JobState::kWaiting;
  std::int64_t offset = 0;
  std::optional<std::int64_t> result;
  std::string reason;
  std::int64_t attempts = 0;
  bool blocked = false;  // the sensor reverted this image: never offered again

  // P/state's sensors[].job.
  nlohmann::json Json() const;
  int Progress() const { return size > 0 ? static_cast<int>(offset * 100 / size) : 0; }
};

class JobStore {
 public:
  explicit JobStore(store::Db& db) : db_(db) {}

  Expected<std::optional<Sensor>> GetSensor(const std::string& id) const;
  ExpectedVoid PutSensor(const Sensor& s, std::int64_t now_s);
  ExpectedVoid SetSensorFirmware(const std::string& id, const std::string& version, std::int64_t seq);
  Expected<std::int64_t> CountSensors() const;
  Expected<std::vector<Sensor>> Sensors() const;

  Expected<std::optional<Job>> OpenJobOf(const std::string& sensor) const;
  Expected<std::optional<Job>> JobFor(const std::string& sensor, const std::string& sha256) const;
  Expected<std::optional<Job>> OpenJobByWire(const std::string& sensor, std::int64_t wire) const;
  // Open jobs (WAITING or active), oldest first.
  Expected<std::vector<Job>> OpenJobs() const;
  // The oldest WAITING jobs, at most limit.
  Expected<std::vector<Job>> Waiting(int limit) const;
  Expected<int> CountActive() const;
  // The open job other than row that holds wire id, if any: its sensor.
  Expected<std::optional<std::string>> WireHolder(std::int64_t wire, std::int64_t row) const;
  // Inserts or updates the (sensor, sha256) row; sets job.row on insert.
  ExpectedVoid Save(Job& job);

  // P/state: at most limit sensors (by id) with their open job, else their latest.
  Expected<std::vector<std::pair<Sensor, std::optional<Job>>>> List(int limit) const;
  // Jobs by state name, for P/state's counts.
  Expected<std::map<std::string, std::int64_t>> CountJobsByState() const;

 private:
  Expected<std::vector<Job>> Jobs(store::Statement& st) const;
  Expected<std::vector<Sensor>> SensorRows(store::Statement& st) const;

  store::Db& db_;
};

}  // namespace gantry::relay
