#include "rollout/orchestrator.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/log.hpp"
#include "core/time.hpp"
#include "crypto/base64url.hpp"
#include "mqtt/client.hpp"
#include "rollout/rollout_db.hpp"

namespace gantry::rollout {
namespace {

constexpr const char* kLog = "rollout";
using Json = nlohmann::json;

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Config {
  std::string name, rev, envelope;
  std::int64_t seq = 0;
  std::optional<std::string> group;
  std::vector<double> waves;
  int soak_s = 0, min_executed = 0, timeout_s = 0, retries = 0, max_inflight = 0;
  double abort_failed_pct = 0;
  std::string on_abort, root;
  std::vector<std::string> brokers;
};

struct Progress {  // the rollout row's moving parts, re-read every tick (operators write it)
  RolloutState state = RolloutState::kRunning;
  int wave = 1;
  std::optional<std::int64_t> wave_final_at;
  int abort_pending = 0, baseline_final = 0, baseline_bad = 0;
};

struct Device {
  std::string id;
  std::optional<int> wave;
  DeviceStatus status = DeviceStatus::kPending;
  int attempt = 0;
  std::optional<std::int64_t> sent_at, retry_at;
  std::string reason;
  int rolled_back = 0;  // 1 rollback sent, 2 the device reported it DONE
  std::string ts;
  bool dirty = false;
  bool is_new = false;
};

struct Known {  // what the device itself last said in P/state
  std::string rev;
  std::int64_t seq = 0;
  bool live = false;  // seen as a live (non-retained) message: retained state may be stale
};

Expected<Config> LoadConfig(store::Db& db, const std::string& name) {
  auto st = db.Prepare(
      "SELECT rev, seq, envelope, target_group, waves, soak_s, abort_failed_pct, min_executed, timeout_s, "
      "retries, max_inflight, on_abort, brokers, root FROM rollouts WHERE name = ?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, name);
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  if (!*row) return Fail("not_found", "no rollout named '" + name + "'");
  Config c;
  c.name = name;
  c.rev = st->Text(0);
  c.seq = st->Int(1);
  c.envelope = st->Text(2);
  if (!st->IsNull(3)) c.group = st->Text(3);
  auto waves = Json::parse(st->Text(4), nullptr, false);
  auto brokers = Json::parse(st->Text(12), nullptr, false);
  if (!waves.is_array() || !brokers.is_array()) return Fail("bad_db", "rollout '" + name + "' has a damaged row");
  for (auto& w : waves) c.waves.push_back(w.get<double>());
  for (auto& b : brokers) c.brokers.push_back(b.get<std::string>());
  c.soak_s = static_cast<int>(st->Int(5));
  c.abort_failed_pct = std::stod(st->Text(6));
  c.min_executed = static_cast<int>(st->Int(7));
  c.timeout_s = static_cast<int>(st->Int(8));
  c.retries = static_cast<int>(st->Int(9));
  c.max_inflight = static_cast<int>(st->Int(10));
  c.on_abort = st->Text(11);
  c.root = st->Text(13);
  return c;
}

Expected<Progress> LoadProgress(store::Db& db, const std::string& name) {
  auto st = db.Prepare(
      "SELECT state, wave, wave_final_at, abort_pending, baseline_final, baseline_bad FROM rollouts WHERE name = ?");
  if (!st) return Unexpected(st.error());
  st->Bind(1, name);
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  if (!*row) return Fail("not_found", "no rollout named '" + name + "'");
  Progress p;
  auto state = RolloutStateFromName(st->Text(0));
  if (!state) return Fail("bad_db", "rollout '" + name + "' has an unknown state " + st->Text(0));
  p.state = *state;
  p.wave = static_cast<int>(st->Int(1));
  if (!st->IsNull(2)) p.wave_final_at = st->Int(2);
  p.abort_pending = static_cast<int>(st->Int(3));
  p.baseline_final = static_cast<int>(st->Int(4));
  p.baseline_bad = static_cast<int>(st->Int(5));
  return p;
}

Expected<Json> BuildSummary(store::Db& db, const std::string& name) {
  auto cfg = LoadConfig(db, name);
  if (!cfg) return Unexpected(cfg.error());
  auto prog = LoadProgress(db, name);
  if (!prog) return Unexpected(prog.error());
  Json waves = Json::array();
  for (double pct : cfg->waves)
    waves.push_back({{"percent", pct}, {"size", 0}, {"succeeded", 0}, {"failed", 0}, {"timed_out", 0},
                     {"pending", 0}, {"cancelled", 0}, {"skipped", 0}});
  Json devices = Json::object();
  auto st = db.Prepare("SELECT device, wave, status, attempt, reason, ts FROM devices WHERE rollout = ? ORDER BY device");
  if (!st) return Unexpected(st.error());
  st->Bind(1, name);
  while (true) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    std::string status = st->Text(2);
    Json d = {{"status", status}, {"attempt", st->Int(3)}, {"reason", st->Text(4)}, {"ts", st->Text(5)}};
    if (!st->IsNull(1)) {
      auto w = st->Int(1);
      d["wave"] = w;
      if (w >= 1 && w <= static_cast<std::int64_t>(waves.size())) {
        auto& wj = waves[static_cast<size_t>(w - 1)];
        wj["size"] = wj["size"].get<int>() + 1;
        std::string key = status == "SUCCEEDED" ? "succeeded" : status == "FAILED" ? "failed"
                          : status == "TIMED_OUT" ? "timed_out" : status == "CANCELLED" ? "cancelled"
                          : status == "SKIPPED" ? "skipped" : "pending";
        wj[key] = wj[key].get<int>() + 1;
      }
    }
    devices[st->Text(0)] = std::move(d);
  }
  return Json{{"name", name}, {"rev", cfg->rev}, {"seq", cfg->seq}, {"state", Name(prog->state)},
              {"wave", prog->wave}, {"waves", waves}, {"devices", devices}, {"ts", NowRfc3339()}};
}

// Transient failures are worth another attempt: the network, the mirror, the disk filling.
bool IsTransient(const std::string& msg) {
  for (const char* code : {"io:", "http:", "network:", "no_space:", "hash_mismatch:", "no_source:"})
    if (msg.rfind(code, 0) == 0) return true;
  return false;
}

class Orchestrator {
 public:
  Orchestrator(store::Db db, Config cfg) : db_(std::move(db)), cfg_(std::move(cfg)) {}

