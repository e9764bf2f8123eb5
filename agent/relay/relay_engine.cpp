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

std::int64_t NowS() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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

RelayEngine::RelayEngine(store::Db& db, std::vector<std::unique_ptr<Transport>> transports,
                         Limits limits, Report report)
    : db_(db),
      store_(db),
      transports_(std::move(transports)),
      limits_(limits),
      report_(std::move(report)) {
  limits_.max_concurrent = std::max(1, limits_.max_concurrent);
  auto n = store_.CountSensors();
  if (!n) log::Error(kLog, "counting sensors: " + n.error().String());
  tracked_ = n.value_or(0);
}

// The wire id follows the row id, so a row keeps its id across offers and needs no counter.
Expected<int> RelayEngine::NextWireId(std::int64_t row) {
  int id = static_cast<int>((row - 1) % 65535) + 1;
  auto holder = store_.WireHolder(id, row);
  if (!holder) return Unexpected(holder.error());
  if (*holder)
    return Fail("relay_busy", "job id " + std::to_string(id) + " is still held by sensor " + **holder);
  return id;
}

ExpectedVoid RelayEngine::Move(Job& job, JobState state) {
  if (job.row != 0 && !CanMove(job.state, state))
    return Fail("relay_state", "job of sensor " + job.sensor + " cannot go from " +
                                   std::string(JobStateName(job.state)) + " to " +
                                   std::string(JobStateName(state)));
  bool was_active = job.row != 0 && IsActive(job.state);
  job.state = state;
  if (state == JobState::kWaiting) waiting_ = true;
  auto saved = store_.Save(job);
  if (saved && active_) *active_ += int{IsActive(state)} - int{was_active};
  return saved;
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

  auto open = store_.OpenJobs();
  if (!open) return Unexpected(open.error());
  auto now = Clock::now();
  for (auto& job : *open) {
    auto fw = firmware_.find(job.model);
    bool kept = fw != firmware_.end() && fw->second.sha256 == job.sha256;
    // A sensor already flashing its image is left to finish.
    if (kept || job.state == JobState::kUpdating) {
      // Resumed after a restart: the time-out counts from now.
      if (IsActive(job.state)) MarkProgress(job.row, now, -1, true);
      continue;
    }
    if (job.job) {
      if (auto* t = TransportFor(job.sensor))
        if (auto r = t->SendCmd(job.sensor, {{"job", *job.job}, {"op", "cancel"}}); !r)
          log::Warn(kLog, "cancel to " + job.sensor + ": " + r.error().String());
    }
    if (auto r = Finish(job, JobState::kCancelled, std::nullopt, "superseded by revision " + rev, false); !r)
      return r;
  }
  if (auto r = PushImages(); !r) return r;
  // Resume: the retained offers of open jobs are published again (idempotent for the broker).
  auto active = store_.OpenJobs();
  if (!active) return Unexpected(active.error());
  for (auto& job : *active) {
    if (!IsActive(job.state) || !job.job) continue;
    auto* t = TransportFor(job.sensor);
    if (!t) continue;
    if (auto r = t->Offer(job.sensor, OfferJson(job)); !r)
      log::Warn(kLog, "offer to " + job.sensor + ": " + r.error().String());
  }
  auto sensors = store_.Sensors();
  if (!sensors) return Unexpected(sensors.error());
  for (auto& s : *sensors)
    if (auto r = Evaluate(s); !r) log::Warn(kLog, "sensor " + s.id + ": " + r.error().String());
  waiting_ = true;
  return FillSlots();
}

nlohmann::json RelayEngine::OfferJson(const Job& job) {
  return {{"job", job.job.value_or(0)}, {"sha256", job.sha256}, {"size", job.size},
          {"seq", job.seq},             {"version", job.version}, {"chunk", job.chunk},
          {"window", job.window}};
}

