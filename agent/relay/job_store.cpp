#include "relay/job_store.hpp"

#include <chrono>

namespace gantry::relay {

namespace {

// Column lists shared by every query of a table; readers below decode them in this order.
#define GANTRY_JOB_COLUMNS                                                                    \
  "id, job, sensor, model, rev, sha256, size, seq, version, chunk, window, state, offset, " \
  "result, reason, attempts, blocked"
#define GANTRY_SENSOR_COLUMNS \
  "id, transport, model, version, seq, slot, max_chunk, window, state, result, vid, cid"

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Job ReadJob(const store::Statement& st, int at) {
  Job j;
  j.row = st.Int(at + 0);
  if (!st.IsNull(at + 1)) j.job = st.Int(at + 1);
  j.sensor = st.Text(at + 2);
  j.model = st.Text(at + 3);
  j.rev = st.Text(at + 4);
  j.sha256 = st.Text(at + 5);
  j.size = st.Int(at + 6);
  j.seq = st.Int(at + 7);
  j.version = st.Text(at + 8);
  j.chunk = st.Int(at + 9);
  j.window = st.Int(at + 10);
  // A name this build does not know (a newer agent's row) reads as FAILED: settled, not offered.
  j.state = JobStateFromName(st.Text(at + 11)).value_or(JobState::kFailed);
  j.offset = st.Int(at + 12);
  if (!st.IsNull(at + 13)) j.result = st.Int(at + 13);
  j.reason = st.IsNull(at + 14) ? "" : st.Text(at + 14);
  j.attempts = st.Int(at + 15);
  j.blocked = st.Int(at + 16) != 0;
  return j;
}

Sensor ReadSensor(const store::Statement& st) {
  Sensor s{st.Text(0), st.Text(1), st.Text(2), st.Text(3), st.Int(4), st.Int(5),
           st.Int(6),  st.Int(7),  st.Int(8),  st.Int(9)};
  if (!st.IsNull(10)) s.vid = st.Text(10);
  if (!st.IsNull(11)) s.cid = st.Text(11);
  return s;
}

template <class T>
std::optional<T> First(std::vector<T>&& v) {
  if (v.empty()) return std::nullopt;
  return std::move(v.front());
}

}  // namespace

nlohmann::json Job::Json() const {
  nlohmann::json j = {{"job", job ? nlohmann::json(*job) : nlohmann::json()},
                      {"sha256", sha256},
                      {"size", size},
                      {"seq", seq},
                      {"version", version},
                      {"state", JobStateName(state)},
                      {"offset", offset},
                      {"result", result ? nlohmann::json(*result) : nlohmann::json()}};
  if (!reason.empty()) j["reason"] = reason;
  if (sha256.empty()) j.erase("sha256");  // NOT_APPLICABLE for want of firmware: no image
  return j;
}

// ---- sensors -----------------------------------------------------------------------------

Expected<std::vector<Sensor>> JobStore::SensorRows(store::Statement& st) const {
  std::vector<Sensor> out;
  for (;;) {
    auto row = st.Step();
    if (!row) return Unexpected(row.error());
    if (!*row) return out;
    out.push_back(ReadSensor(st));
  }
}

Expected<std::optional<Sensor>> JobStore::GetSensor(const std::string& id) const {
  auto st = db_.Prepare("SELECT " GANTRY_SENSOR_COLUMNS " FROM relay_sensors WHERE id = ?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, id);
  auto rows = SensorRows(*st);
  if (!rows) return Unexpected(rows.error());
  return First(std::move(*rows));
}

ExpectedVoid JobStore::PutSensor(const Sensor& s, std::int64_t now_s) {
  auto st = db_.Prepare(
      "INSERT INTO relay_sensors (" GANTRY_SENSOR_COLUMNS ", last_hello) "
      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
      "ON CONFLICT (id) DO UPDATE SET transport=excluded.transport, model=excluded.model, "
      "version=excluded.version, seq=excluded.seq, slot=excluded.slot, "
      "max_chunk=excluded.max_chunk, window=excluded.window, state=excluded.state, "
      "result=excluded.result, vid=excluded.vid, cid=excluded.cid, last_hello=excluded.last_hello");
  if (!st) return Unexpected(st.error());
  st->BindAll(s.id, s.transport, s.model, s.version, s.seq, s.slot, s.max_chunk, s.window, s.state,
              s.result);
  if (s.vid) st->Bind(11, *s.vid); else st->Bind(11, std::nullopt);
  if (s.cid) st->Bind(12, *s.cid); else st->Bind(12, std::nullopt);
  st->Bind(13, now_s);
  return st->Run();
}

ExpectedVoid JobStore::SetSensorFirmware(const std::string& id, const std::string& version,
                                         std::int64_t seq) {
  return db_.Run("UPDATE relay_sensors SET version = ?, seq = ? WHERE id = ?", version, seq, id);
}

Expected<std::int64_t> JobStore::CountSensors() const {
  auto st = db_.Prepare("SELECT COUNT(*) FROM relay_sensors");
  if (!st) return Unexpected(st.error());
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  return *row ? st->Int(0) : 0;
}

Expected<std::vector<Sensor>> JobStore::Sensors() const {
  auto st = db_.Prepare("SELECT " GANTRY_SENSOR_COLUMNS " FROM relay_sensors ORDER BY id");
  if (!st) return Unexpected(st.error());
  return SensorRows(*st);
}

// ---- jobs --------------------------------------------------------------------------------

Expected<std::vector<Job>> JobStore::Jobs(store::Statement& st) const {
  std::vector<Job> out;
  for (;;) {
    auto row = st.Step();
    if (!row) return Unexpected(row.error());
    if (!*row) return out;
    out.push_back(ReadJob(st, 0));
  }
}

Expected<std::optional<Job>> JobStore::OpenJobOf(const std::string& sensor) const {
  auto st = db_.Prepare("SELECT " GANTRY_JOB_COLUMNS
                        " FROM relay_jobs WHERE sensor = ? AND final = 0 LIMIT 1");
  if (!st) return Unexpected(st.error());
  st->Bind(1, sensor);
  auto jobs = Jobs(*st);
  if (!jobs) return Unexpected(jobs.error());
  return First(std::move(*jobs));
}

Expected<std::optional<Job>> JobStore::JobFor(const std::string& sensor,
                                              const std::string& sha256) const {
  auto st = db_.Prepare("SELECT " GANTRY_JOB_COLUMNS
                        " FROM relay_jobs WHERE sensor = ? AND sha256 = ?");
  if (!st) return Unexpected(st.error());
  st->BindAll(sensor, sha256);
  auto jobs = Jobs(*st);
  if (!jobs) return Unexpected(jobs.error());
  return First(std::move(*jobs));
}

Expected<std::optional<Job>> JobStore::OpenJobByWire(const std::string& sensor,
                                                     std::int64_t wire) const {
  auto st = db_.Prepare("SELECT " GANTRY_JOB_COLUMNS
                        " FROM relay_jobs WHERE sensor = ? AND final = 0 AND job = ?");
  if (!st) return Unexpected(st.error());
  st->BindAll(sensor, wire);
  auto jobs = Jobs(*st);
  if (!jobs) return Unexpected(jobs.error());
  return First(std::move(*jobs));
}

Expected<std::vector<Job>> JobStore::OpenJobs() const {
  auto st = db_.Prepare("SELECT " GANTRY_JOB_COLUMNS " FROM relay_jobs WHERE final = 0 ORDER BY id");
  if (!st) return Unexpected(st.error());
  return Jobs(*st);
}

Expected<std::vector<Job>> JobStore::Waiting(int limit) const {
  auto st = db_.Prepare("SELECT " GANTRY_JOB_COLUMNS
                        " FROM relay_jobs WHERE final = 0 AND state = ? ORDER BY id LIMIT ?");
  if (!st) return Unexpected(st.error());
  st->BindAll(JobStateName(JobState::kWaiting), limit);
  return Jobs(*st);
}

Expected<int> JobStore::CountActive() const {
  auto st = db_.Prepare("SELECT COUNT(*) FROM relay_jobs WHERE final = 0 AND state != ?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, JobStateName(JobState::kWaiting));
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  return *row ? static_cast<int>(st->Int(0)) : 0;
}

Expected<std::optional<std::string>> JobStore::WireHolder(std::int64_t wire, std::int64_t row) const {
  auto st = db_.Prepare("SELECT sensor FROM relay_jobs WHERE final = 0 AND job = ? AND id != ?");
  if (!st) return Unexpected(st.error());
  st->BindAll(wire, row);
  auto r = st->Step();
  if (!r) return Unexpected(r.error());
  if (!*r) return std::optional<std::string>();
  return std::optional<std::string>(st->Text(0));
}

ExpectedVoid JobStore::Save(Job& j) {
  auto st = db_.Prepare(
      "INSERT INTO relay_jobs (job, sensor, model, rev, sha256, size, seq, version, chunk, "
      "window, state, offset, result, reason, attempts, blocked, final, updated_at) "
      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
      "ON CONFLICT (sensor, sha256) DO UPDATE SET job=excluded.job, model=excluded.model, "
      "rev=excluded.rev, size=excluded.size, seq=excluded.seq, version=excluded.version, "
      "chunk=excluded.chunk, window=excluded.window, state=excluded.state, "
      "offset=excluded.offset, result=excluded.result, reason=excluded.reason, "
      "attempts=excluded.attempts, blocked=excluded.blocked, final=excluded.final, "
      "updated_at=excluded.updated_at "
      "RETURNING id");
  if (!st) return Unexpected(st.error());
  if (j.job) st->Bind(1, *j.job); else st->Bind(1, std::nullopt);
  st->Bind(2, j.sensor).Bind(3, j.model).Bind(4, j.rev).Bind(5, j.sha256);
  st->Bind(6, j.size).Bind(7, j.seq).Bind(8, j.version).Bind(9, j.chunk).Bind(10, j.window);
  st->Bind(11, JobStateName(j.state)).Bind(12, j.offset);
  if (j.result) st->Bind(13, *j.result); else st->Bind(13, std::nullopt);
  st->Bind(14, j.reason).Bind(15, j.attempts).Bind(16, j.blocked ? 1 : 0);
  st->Bind(17, IsFinal(j.state) ? 1 : 0).Bind(18, NowMs());
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  if (*row) j.row = st->Int(0);
  return st->Run();
}

// ---- reporting ---------------------------------------------------------------------------

Expected<std::vector<std::pair<Sensor, std::optional<Job>>>> JobStore::List(int limit) const {
  // Each listed sensor with the one job P/state shows: the open one, else the latest.
  auto st = db_.Prepare(
      "SELECT s.*, j.* FROM (SELECT " GANTRY_SENSOR_COLUMNS
      " FROM relay_sensors ORDER BY id LIMIT ?) s "
      "LEFT JOIN (SELECT " GANTRY_JOB_COLUMNS ", ROW_NUMBER() OVER (PARTITION BY sensor "
      "ORDER BY final, updated_at DESC, id DESC) AS n FROM relay_jobs "
      "WHERE sensor IN (SELECT id FROM relay_sensors ORDER BY id LIMIT ?)) j "
      "ON j.sensor = s.id AND j.n = 1 ORDER BY s.id");
  if (!st) return Unexpected(st.error());
  st->BindAll(limit, limit);
  std::vector<std::pair<Sensor, std::optional<Job>>> out;
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) return out;
    std::optional<Job> job;
    if (!st->IsNull(12)) job = ReadJob(*st, 12);
    out.emplace_back(ReadSensor(*st), std::move(job));
  }
}

Expected<std::map<std::string, std::int64_t>> JobStore::CountJobsByState() const {
  // Every sensor's shown job, counted by state (the same choice as List()).
  auto st = db_.Prepare(
      "SELECT state, COUNT(*) FROM (SELECT state, ROW_NUMBER() OVER (PARTITION BY sensor "
      "ORDER BY final, updated_at DESC, id DESC) AS n FROM relay_jobs) WHERE n = 1 GROUP BY state");
  if (!st) return Unexpected(st.error());
  std::map<std::string, std::int64_t> out;
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) return out;
    out[st->Text(0)] = st->Int(1);
  }
}

}  // namespace gantry::relay