  Expected<RolloutState> Run(const std::atomic<bool>& stop) {
    if (auto r = LoadDevices(); !r) return Unexpected(r.error());
    mqtt::Options o;
    o.uri = cfg_.brokers.front();
    o.servers = cfg_.brokers;
    o.client_id = "gantryctl-rollout-" + std::to_string(getpid());
    o.version = 4;  // 3.1.1: what every broker (a RabbitMQ cluster too) speaks
    o.clean_session = true;
    for (const char* kind : {"state", "progress", "reply"}) o.subscriptions.push_back(cfg_.root + "/+/" + kind);
    client_ = mqtt::MakePahoClient(o);
    client_->Start({[this] {
                      std::lock_guard l(mu_);
                      ready_ = true;
                    },
                    [](const std::string&) {},
                    [this](mqtt::Message m) {
                      std::lock_guard l(mu_);
                      inbox_.push_back(std::move(m));
                    }});
    log::Info(kLog, "rollout " + cfg_.name + " of " + cfg_.rev + " via " + cfg_.brokers.front());
    // After a restart, whatever was sent and is not final goes out again with the same ids:
    // the agents answer known ids from their stored replies (and replay a final status).
    bool resent = false;
    std::int64_t ready_at = 0, last_summary = 0;
    std::string last_summary_text;
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::deque<mqtt::Message> batch;
      bool ready;
      {
        std::lock_guard l(mu_);
        batch.swap(inbox_);
        ready = ready_;
      }
      if (!ready) continue;
      auto now = NowMs();
      if (!ready_at) {
        ready_at = now;
        if (cfg_.group) Publish(cfg_.root + "/group/" + *cfg_.group + "/cmd",
                                Json{{"id", cfg_.name + ".discover." + std::to_string(now)}, {"op", "get-state"}}.dump());
      }
      for (auto& m : batch) Handle(m);
      // Retained and requested states need a moment to arrive before waves are drawn.
      bool settled = now - ready_at >= 3000;
      auto prog = LoadProgress(db_, cfg_.name);
      if (!prog) return Unexpected(prog.error());
      if (settled) {
        if (!resent) {
          for (auto& [id, d] : devices_)
            if (d.status == DeviceStatus::kPending && d.sent_at) SendUpdate(d);
          for (auto& [id, d] : devices_)
            if (d.rolled_back == 1) SendOp(d, "rollback");
          resent = true;
        }
        Tick(*prog, now);
      }
      if (auto r = Flush(); !r) return Unexpected(r.error());
      for (auto& p : outgoing_) Publish(p.first, p.second);
      outgoing_.clear();
      RetryUnacked();
      prog = LoadProgress(db_, cfg_.name);
      if (!prog) return Unexpected(prog.error());
      bool finished = settled && prog->state != RolloutState::kRunning && InFlight(now) == 0;
      if (now - last_summary >= 1000 || finished) {
        auto s = BuildSummary(db_, cfg_.name);
        if (s) {
          (*s)["ts"] = "";
          auto text = s->dump();
          if (text != last_summary_text || finished) {
            last_summary_text = text;
            (*s)["ts"] = NowRfc3339();
            Publish(cfg_.root + "/rollouts/" + cfg_.name + "/status", s->dump(), true);
          }
        }
        last_summary = now;
      }
      if (finished) {
        WaitAcked();
        client_->Stop();
        return prog->state;
      }
    }
    WaitAcked();
    client_->Stop();
    auto prog = LoadProgress(db_, cfg_.name);
    if (!prog) return Unexpected(prog.error());
    return prog->state;
  }