ExpectedVoid RelayEngine::Evaluate(const Sensor& sensor) {
  if (!have_firmware_ || firmware_.empty()) return {};
  auto open = store_.OpenJobOf(sensor.id);
  if (!open) return Unexpected(open.error());
  if (*open) return {};

  auto fw_it = firmware_.find(sensor.model);
  const Firmware* fw = fw_it == firmware_.end() ? nullptr : &fw_it->second;
  std::string sha = fw ? fw->sha256 : "";
  auto prior = store_.JobFor(sensor.id, sha);
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
    if (same_rev && (p.state == JobState::kSucceeded || p.blocked)) return {};
    if (same_rev && p.state == JobState::kNotApplicable && p.reason == reason) return {};
    if (reason.empty() && p.state == JobState::kFailed && p.attempts >= kMaxAttempts) return {};
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
    if (auto r = Move(job, JobState::kNotApplicable); !r) return r;
    Emit(job, JobState::kNotApplicable, 0, reason);
    return {};
  }
  job.chunk = ChunkFor(sensor.max_chunk);
  job.window = std::clamp<std::int64_t>(sensor.window, 1, kMaxWindow);
  return Move(job, JobState::kWaiting);
}

ExpectedVoid RelayEngine::FillSlots() {
  // Called after every event; most of the time nobody waits, so that is remembered.
  if (!waiting_) return {};
  if (!active_) {
    auto counted = store_.CountActive();
    if (!counted) return Unexpected(counted.error());
    active_ = *counted;
  }
  int free = limits_.max_concurrent - *active_;
  if (free <= 0) return {};
  auto waiting = store_.Waiting(free);
  if (!waiting) return Unexpected(waiting.error());
  if (static_cast<int>(waiting->size()) < free) waiting_ = false;
  std::vector<Job> offered;
  auto now = Clock::now();
  for (auto& job : *waiting) {
    auto id = NextWireId(job.row);
    if (!id) {
      log::Warn(kLog, id.error().message);
      continue;
    }
    job.job = *id;
    job.offset = 0;
    ++job.attempts;
    if (auto r = Move(job, JobState::kOffered); !r) return r;
    MarkProgress(job.row, now);
    offered.push_back(job);
  }
  if (offered.empty()) return {};
  // Jobs first, so that a sensor answering the offer at once finds its job.
  nlohmann::json add = nlohmann::json::array();
  for (auto& job : offered)
    if (auto entry = ServableEntry(job)) add.push_back(std::move(*entry));
  if (auto r = PushJobs(std::move(add), nlohmann::json::array()); !r) return r;
  for (auto& job : offered) {
    auto* t = TransportFor(job.sensor);
    if (!t) continue;
    if (auto r = t->Offer(job.sensor, OfferJson(job)); !r) {
      log::Warn(kLog, "offer to " + job.sensor + ": " + r.error().String());
      continue;
    }
    Emit(job, JobState::kOffered, 0,
         "offered " + job.version + " (seq " + std::to_string(job.seq) + ", " +
             std::to_string(job.size) + " B, chunk " + std::to_string(job.chunk) + ")");
  }
  return {};
}

std::optional<nlohmann::json> RelayEngine::ServableEntry(const Job& job) const {
  if (!IsActive(job.state) || !job.job) return std::nullopt;
  auto fw = firmware_.find(job.model);
  if (fw == firmware_.end() || fw->second.sha256 != job.sha256) return std::nullopt;
  return nlohmann::json{{"job", *job.job},       {"sensor", job.sensor}, {"sha256", job.sha256},
                        {"size", job.size},      {"chunk", job.chunk},   {"window", job.window},
                        {"path", fw->second.image.string()}};
}

ExpectedVoid RelayEngine::PushJobs(nlohmann::json add, nlohmann::json remove) {
  nlohmann::json delta = {{"add", std::move(add)}, {"remove", std::move(remove)}};
  for (auto& t : transports_)
    if (auto r = t->UpdateJobs(delta); !r) return r;
  return {};
}

ExpectedVoid RelayEngine::PushImages() {
  nlohmann::json jobs = nlohmann::json::array();
  auto open = store_.OpenJobs();
  if (!open) return Unexpected(open.error());
  for (auto& job : *open)
    if (auto entry = ServableEntry(job)) jobs.push_back(std::move(*entry));
  nlohmann::json images = nlohmann::json::array();
  for (auto& [model, fw] : firmware_)
    images.push_back({{"sha256", fw.sha256}, {"size", fw.size}, {"path", fw.image.string()}});
  nlohmann::json all = {{"jobs", jobs}, {"images", images}};
  for (auto& t : transports_)
    if (auto r = t->SetImages(all); !r) return r;
  return {};
}

