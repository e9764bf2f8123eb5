#include "relay/relay_engine.hpp"

#include <algorithm>
#include <chrono>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "core/names.hpp"

namespace gantry::relay {

namespace {

constexpr const char* kLog = "relay";
constexpr int kMinChunk = 64;
constexpr int kMaxChunk = 4096;
constexpr int kMaxWindow = 64;
// A job that failed for another reason than a revert is offered again on the sensor's next
// hello, up to this many offers in all.
constexpr int kMaxAttempts = 3;
// LwM2M Object 5 results (docs/protocol.md).
constexpr int kResultSuccess = 1;
constexpr int kResultConnectionLost = 4;
constexpr int kResultReverted = 8;
// LwM2M Object 5 states.
constexpr int kStateDownloading = 1;
constexpr int kStateDownloaded = 2;

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsActive(const std::string& state) {
  return state == kOffered || state == kDownloading || state == kDownloaded || state == kUpdating;
}

std::optional<std::int64_t> GetInt(const nlohmann::json& msg, const char* key) {
  auto it = msg.find(key);
  if (it == msg.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<std::int64_t>();
}

std::optional<std::string> GetString(const nlohmann::json& msg, const char* key) {
  auto it = msg.find(key);
  if (it == msg.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// The largest power of two in [64, 4096] not above the sensor's max_chunk.
int ChunkFor(std::int64_t max_chunk) {
  int chunk = kMaxChunk;
  while (chunk > kMinChunk && chunk > max_chunk) chunk /= 2;
  return chunk;
}

const char* ResultName(std::int64_t result) {
  switch (result) {
    case 2: return "not enough flash";
    case 3: return "out of RAM";
    case 4: return "connection lost";
    case 5: return "integrity check failure";
    case 6: return "unsupported package type";
    case 7: return "invalid URI";
    case 8: return "update failed, reverted";
    case 9: return "unsupported protocol";
    case 10: return "update cancelled";
    case 11: return "deferred";
    default: return "unknown result";
  }
}

}  // namespace

struct RelayEngine::Sensor {
  std::string id, transport, model, version;
  std::int64_t seq = 0, slot = 0, max_chunk = 0, window = 1, state = 0, result = 0;
  std::optional<std::string> vid, cid;
};

struct RelayEngine::Job {
  std::int64_t row = 0;  // 0 = not stored yet
  std::optional<std::int64_t> job;
  std::string sensor, model, rev, sha256;
  std::int64_t size = 0, seq = 0;
  std::string version;
  std::int64_t chunk = 0, window = 0;
  std::string state;
  std::int64_t offset = 0;
  std::optional<std::int64_t> result;
  std::string reason;
  std::int64_t attempts = 0;
  bool blocked = false, final = false;

  nlohmann::json Json() const {
    nlohmann::json j = {{"job", job ? nlohmann::json(*job) : nlohmann::json()},
                        {"sha256", sha256},
                        {"size", size},
                        {"seq", seq},
                        {"version", version},
                        {"state", state},
                        {"offset", offset},
                        {"result", result ? nlohmann::json(*result) : nlohmann::json()}};
    if (!reason.empty()) j["reason"] = reason;
    return j;
  }
  int Progress() const { return size > 0 ? static_cast<int>(offset * 100 / size) : 0; }
};

namespace {
constexpr const char* kJobColumns =
    "id, job, sensor, model, rev, sha256, size, seq, version, chunk, window, state, offset, "
    "result, reason, attempts, blocked, final";
constexpr const char* kSensorColumns =
    "id, transport, model, version, seq, slot, max_chunk, window, state, result, vid, cid";
}  // namespace

RelayEngine::RelayEngine(store::Db& db, std::vector<std::unique_ptr<Transport>> transports,
                         int max_concurrent, Report report)
    : db_(db),
      transports_(std::move(transports)),
      max_concurrent_(std::max(1, max_concurrent)),
      report_(std::move(report)) {}

// ---- store -------------------------------------------------------------------------------

Expected<std::vector<RelayEngine::Job>> RelayEngine::LoadJobs(const std::string& where) const {
  auto st = db_.Prepare(std::string("SELECT ") + kJobColumns + " FROM relay_jobs WHERE " + where);
  if (!st) return Unexpected(st.error());
  std::vector<Job> jobs;
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    Job j;
    j.row = st->Int(0);
    if (!st->IsNull(1)) j.job = st->Int(1);
    j.sensor = st->Text(2);
    j.model = st->Text(3);
    j.rev = st->Text(4);
    j.sha256 = st->Text(5);
    j.size = st->Int(6);
    j.seq = st->Int(7);
    j.version = st->Text(8);
    j.chunk = st->Int(9);
    j.window = st->Int(10);
    j.state = st->Text(11);
    j.offset = st->Int(12);
    if (!st->IsNull(13)) j.result = st->Int(13);
    j.reason = st->IsNull(14) ? "" : st->Text(14);
    j.attempts = st->Int(15);
    j.blocked = st->Int(16) != 0;
    j.final = st->Int(17) != 0;
    jobs.push_back(std::move(j));
  }
  return jobs;
}

Expected<std::optional<RelayEngine::Job>> RelayEngine::LoadJob(const std::string& where,
                                                                 const std::string& arg) const {
  // The only free-form argument is a sensor id; quote it the SQL way rather than building a
  // second prepared-statement path.
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  quoted += "'";
  std::string sql = where;
  if (auto pos = sql.find('?'); pos != std::string::npos) sql.replace(pos, 1, quoted);
  auto jobs = LoadJobs(sql + " LIMIT 1");
  if (!jobs) return Unexpected(jobs.error());
  if (jobs->empty()) return std::optional<Job>();
  return std::optional<Job>(std::move(jobs->front()));
}

ExpectedVoid RelayEngine::SaveJob(const Job& j) {
  auto job = j.job ? std::optional<std::int64_t>(*j.job) : std::nullopt;
  auto st = db_.Prepare(
      "INSERT INTO relay_jobs (job, sensor, model, rev, sha256, size, seq, version, chunk, "
      "window, state, offset, result, reason, attempts, blocked, final, updated_at) "
      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
      "ON CONFLICT (sensor, sha256) DO UPDATE SET job=excluded.job, model=excluded.model, "
      "rev=excluded.rev, size=excluded.size, seq=excluded.seq, version=excluded.version, "
      "chunk=excluded.chunk, window=excluded.window, state=excluded.state, "
      "offset=excluded.offset, result=excluded.result, reason=excluded.reason, "
      "attempts=excluded.attempts, blocked=excluded.blocked, final=excluded.final, "
      "updated_at=excluded.updated_at");
  if (!st) return Unexpected(st.error());
  if (job) st->Bind(1, *job); else st->Bind(1, std::nullopt);
  st->Bind(2, j.sensor).Bind(3, j.model).Bind(4, j.rev).Bind(5, j.sha256);
  st->Bind(6, j.size).Bind(7, j.seq).Bind(8, j.version).Bind(9, j.chunk).Bind(10, j.window);
  st->Bind(11, j.state).Bind(12, j.offset);
  if (j.result) st->Bind(13, *j.result); else st->Bind(13, std::nullopt);
  st->Bind(14, j.reason).Bind(15, j.attempts).Bind(16, j.blocked ? 1 : 0);
  st->Bind(17, j.final ? 1 : 0).Bind(18, NowMs());
  return st->Run();
}

Expected<std::optional<RelayEngine::Sensor>> RelayEngine::LoadSensor(const std::string& id) const {
  auto st = db_.Prepare(std::string("SELECT ") + kSensorColumns + " FROM relay_sensors WHERE id=?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, id);
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  if (!*row) return std::optional<Sensor>();
  Sensor s{st->Text(0), st->Text(1), st->Text(2), st->Text(3), st->Int(4), st->Int(5),
           st->Int(6),  st->Int(7),  st->Int(8),  st->Int(9)};
  if (!st->IsNull(10)) s.vid = st->Text(10);
  if (!st->IsNull(11)) s.cid = st->Text(11);
  return std::optional<Sensor>(std::move(s));
}

Expected<std::vector<RelayEngine::Sensor>> RelayEngine::LoadSensors() const {
  auto st = db_.Prepare("SELECT id FROM relay_sensors ORDER BY id");
  if (!st) return Unexpected(st.error());
  std::vector<std::string> ids;
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    ids.push_back(st->Text(0));
  }
  std::vector<Sensor> sensors;
  for (auto& id : ids) {
    auto s = LoadSensor(id);
    if (!s) return Unexpected(s.error());
    if (*s) sensors.push_back(std::move(**s));
  }
  return sensors;
}

// The wire id follows the row id, so a row keeps its id across offers and needs no counter.
Expected<int> RelayEngine::NextWireId(std::int64_t row) {
  int id = static_cast<int>((row - 1) % 65535) + 1;
  auto clash = LoadJobs("final = 0 AND job = " + std::to_string(id) +
                        " AND id != " + std::to_string(row));
  if (!clash) return Unexpected(clash.error());
  if (!clash->empty())
    return Fail("relay_busy", "job id " + std::to_string(id) + " is still held by sensor " +
                                  clash->front().sensor);
  return id;
}

// ---- firmware ----------------------------------------------------------------------------

ExpectedVoid RelayEngine::SetFirmware(const std::string& rev, std::vector<Firmware> firmware) {
  std::map<std::string, Firmware> by_model;
  for (auto& fw : firmware) {
    if (!IsSafeName(fw.model)) return Fail("bad_firmware", "bad sensor model \"" + fw.model + "\"");
    if (!IsBlockId(fw.sha256))
      return Fail("bad_firmware", "firmware of model " + fw.model + " has a bad sha256");
    if (fw.size == 0 || fw.version.empty() || fw.seq < 0)
      return Fail("bad_firmware", "firmware of model " + fw.model + " lacks size, version or seq");
    by_model[fw.model] = std::move(fw);
  }
  rev_ = rev;
  firmware_ = std::move(by_model);
  have_firmware_ = true;

  auto open = LoadJobs("final = 0 ORDER BY id");
  if (!open) return Unexpected(open.error());
  for (auto& job : *open) {
    auto fw = firmware_.find(job.model);
    bool kept = fw != firmware_.end() && fw->second.sha256 == job.sha256;
    // A sensor already flashing its image is left to finish.
    if (kept || job.state == kUpdating) continue;
    if (job.job) {
      if (auto* t = TransportFor(job.sensor))
        if (auto r = t->SendCmd(job.sensor, {{"job", *job.job}, {"op", "cancel"}}); !r)
          log::Warn(kLog, "cancel to " + job.sensor + ": " + r.error().String());
    }
    if (auto r = Finish(job, kCancelled, std::nullopt, "superseded by revision " + rev, false); !r)
      return r;
  }
  if (auto r = PushImages(); !r) return r;
  // Resume: the retained offers of open jobs are published again (idempotent for the broker).
  auto active = LoadJobs("final = 0 AND job IS NOT NULL ORDER BY id");
  if (!active) return Unexpected(active.error());
  for (auto& job : *active) {
    if (!IsActive(job.state)) continue;
    auto* t = TransportFor(job.sensor);
    if (!t) continue;
    if (auto r = t->Offer(job.sensor, OfferJson(job)); !r)
      log::Warn(kLog, "offer to " + job.sensor + ": " + r.error().String());
  }
  auto sensors = LoadSensors();
  if (!sensors) return Unexpected(sensors.error());
  for (auto& s : *sensors)
    if (auto r = Evaluate(s); !r) log::Warn(kLog, "sensor " + s.id + ": " + r.error().String());
  return FillSlots();
}

nlohmann::json RelayEngine::OfferJson(const Job& job) {
  return {{"job", job.job.value_or(0)}, {"sha256", job.sha256}, {"size", job.size},
          {"seq", job.seq},             {"version", job.version}, {"chunk", job.chunk},
          {"window", job.window}};
}

ExpectedVoid RelayEngine::Evaluate(const Sensor& sensor) {
  if (!have_firmware_ || firmware_.empty()) return {};
  auto open = LoadJob("sensor = ? AND final = 0", sensor.id);
  if (!open) return Unexpected(open.error());
  if (*open) return {};

  auto fw_it = firmware_.find(sensor.model);
  const Firmware* fw = fw_it == firmware_.end() ? nullptr : &fw_it->second;
  std::string sha = fw ? fw->sha256 : "";
  auto prior = LoadJob("sensor = ? AND sha256 = '" + sha + "'", sensor.id);
  if (!prior) return Unexpected(prior.error());

  std::string reason;
  if (!fw) {
    reason = "no firmware for model " + sensor.model + " in revision " + rev_;
  } else if (std::find(fw->targets.begin(), fw->targets.end(), "*") == fw->targets.end() &&
             std::find(fw->targets.begin(), fw->targets.end(), sensor.id) == fw->targets.end()) {
    reason = "sensor is not among the targets of firmware " + fw->version;
  } else if ((fw->vid && sensor.vid && *fw->vid != *sensor.vid) ||
             (fw->cid && sensor.cid && *fw->cid != *sensor.cid)) {
    reason = "firmware vid/cid do not match the sensor's";
  } else if (*prior && (*prior)->blocked) {
    reason = "sensor reverted firmware " + fw->version + " before; not offered again";
  } else if (fw->seq <= sensor.seq) {
    reason = "sensor is at seq " + std::to_string(sensor.seq) + ", firmware " + fw->version +
             " has seq " + std::to_string(fw->seq);
  } else if (static_cast<std::int64_t>(fw->size) > sensor.slot) {
    reason = "image of " + std::to_string(fw->size) + " B does not fit the sensor's slot of " +
             std::to_string(sensor.slot) + " B";
  } else if (sensor.max_chunk < kMinChunk) {
    reason = "sensor max_chunk " + std::to_string(sensor.max_chunk) + " is below 64";
  }

  Job job;
  if (*prior) {
    const Job& p = **prior;
    bool same_rev = p.rev == rev_;
    // Nothing new to say about a pair already settled under this revision.
    if (same_rev && (p.state == kSucceeded || p.blocked)) return {};
    if (same_rev && p.state == kNotApplicable && p.reason == reason) return {};
    if (reason.empty() && p.state == kFailed && p.attempts >= kMaxAttempts) return {};
    job = p;
  }
  job.sensor = sensor.id;
  job.model = sensor.model;
  job.rev = rev_;
  job.sha256 = sha;
  job.size = fw ? static_cast<std::int64_t>(fw->size) : 0;
  job.seq = fw ? fw->seq : 0;
  job.version = fw ? fw->version : "";
  job.offset = 0;
  job.result.reset();
  job.reason = reason;
  if (!reason.empty()) {
    job.job.reset();
    job.state = kNotApplicable;
    job.final = true;
    if (auto r = SaveJob(job); !r) return r;
    Emit(job, kNotApplicable, 0, reason);
    return {};
  }
  job.chunk = ChunkFor(sensor.max_chunk);
  job.window = std::clamp<std::int64_t>(sensor.window, 1, kMaxWindow);
  job.state = kWaiting;
  job.final = false;
  return SaveJob(job);
}

ExpectedVoid RelayEngine::FillSlots() {
  // Called after every event; most of the time nobody waits, so check that first.
  auto waiting = LoadJobs("final = 0 AND state = 'WAITING' LIMIT 1");
  if (!waiting) return Unexpected(waiting.error());
  if (waiting->empty()) return {};
  auto open = LoadJobs("final = 0 ORDER BY id");
  if (!open) return Unexpected(open.error());
  int active = static_cast<int>(
      std::count_if(open->begin(), open->end(), [](const Job& j) { return IsActive(j.state); }));
  std::vector<Job> offered;
  for (auto& job : *open) {
    if (active >= max_concurrent_) break;
    if (job.state != kWaiting) continue;
    auto id = NextWireId(job.row);
    if (!id) {
      log::Warn(kLog, id.error().message);
      continue;
    }
    job.job = *id;
    job.state = kOffered;
    job.offset = 0;
    ++job.attempts;
    if (auto r = SaveJob(job); !r) return r;
    ++active;
    offered.push_back(job);
  }
  if (offered.empty()) return {};
  // Images first, so that a sensor answering the offer at once finds its job.
  if (auto r = PushImages(); !r) return r;
  for (auto& job : offered) {
    auto* t = TransportFor(job.sensor);
    if (!t) continue;
    if (auto r = t->Offer(job.sensor, OfferJson(job)); !r) {
      log::Warn(kLog, "offer to " + job.sensor + ": " + r.error().String());
      continue;
    }
    Emit(job, kOffered, 0,
         "offered " + job.version + " (seq " + std::to_string(job.seq) + ", " +
             std::to_string(job.size) + " B, chunk " + std::to_string(job.chunk) + ")");
  }
  return {};
}

ExpectedVoid RelayEngine::PushImages() {
  nlohmann::json jobs = nlohmann::json::array();
  auto open = LoadJobs("final = 0 AND job IS NOT NULL ORDER BY id");
  if (!open) return Unexpected(open.error());
  for (auto& job : *open) {
    if (!IsActive(job.state)) continue;
    auto fw = firmware_.find(job.model);
    if (fw == firmware_.end() || fw->second.sha256 != job.sha256) continue;
    jobs.push_back({{"job", *job.job},
                    {"sensor", job.sensor},
                    {"sha256", job.sha256},
                    {"size", job.size},
                    {"chunk", job.chunk},
                    {"window", job.window},
                    {"path", fw->second.image.string()}});
  }
  nlohmann::json images = nlohmann::json::array();
  for (auto& [model, fw] : firmware_)
    images.push_back({{"sha256", fw.sha256}, {"size", fw.size}, {"path", fw.image.string()}});
  nlohmann::json all = {{"jobs", jobs}, {"images", images}};
  for (auto& t : transports_)
    if (auto r = t->SetImages(all); !r) return r;
  return {};
}

ExpectedVoid RelayEngine::Finish(Job& job, const char* state, std::optional<int> result,
                                 const std::string& reason, bool blocked) {
  bool was_active = IsActive(job.state);
  job.state = state;
  job.final = true;
  if (result) job.result = *result;
  job.reason = reason;
  job.blocked = job.blocked || blocked;
  if (job.state == kSucceeded) job.offset = job.size;
  if (auto r = SaveJob(job); !r) return r;
  if (was_active) {
    if (auto r = PushImages(); !r) return r;
    if (auto* t = TransportFor(job.sensor))
      if (auto r = t->ClearOffer(job.sensor); !r)
        log::Warn(kLog, "clearing the offer to " + job.sensor + ": " + r.error().String());
  }
  std::string status = job.state == kSucceeded ? kSucceeded : kFailed;
  Emit(job, status, job.state == kSucceeded ? 100 : job.Progress(),
       job.state == kCancelled ? "cancelled: " + reason : reason);
  return {};
}

// ---- events ------------------------------------------------------------------------------

void RelayEngine::OnTransportEvent(const nlohmann::json& event) {
  if (!event.is_object()) return;
  auto type = GetString(event, "type");
  auto sensor = GetString(event, "sensor");
  auto msg = event.find("msg");
  if (!type || !sensor || !IsSafeName(*sensor) || msg == event.end() || !msg->is_object()) {
    log::Warn(kLog, "dropping a malformed transport event: " + event.dump().substr(0, 200));
    return;
  }
  if (*type == "relay.hello") {
    OnHello(GetString(event, "transport").value_or(""), *sensor, *msg);
  } else if (*type == "relay.status") {
    OnStatus(*sensor, *msg);
  } else {
    log::Debug(kLog, "ignoring transport event " + *type);
    return;
  }
  if (auto r = FillSlots(); !r) log::Error(kLog, "offering waiting jobs: " + r.error().String());
}

void RelayEngine::OnHello(const std::string& transport, const std::string& id,
                          const nlohmann::json& msg) {
  auto model = GetString(msg, "model");
  auto version = GetString(msg, "version");
  auto seq = GetInt(msg, "seq");
  auto slot = GetInt(msg, "slot");
  auto max_chunk = GetInt(msg, "max_chunk");
  auto window = GetInt(msg, "window");
  if (!model || !IsSafeName(*model) || !version || !seq || *seq < 0 || !slot || *slot < 0 ||
      !max_chunk || !window || *window < 1) {
    log::Warn(kLog, "dropping a malformed hello from " + id + ": " + msg.dump().substr(0, 200));
    return;
  }
  Sensor s{id,    transport, *model, *version, *seq, *slot, *max_chunk, *window,
           GetInt(msg, "state").value_or(0), GetInt(msg, "result").value_or(0)};
  s.vid = GetString(msg, "vid");
  s.cid = GetString(msg, "cid");
  auto st = db_.Prepare(
      "INSERT INTO relay_sensors (id, transport, model, version, seq, slot, max_chunk, window, "
      "state, result, vid, cid, last_hello) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
      "ON CONFLICT (id) DO UPDATE SET transport=excluded.transport, model=excluded.model, "
      "version=excluded.version, seq=excluded.seq, slot=excluded.slot, "
      "max_chunk=excluded.max_chunk, window=excluded.window, state=excluded.state, "
      "result=excluded.result, vid=excluded.vid, cid=excluded.cid, last_hello=excluded.last_hello");
  if (!st) {
    log::Error(kLog, st.error().String());
    return;
  }
  st->Bind(1, s.id).Bind(2, s.transport).Bind(3, s.model).Bind(4, s.version).Bind(5, s.seq);
  st->Bind(6, s.slot).Bind(7, s.max_chunk).Bind(8, s.window).Bind(9, s.state).Bind(10, s.result);
  if (s.vid) st->Bind(11, *s.vid); else st->Bind(11, std::nullopt);
  if (s.cid) st->Bind(12, *s.cid); else st->Bind(12, std::nullopt);
  st->Bind(13, NowMs() / 1000);
  if (auto r = st->Run(); !r) {
    log::Error(kLog, "storing the hello of " + id + ": " + r.error().String());
    return;
  }

  auto open = LoadJob("sensor = ? AND final = 0", id);
  if (!open) {
    log::Error(kLog, open.error().String());
    return;
  }
  if (*open) {
    Job& job = **open;
    // A sensor that was told to update says how it came back.
    if (job.state == kUpdating || job.state == kDownloaded) {
      ExpectedVoid r;
      if (s.seq >= job.seq)
        r = Finish(job, kSucceeded, kResultSuccess, "sensor runs " + s.version, false);
      else if (s.result == kResultReverted)
        r = Finish(job, kFailed, kResultReverted,
                   "sensor reverted to " + s.version + " (result 8)", true);
      if (!r) log::Error(kLog, r.error().String());
    }
    return;
  }
  if (auto r = Evaluate(s); !r) log::Error(kLog, "sensor " + id + ": " + r.error().String());
}

void RelayEngine::OnStatus(const std::string& id, const nlohmann::json& msg) {
  auto wire = GetInt(msg, "job");
  auto state = GetInt(msg, "state");
  auto result = GetInt(msg, "result");
  if (!wire || !state || !result) {
    log::Warn(kLog, "dropping a malformed status from " + id + ": " + msg.dump().substr(0, 200));
    return;
  }
  auto found = LoadJob("sensor = ? AND final = 0 AND job = " + std::to_string(*wire), id);
  if (!found) {
    log::Error(kLog, found.error().String());
    return;
  }
  if (!*found) {
    log::Debug(kLog, "status of " + id + " names no open job " + std::to_string(*wire));
    return;
  }
  Job& job = **found;
  if (!IsActive(job.state)) return;
  auto reason = GetString(msg, "reason");
  ExpectedVoid r;
  if (*result == kResultSuccess) {
    // The sensor runs the new image: P/state's sensors[] shows it now, not at its next hello.
    r = db_.Run("UPDATE relay_sensors SET version = ?, seq = ? WHERE id = ?", job.version, job.seq, id);
    if (r) r = Finish(job, kSucceeded, kResultSuccess, "sensor runs " + job.version, false);
  } else if (*result == kResultReverted) {
    r = Finish(job, kFailed, kResultReverted,
               reason.value_or("sensor reverted to its previous firmware (result 8)"), true);
  } else if (*result != 0 && *result != kResultConnectionLost) {
    r = Finish(job, kFailed, static_cast<int>(*result),
               reason.value_or("sensor reported result " + std::to_string(*result) + " (" +
                               ResultName(*result) + ")"),
               false);
  } else if (*state == kStateDownloading && *result == 0) {
    auto off = std::clamp<std::int64_t>(GetInt(msg, "off").value_or(job.offset), 0, job.size);
    bool announce = job.state != kDownloading || (off * 10 / job.size) != (job.offset * 10 / job.size);
    if (job.state != kOffered && job.state != kDownloading) return;
    job.state = kDownloading;
    job.offset = off;
    r = SaveJob(job);
    if (r && announce)
      Emit(job, kDownloading, job.Progress(),
           std::to_string(off) + " of " + std::to_string(job.size) + " B");
  } else if (*state == kStateDownloaded && *result == 0) {
    // Also when already UPDATING: the update command may have been lost with a restart.
    if (job.state != kUpdating) {
      job.state = kDownloaded;
      job.offset = job.size;
      r = SaveJob(job);
      if (!r) {
        log::Error(kLog, r.error().String());
        return;
      }
      Emit(job, kDownloaded, 100, "image verified by the sensor");
      job.state = kUpdating;
      r = SaveJob(job);
      if (!r) {
        log::Error(kLog, r.error().String());
        return;
      }
      Emit(job, kUpdating, 100, "update command sent");
    }
    if (auto* t = TransportFor(id)) r = t->SendCmd(id, {{"job", *job.job}, {"op", "update"}});
  }
  if (!r) log::Error(kLog, "sensor " + id + ": " + r.error().String());
}

// ---- reporting ---------------------------------------------------------------------------

void RelayEngine::Emit(const Job& job, const std::string& status, int progress,
                       const std::string& msg) {
  if (!report_) return;
  report_({{"sensor", job.sensor},
           {"model", job.model},
           {"status", status},
           {"progress", progress},
           {"msg", msg},
           {"job", job.job ? nlohmann::json(*job.job) : nlohmann::json()},
           {"seq", job.seq},
           {"version", job.version},
           {"result", job.result ? nlohmann::json(*job.result) : nlohmann::json()}});
}

Transport* RelayEngine::TransportFor(const std::string& sensor) {
  auto s = LoadSensor(sensor);
  if (!s || !*s) return nullptr;
  for (auto& t : transports_)
    if (t->Name() == (*s)->transport) return t.get();
  log::Warn(kLog, "sensor " + sensor + " came through transport \"" + (*s)->transport +
                      "\", which is not loaded");
  return nullptr;
}

nlohmann::json RelayEngine::SensorsJson() const {
  nlohmann::json out = nlohmann::json::array();
  auto sensors = LoadSensors();
  if (!sensors) {
    log::Error(kLog, sensors.error().String());
    return out;
  }
  for (auto& s : *sensors) {
    auto job = LoadJob("sensor = ? ORDER BY final, updated_at DESC, id DESC", s.id);
    out.push_back({{"id", s.id},
                   {"model", s.model},
                   {"version", s.version},
                   {"seq", s.seq},
                   {"job", job && *job ? (*job)->Json() : nlohmann::json()}});
  }
  return out;
}

Expected<nlohmann::json> RelayEngine::TransportStats(const std::string& transport) {
  for (auto& t : transports_)
    if (t->Name() == transport) return t->Stats();
  return Fail("not_found", "no relay transport named " + transport);
}

}  // namespace gantry::relay