 private:
  ExpectedVoid LoadDevices() {
    auto st = db_.Prepare(
        "SELECT device, wave, status, attempt, sent_at, retry_at, reason, rolled_back, ts FROM devices WHERE rollout = ?");
    if (!st) return Unexpected(st.error());
    st->Bind(1, cfg_.name);
    while (true) {
      auto row = st->Step();
      if (!row) return Unexpected(row.error());
      if (!*row) break;
      Device d;
      d.id = st->Text(0);
      if (!st->IsNull(1)) d.wave = static_cast<int>(st->Int(1));
      d.status = DeviceStatusFromName(st->Text(2)).value_or(DeviceStatus::kPending);
      d.attempt = static_cast<int>(st->Int(3));
      if (!st->IsNull(4)) d.sent_at = st->Int(4);
      if (!st->IsNull(5)) d.retry_at = st->Int(5);
      d.reason = st->Text(6);
      d.rolled_back = static_cast<int>(st->Int(7));
      d.ts = st->Text(8);
      devices_[d.id] = d;
    }
    return {};
  }

  // Writes every changed device in one transaction, before anything is published.
  ExpectedVoid Flush() {
    return db_.InTransaction([&]() -> ExpectedVoid {
      for (auto& [id, d] : devices_) {
        if (!d.dirty) continue;
        auto opt = [](std::optional<std::int64_t> v) { return v ? std::to_string(*v) : std::string(); };
        ExpectedVoid r;
        auto st = db_.Prepare(
            "INSERT INTO devices(rollout, device, wave, status, attempt, sent_at, retry_at, reason, rolled_back, ts) "
            "VALUES (?1, ?2, ?3, ?4, ?5, nullif(?6, ''), nullif(?7, ''), ?8, ?9, ?10) "
            "ON CONFLICT(rollout, device) DO UPDATE SET wave = ?3, status = ?4, attempt = ?5, sent_at = nullif(?6, ''), "
            "retry_at = nullif(?7, ''), reason = ?8, rolled_back = ?9, ts = ?10");
        if (!st) return Unexpected(st.error());
        st->Bind(1, cfg_.name).Bind(2, d.id);
        if (d.wave) st->Bind(3, *d.wave); else st->Bind(3, std::nullopt);
        st->Bind(4, Name(d.status)).Bind(5, d.attempt).Bind(6, opt(d.sent_at)).Bind(7, opt(d.retry_at));
        st->Bind(8, d.reason).Bind(9, d.rolled_back).Bind(10, d.ts);
        if (r = st->Run(); !r) return r;
        d.dirty = false;
      }
      return {};
    });
  }