ExpectedVoid RelayEngine::Finish(Job& job, JobState state, std::optional<int> result,
                                 const std::string& reason, bool blocked) {
  bool was_active = IsActive(job.state);
  Overlay(job);  // the offset it reached is written with its end
  if (result) job.result = *result;
  job.reason = reason;
  job.blocked = job.blocked || blocked;
  if (state == JobState::kSucceeded) job.offset = job.size;
  if (auto r = Move(job, state); !r) return r;
  progress_at_.erase(job.row);
  if (was_active) {
    if (job.job)
      if (auto r = PushJobs(nlohmann::json::array(), nlohmann::json::array({*job.job})); !r) return r;
    if (auto* t = TransportFor(job.sensor))
      if (auto r = t->ClearOffer(job.sensor); !r)
        log::Warn(kLog, "clearing the offer to " + job.sensor + ": " + r.error().String());
  }
  bool ok = state == JobState::kSucceeded;
  Emit(job, ok ? JobState::kSucceeded : JobState::kFailed, ok ? 100 : job.Progress(),
       state == JobState::kCancelled ? "cancelled: " + reason : reason);
  return {};
}

void RelayEngine::MarkProgress(std::int64_t row, Clock::time_point at, std::int64_t offset,
                               bool keep_older) {
  bool was_idle = progress_at_.empty();
  if (keep_older)
    progress_at_.try_emplace(row, Watch{at, offset});
  else
    progress_at_[row] = Watch{at, offset};
  if (was_idle && on_first_active_) on_first_active_();
}

void RelayEngine::Overlay(Job& job) const {
  auto it = progress_at_.find(job.row);
  if (it != progress_at_.end() && it->second.offset > job.offset) job.offset = it->second.offset;
}

void RelayEngine::Tick(Clock::time_point now) {
  std::vector<std::int64_t> expired;
  for (auto& [row, watch] : progress_at_)
    if (now - watch.at >= limits_.job_timeout) expired.push_back(row);
  if (expired.empty()) return;
  auto open = store_.OpenJobs();
  if (!open) {
    log::Error(kLog, open.error().String());
    return;
  }
  for (auto& job : *open) {
    if (std::find(expired.begin(), expired.end(), job.row) == expired.end()) continue;
    if (!IsActive(job.state)) {
      progress_at_.erase(job.row);
      continue;
    }
    auto secs = std::to_string(limits_.job_timeout.count());
    log::Warn(kLog, "sensor " + job.sensor + ": no progress on job " +
                        std::to_string(job.job.value_or(0)) + " for " + secs + " s; failing it");
    if (job.job)
      if (auto* t = TransportFor(job.sensor))
        if (auto r = t->SendCmd(job.sensor, {{"job", *job.job}, {"op", "cancel"}}); !r)
          log::Warn(kLog, "cancel to " + job.sensor + ": " + r.error().String());
    if (auto r = Finish(job, JobState::kFailed, std::nullopt,
                        "no progress for " + secs + " s (relay.job_timeout_s)", false);
        !r)
      log::Error(kLog, r.error().String());
  }
  for (auto row : expired) progress_at_.erase(row);
  if (auto r = FillSlots(); !r) log::Error(kLog, "offering waiting jobs: " + r.error().String());
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
  if (*type != "relay.hello" && *type != "relay.status") {
    log::Debug(kLog, "ignoring transport event " + *type);
    return;
  }
  // All an event writes is one commit, without an fsync of its own (docs/relay.md): the
  // sensors' progress events that follow are durable commits and carry these rows to the
  // disk with them, and a power cut in between loses at most a step the sensor repeats.
  store::Transaction tx(db_, store::Durability::kDeferred);
  if (*type == "relay.hello")
    OnHello(GetString(event, "transport").value_or(""), *sensor, *msg);
  else
    OnStatus(*sensor, *msg);
  if (auto r = FillSlots(); !r) log::Error(kLog, "offering waiting jobs: " + r.error().String());
  if (auto r = tx.Commit(); !r) {
    active_.reset();
    log::Error(kLog, r.error().WithContext("sensor " + *sensor).String());
  }
}