  void Touch(Device& d) {
    d.dirty = true;
    d.ts = NowRfc3339();
  }

  bool Apply(Device& d, DeviceEvent e, std::string reason) {
    auto to = Next(d.status, e);
    if (!to) return false;
    log::Info(kLog, d.id + ": " + std::string(Name(d.status)) + " -> " + std::string(Name(*to)) +
                        (reason.empty() ? "" : " (" + reason + ")"));
    d.status = *to;
    d.reason = std::move(reason);
    if (*to != DeviceStatus::kPending) d.sent_at.reset();
    Touch(d);
    return true;
  }

  bool OnTarget(const std::string& id) const {
    auto k = known_.find(id);
    return k != known_.end() && k->second.rev == cfg_.rev && k->second.seq == cfg_.seq;
  }

  void Handle(const mqtt::Message& m) {
    if (m.topic.rfind(cfg_.root + "/", 0) != 0) return;
    auto rest = m.topic.substr(cfg_.root.size() + 1);
    auto slash = rest.find('/');
    if (slash == std::string::npos || rest.find('/', slash + 1) != std::string::npos) return;
    std::string dev = rest.substr(0, slash), kind = rest.substr(slash + 1);
    if (dev == "group" || dev == "rollouts") return;
    auto j = Json::parse(m.payload, nullptr, false);  // hostile input: anything odd is ignored
    if (!j.is_object()) return;
    if (kind == "state") return OnState(dev, j, m.retain);
    auto id = j.value("id", Json()).is_string() ? j["id"].get<std::string>() : std::string();
    std::string prefix = cfg_.name + "." + dev + ".";
    if (id.rfind(prefix, 0) != 0) return;
    auto it = devices_.find(dev);
    if (it == devices_.end()) return;
    auto& d = it->second;
    std::string suffix = id.substr(prefix.size());
    if (kind == "progress") {
      std::string status = j.value("status", Json()).is_string() ? j["status"].get<std::string>() : "";
      std::string msg = j.value("msg", Json()).is_string() ? j["msg"].get<std::string>() : "";
      if (suffix == "rollback") {
        if (status == "DONE" && d.rolled_back == 1) {
          d.rolled_back = 2;
          d.reason = "rolled back";
          Touch(d);
        }
        return;
      }
      if (suffix.empty() || !std::all_of(suffix.begin(), suffix.end(), ::isdigit) || suffix.size() > 6) return;
      int attempt = std::stoi(suffix);
      if (status == "DONE") {
        Apply(d, DeviceEvent::kDone, "");
        return;
      }
      if (attempt != d.attempt || d.status != DeviceStatus::kPending || !d.sent_at) return;
      if (status == "ERROR" || status == "WONTGO" || status == "CANCELLED") Failed(d, status + ": " + msg, msg);
      return;
    }
    if (kind == "reply" && j.value("ok", true) == false && suffix == std::to_string(d.attempt) &&
        d.status == DeviceStatus::kPending && d.sent_at) {
      auto err = j.value("error", Json::object());
      std::string msg = err.is_object() ? err.value("code", "") + ": " + err.value("message", "") : "";
      Failed(d, "refused: " + msg, msg);
    }
  }

  void Failed(Device& d, std::string reason, const std::string& msg) {
    if (OnTarget(d.id)) {  // e.g. a downgrade refusal: an earlier attempt installed it
      Apply(d, DeviceEvent::kDone, "");
      return;
    }
    if (IsTransient(msg) && d.attempt <= cfg_.retries) {
      Apply(d, DeviceEvent::kTransient, std::move(reason));
      d.retry_at = NowMs() + Backoff(d.attempt);
    } else {
      Apply(d, DeviceEvent::kFailed, std::move(reason));
    }
  }

  static std::int64_t Backoff(int attempt) {
    return std::min<std::int64_t>(60000, 2000LL << std::min(attempt - 1, 5));
  }

  void OnState(const std::string& dev, const Json& j, bool retained) {
    Known k;
    k.rev = j.value("rev", Json()).is_string() ? j["rev"].get<std::string>() : "";
    k.seq = j.value("seq", Json()).is_number_integer() ? j["seq"].get<std::int64_t>() : 0;
    k.live = !retained;
    auto& slot = known_[dev];
    if (retained && slot.live) return;  // a live state outranks a (possibly stale) retained one
    slot = k;
    auto it = devices_.find(dev);
    if (it == devices_.end()) {
      if (!cfg_.group) return;
      auto groups = j.value("groups", Json::array());
      if (!groups.is_array() || std::find(groups.begin(), groups.end(), Json(*cfg_.group)) == groups.end()) return;
      Device d;
      d.id = dev;
      d.is_new = true;
      Touch(d);
      log::Info(kLog, dev + " joins (group " + *cfg_.group + ")");
      it = devices_.emplace(dev, d).first;
    }
    auto& d = it->second;
    if (!OnTarget(dev)) return;
    if (d.status == DeviceStatus::kPending && !d.sent_at && d.attempt == 0)
      Apply(d, DeviceEvent::kAlreadyOn, "already on " + cfg_.rev);
    else if (d.attempt > 0)
      Apply(d, DeviceEvent::kDone, "");
  }

  int InFlight(std::int64_t now) const {
    int n = 0;
    for (auto& [id, d] : devices_) {
      if (d.status == DeviceStatus::kPending && d.sent_at) ++n;
      // A rollback is awaited for at most the time-out.
      if (d.rolled_back == 1 && rollback_sent_at_.count(id) &&
          now - rollback_sent_at_.at(id) < cfg_.timeout_s * 1000LL)
        ++n;
    }
    return n;
  }