void RelayEngine::OnHello(const std::string& transport, const std::string& id,
                          const nlohmann::json& msg) {
  auto model = GetString(msg, "model");
  auto version = GetString(msg, "version");
  auto seq = GetInt(msg, "seq");
  auto slot = GetInt(msg, "slot");
  auto max_chunk = GetInt(msg, "max_chunk");
  auto window = GetInt(msg, "window");
  if (!model || !IsSafeName(*model) || !version || version->size() > 64 || !seq || *seq < 0 ||
      !slot || *slot < 0 || !max_chunk || !window || *window < 1) {
    log::Debug(kLog, "dropping a malformed hello from " + id + ": " + msg.dump().substr(0, 200));
    return;
  }
  Sensor s{id,    transport, *model, *version, *seq, *slot, *max_chunk, *window,
           GetInt(msg, "state").value_or(0), GetInt(msg, "result").value_or(0)};
  s.vid = GetString(msg, "vid");
  s.cid = GetString(msg, "cid");
  auto known = store_.GetSensor(id);
  if (!known) {
    log::Error(kLog, known.error().String());
    return;
  }
  if (!*known && tracked_ >= limits_.max_sensors) {
    // Counted, not stored: a sensor beyond the limit costs nothing but this counter.
    if (ignored_hellos_++ % 1000 == 0)
      log::Warn(kLog, "ignoring the hello of " + id + ": already tracking relay.max_sensors = " +
                          std::to_string(limits_.max_sensors) + " sensors");
    return;
  }
  // A repeated hello saying nothing new is not written again.
  if (!*known || !(**known == s)) {
    if (auto r = store_.PutSensor(s, NowS()); !r) {
      log::Error(kLog, "storing the hello of " + id + ": " + r.error().String());
      return;
    }
    if (!*known) ++tracked_;
  }

  auto open = store_.OpenJobOf(id);
  if (!open) {
    log::Error(kLog, open.error().String());
    return;
  }
  if (*open) {
    Job& job = **open;
    // A sensor that was told to update says how it came back.
    if (job.state == JobState::kUpdating || job.state == JobState::kDownloaded) {
      ExpectedVoid r;
      if (s.seq >= job.seq)
        r = Finish(job, JobState::kSucceeded, kResultSuccess, "sensor runs " + s.version, false);
      else if (s.result == kResultReverted)
        r = Finish(job, JobState::kFailed, kResultReverted,
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
    log::Debug(kLog, "dropping a malformed status from " + id + ": " + msg.dump().substr(0, 200));
    return;
  }
  auto found = store_.OpenJobByWire(id, *wire);
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
  Overlay(job);
  auto reason = GetString(msg, "reason");
  if (reason && reason->size() > 256) {
    // Cut at a character boundary: half a UTF-8 character makes the progress event unprintable
    // as JSON (found by the hostile_sensors fuzz target).
    std::size_t cut = 256;
    while (cut > 0 && (static_cast<unsigned char>((*reason)[cut]) & 0xC0) == 0x80) --cut;
    reason = reason->substr(0, cut);
  }
  ExpectedVoid r;
  if (*result == kResultSuccess) {
    // The sensor runs the new image: P/state's sensors[] shows it now, not at its next hello.
    r = store_.SetSensorFirmware(id, job.version, job.seq);
    if (r) r = Finish(job, JobState::kSucceeded, kResultSuccess, "sensor runs " + job.version, false);
  } else if (*result == kResultReverted) {
    r = Finish(job, JobState::kFailed, kResultReverted,
               reason.value_or("sensor reverted to its previous firmware (result 8)"), true);
  } else if (*result != 0 && *result != kResultConnectionLost) {
    r = Finish(job, JobState::kFailed, static_cast<int>(*result),
               reason.value_or("sensor reported result " + std::to_string(*result) + " (" +
                               ResultName(*result) + ")"),
               false);
  } else if (*state == kStateDownloading && *result == 0) {
    if (job.state != JobState::kOffered && job.state != JobState::kDownloading) return;
    auto off = std::clamp<std::int64_t>(GetInt(msg, "off").value_or(job.offset), 0, job.size);
    // Only news is progress: a sensor repeating its offset does not hold its slot longer.
    bool moved = job.state != JobState::kDownloading || off > job.offset;
    if (!moved) return;
    bool announce = job.state != JobState::kDownloading ||
                    (off * 10 / job.size) != (job.offset * 10 / job.size);
    bool first = job.state != JobState::kDownloading;
    job.offset = off;
    MarkProgress(job.row, Clock::now(), off);
    // The move to DOWNLOADING is written; later offsets live in memory until the job's next
    // state (a sensor resumes from its own offset after a restart of the agent anyway).
    if (first) r = Move(job, JobState::kDownloading);
    if (r && announce)
      Emit(job, JobState::kDownloading, job.Progress(),
           std::to_string(off) + " of " + std::to_string(job.size) + " B");
  } else if (*state == kStateDownloaded && *result == 0) {
    // Also when already UPDATING: the update command may have been lost with a restart.
    if (job.state != JobState::kUpdating) {
      job.offset = job.size;
      MarkProgress(job.row, Clock::now());
      // Both moves in one commit (one fsync); the events follow what was written.
      r = db_.InTransaction([&]() -> ExpectedVoid {
        if (auto m = Move(job, JobState::kDownloaded); !m) return m;
        return Move(job, JobState::kUpdating);
      });
      if (!r) {
        log::Error(kLog, r.error().String());
        return;
      }
      Emit(job, JobState::kDownloaded, 100, "image verified by the sensor");
      Emit(job, JobState::kUpdating, 100, "update command sent");
    }
    if (auto* t = TransportFor(id)) r = t->SendCmd(id, {{"job", *job.job}, {"op", "update"}});
  }
  if (!r) log::Error(kLog, "sensor " + id + ": " + r.error().String());
}

// ---- reporting ---------------------------------------------------------------------------

void RelayEngine::Emit(const Job& job, JobState status, int progress, const std::string& msg) {
  if (!report_) return;
  report_({{"sensor", job.sensor},
           {"model", job.model},
           {"status", JobStateName(status)},
           {"progress", progress},
           {"msg", msg},
           {"job", job.job ? nlohmann::json(*job.job) : nlohmann::json()},
           {"seq", job.seq},
           {"version", job.version},
           {"result", job.result ? nlohmann::json(*job.result) : nlohmann::json()}});
}

Transport* RelayEngine::TransportFor(const std::string& sensor) {
  auto s = store_.GetSensor(sensor);
  if (!s || !*s) return nullptr;
  for (auto& t : transports_)
    if (t->Name() == (*s)->transport) return t.get();
  log::Warn(kLog, "sensor " + sensor + " came through transport \"" + (*s)->transport +
                      "\", which is not loaded");
  return nullptr;
}

nlohmann::json RelayEngine::SensorsJson() const {
  nlohmann::json out = nlohmann::json::array();
  auto listed = store_.List(limits_.max_listed);
  if (!listed) {
    log::Error(kLog, listed.error().String());
    return out;
  }
  for (auto& [s, job] : *listed) {
    if (job) Overlay(*job);
    out.push_back({{"id", s.id},
                   {"model", s.model},
                   {"version", s.version},
                   {"seq", s.seq},
                   {"job", job ? job->Json() : nlohmann::json()}});
  }
  return out;
}

nlohmann::json RelayEngine::CountsJson() const {
  nlohmann::json jobs = nlohmann::json::object();
  if (auto counts = store_.CountJobsByState())
    for (auto& [state, n] : *counts) jobs[state] = n;
  else
    log::Error(kLog, counts.error().String());
  return {{"tracked", tracked_},
          {"listed", std::min<std::int64_t>(tracked_, limits_.max_listed)},
          {"ignored_hellos", ignored_hellos_},
          {"dropped_events", dropped_events_ ? dropped_events_() : 0},
          {"jobs", jobs}};
}

Expected<nlohmann::json> RelayEngine::TransportStats(const std::string& transport) {
  for (auto& t : transports_)
    if (t->Name() == transport) return t->Stats();
  return Fail("not_found", "no relay transport named " + transport);
}

}  // namespace gantry::relay