  void Tick(const Progress& prog, std::int64_t now) {
    int n = static_cast<int>(devices_.size());
    int nwaves = static_cast<int>(cfg_.waves.size());
    auto target = [&](int k) {
      return k >= nwaves ? n : static_cast<int>(std::ceil(cfg_.waves[static_cast<size_t>(k - 1)] * n / 100.0 - 1e-9));
    };
    // Time-outs, whatever the rollout's state: a paused rollout still tracks what it sent.
    for (auto& [id, d] : devices_) {
      if (d.status != DeviceStatus::kPending || !d.sent_at || now - *d.sent_at < cfg_.timeout_s * 1000LL) continue;
      std::string reason = "no final status within " + std::to_string(cfg_.timeout_s) + " s of attempt " +
                           std::to_string(d.attempt);
      if (d.attempt <= cfg_.retries) {
        Apply(d, DeviceEvent::kTransient, reason);
        d.retry_at = now + Backoff(d.attempt);
      } else {
        Apply(d, DeviceEvent::kTimedOut, reason);
      }
    }
    if (prog.state == RolloutState::kAborted) {
      for (auto& [id, d] : devices_) {
        if ((d.status == DeviceStatus::kPending && !d.sent_at) || d.status == DeviceStatus::kRetrying)
          Apply(d, DeviceEvent::kCancel, "cancelled by abort");
        if (cfg_.on_abort == "cancel" && d.status == DeviceStatus::kPending && d.sent_at && !cancel_sent_.count(id)) {
          cancel_sent_.insert(id);
          SendOp(d, "cancel");
        }
        if (cfg_.on_abort == "rollback" && d.status == DeviceStatus::kSucceeded && d.rolled_back == 0) {
          d.rolled_back = 1;
          Touch(d);
          SendOp(d, "rollback");
        }
      }
      return;
    }
    if (prog.state != RolloutState::kRunning) return;
    // The abort condition, on what became final since the last resume.
    int final_count = 0, bad = 0;
    for (auto& [id, d] : devices_) {
      if (d.status == DeviceStatus::kSucceeded || d.status == DeviceStatus::kFailed || d.status == DeviceStatus::kTimedOut) ++final_count;
      if (d.status == DeviceStatus::kFailed || d.status == DeviceStatus::kTimedOut) ++bad;
    }
    final_count -= prog.baseline_final;
    bad -= prog.baseline_bad;
    if (final_count >= cfg_.min_executed && final_count > 0 && bad * 100.0 > cfg_.abort_failed_pct * final_count) {
      auto event = cfg_.on_abort == "pause" ? RolloutEvent::kThresholdPause : RolloutEvent::kThresholdAbort;
      auto to = Next(prog.state, event);
      log::Warn(kLog, "abort condition: " + std::to_string(bad) + " of " + std::to_string(final_count) +
                          " final devices failed or timed out; rollout " + std::string(Name(*to)));
      SetState(*to, *to == RolloutState::kAborted);
      return;
    }
    // Draw the current wave from the devices not yet placed (sorted by id: stable).
    int placed = 0;
    for (auto& [id, d] : devices_) placed += d.wave ? 1 : 0;
    for (auto& [id, d] : devices_) {
      if (placed >= target(prog.wave)) break;
      if (d.wave) continue;
      d.wave = prog.wave;
      Touch(d);
      ++placed;
    }
    // Send: retries whose backoff passed, then the wave's devices not yet sent.
    int inflight = InFlight(now);
    for (auto& [id, d] : devices_) {
      if (inflight >= cfg_.max_inflight) break;
      if (d.status == DeviceStatus::kRetrying && d.retry_at && *d.retry_at <= now) {
        Apply(d, DeviceEvent::kResend, "");
        d.attempt += 1;
        d.retry_at.reset();
        d.sent_at = now;
        SendUpdate(d);
        ++inflight;
      } else if (d.status == DeviceStatus::kPending && !d.sent_at && d.wave && *d.wave <= prog.wave) {
        if (OnTarget(id) && d.attempt == 0) {
          Apply(d, DeviceEvent::kAlreadyOn, "already on " + cfg_.rev);
          continue;
        }
        d.attempt = std::max(d.attempt, 1);
        d.sent_at = now;
        Touch(d);
        SendUpdate(d);
        ++inflight;
      }
    }
    // Advance when every placed device is final and the soak passed.
    bool all_final = placed >= target(prog.wave);
    for (auto& [id, d] : devices_)
      if (d.wave && !IsFinal(d.status)) all_final = false;
    if (!all_final) {
      if (prog.wave_final_at) SetWave(prog.wave, std::nullopt);
      return;
    }
    if (!prog.wave_final_at) {
      log::Info(kLog, "wave " + std::to_string(prog.wave) + " final; soaking " + std::to_string(cfg_.soak_s) + " s");
      SetWave(prog.wave, now);
      return;
    }
    if (now - *prog.wave_final_at < cfg_.soak_s * 1000LL) return;
    if (prog.wave < nwaves) {
      log::Info(kLog, "wave " + std::to_string(prog.wave + 1) + " starts");
      SetWave(prog.wave + 1, std::nullopt);
    } else if (placed == n) {
      SetState(RolloutState::kDone, false);
    }
  }

  void SetState(RolloutState s, bool abort_pending) {
    auto r = db_.Run("UPDATE rollouts SET state = ?, abort_pending = ? WHERE name = ?", Name(s), abort_pending ? 1 : 0,
                     cfg_.name);
    if (!r) log::Error(kLog, r.error().String());
  }
  void SetWave(int wave, std::optional<std::int64_t> final_at) {
    auto r = final_at ? db_.Run("UPDATE rollouts SET wave = ?, wave_final_at = ? WHERE name = ?", wave, *final_at, cfg_.name)
                      : db_.Run("UPDATE rollouts SET wave = ?, wave_final_at = NULL WHERE name = ?", wave, cfg_.name);
    if (!r) log::Error(kLog, r.error().String());
  }

  // Queued until the device rows are committed: the state is written before the side effect.
  void SendUpdate(const Device& d) {
    std::string cmd = cfg_.root + "/" + d.id + "/cmd";
    std::string id = cfg_.name + "." + d.id + "." + std::to_string(d.attempt);
    // Confirm the device's own state first where retained state is not to be trusted (a
    // cluster's retained store is node-local) or after an attempt that may have installed.
    auto k = known_.find(d.id);
    if (d.attempt > 1 || k == known_.end() || !k->second.live)
      outgoing_.emplace_back(cmd, Json{{"id", id + ".q" + std::to_string(NowMs())}, {"op", "get-state"}}.dump());
    outgoing_.emplace_back(cmd, "{\"id\":" + Json(id).dump() + ",\"op\":\"update\",\"revision\":" + cfg_.envelope + "}");
  }
  void SendOp(const Device& d, const std::string& op) {
    rollback_sent_at_[d.id] = NowMs();
    outgoing_.emplace_back(cfg_.root + "/" + d.id + "/cmd", Json{{"id", cfg_.name + "." + d.id + "." + op}, {"op", op}}.dump());
  }

  void Publish(const std::string& topic, const std::string& payload, bool retain = false) {
    {
      std::lock_guard l(mu_);
      ++unacked_;
    }
    client_->Publish({topic, payload, 1, retain, "", ""}, [this, topic, payload, retain](bool ok) {
      std::lock_guard l(mu_);
      --unacked_;
      if (!ok) failed_.push_back({topic, payload, retain});
    });
  }
  // A publish lost with the connection goes out again once connected (QoS 1 ids make the
  // repeat harmless).
  void RetryUnacked() {
    if (!client_->Connected()) return;
    std::vector<Pub> again;
    {
      std::lock_guard l(mu_);
      again.swap(failed_);
    }
    for (auto& p : again) Publish(p.topic, p.payload, p.retain);
  }
  void WaitAcked() {
    for (int i = 0; i < 100; ++i) {
      RetryUnacked();
      {
        std::lock_guard l(mu_);
        if (unacked_ == 0 && failed_.empty()) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  struct Pub {
    std::string topic, payload;
    bool retain;
  };
  store::Db db_;
  Config cfg_;
  std::map<std::string, Device> devices_;
  std::map<std::string, Known> known_;
  std::set<std::string> cancel_sent_;
  std::map<std::string, std::int64_t> rollback_sent_at_;
  std::vector<std::pair<std::string, std::string>> outgoing_;
  std::unique_ptr<mqtt::Client> client_;
  std::mutex mu_;
  std::deque<mqtt::Message> inbox_;
  std::vector<Pub> failed_;
  int unacked_ = 0;
  bool ready_ = false;
};

}  // namespace

ExpectedVoid CreateRollout(const std::filesystem::path& path, const Plan& plan) {
  auto env = Json::parse(plan.envelope, nullptr, false);
  if (!env.is_object() || !env.contains("payload"))
    return Fail("bad_input", "the revision is not a signed envelope (make one with gantryctl sign)");
  // The rev and seq come from the signed payload (base64url JSON); the agent verifies them.
  auto decoded = env["payload"].is_string() ? crypto::Base64UrlDecode(env["payload"].get<std::string>())
                                            : Expected<std::string>(Unexpected(Error{"bad_input", "no payload"}));
  Json payload = decoded ? Json::parse(*decoded, nullptr, false) : Json();
  if (!payload.is_object() || !payload.value("rev", Json()).is_string() || !payload.value("seq", Json()).is_number_integer())
    return Fail("bad_input", "the envelope's payload names no rev and seq");
  std::string rev = payload["rev"];
  auto seq = payload["seq"].get<std::int64_t>();
  if (plan.waves.empty() || plan.waves.back() != 100)
    return Fail("bad_input", "--waves must be rising cumulative percentages ending at 100");
  for (size_t i = 0; i < plan.waves.size(); ++i)
    if (plan.waves[i] <= 0 || plan.waves[i] > 100 || (i && plan.waves[i] <= plan.waves[i - 1]))
      return Fail("bad_input", "--waves must be rising cumulative percentages ending at 100");
  auto db = OpenRolloutDb(path);
  if (!db) return Unexpected(db.error());
  return db->InTransaction([&]() -> ExpectedVoid {
    auto st = db->Prepare("SELECT rev FROM rollouts WHERE name = ?");
    if (!st) return Unexpected(st.error());
    st->Bind(1, plan.name);
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (*row) {
      if (st->Text(0) != rev)
        return Fail("conflict", "rollout '" + plan.name + "' exists with revision " + st->Text(0) + ", not " + rev);
      return {};  // started again: continue it
    }
    Json waves = plan.waves, brokers = plan.brokers;
    auto r = db->Run(
        "INSERT INTO rollouts(name, rev, seq, envelope, target_group, waves, soak_s, abort_failed_pct, min_executed, "
        "timeout_s, retries, max_inflight, on_abort, brokers, root, state, created_at) "
        "VALUES (?, ?, ?, ?, nullif(?, ''), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'RUNNING', ?)",
        plan.name, rev, seq, env.dump(), plan.group.value_or(""), waves.dump(), plan.soak_s,
        std::to_string(plan.abort_failed_pct), plan.min_executed, plan.timeout_s, plan.retries, plan.max_inflight,
        plan.on_abort, brokers.dump(), plan.root, NowRfc3339());
    if (!r) return r;
    for (const auto& d : plan.devices) {
      r = db->Run("INSERT OR IGNORE INTO devices(rollout, device, status, ts) VALUES (?, ?, 'PENDING', ?)", plan.name, d,
                  NowRfc3339());
      if (!r) return r;
    }
    return {};
  });
}

Expected<RolloutState> Run(const std::filesystem::path& path, const std::string& name, const std::atomic<bool>& stop) {
  // One orchestrator per rollout: the kernel drops the lock when its holder dies, however.
  std::string lock_path = path.string() + "." + name + ".lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Fail("io", "cannot open " + lock_path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return Fail("busy", "another orchestrator runs rollout '" + name + "' (" + lock_path + " is locked)");
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{fd};
  auto db = OpenRolloutDb(path);
  if (!db) return Unexpected(db.error());
  auto cfg = LoadConfig(*db, name);
  if (!cfg) return Unexpected(cfg.error());
  if (cfg->brokers.empty()) return Fail("bad_db", "rollout '" + name + "' has no broker");
  Orchestrator o(std::move(*db), std::move(*cfg));
  return o.Run(stop);
}

Expected<nlohmann::json> Summary(const std::filesystem::path& path, const std::string& name) {
  auto db = OpenRolloutDb(path);
  if (!db) return Unexpected(db.error());
  return BuildSummary(*db, name);
}

}  // namespace gantry::rollout
