#include "dashboard/fleet.hpp"

#include "core/log.hpp"
#include "core/time.hpp"

namespace gantry::dashboard {
namespace {

constexpr const char* kLog = "dashboard";

using json = nlohmann::json;

bool IsFinal(const std::string& s) {
  return s == "DONE" || s == "ERROR" || s == "WONTGO" || s == "CANCELLED";
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The payload's own ts when it has a readable one, else when the dashboard received it.
std::int64_t TsMs(const json& j, std::int64_t now_ms) {
  auto it = j.find("ts");
  if (it == j.end() || !it->is_string()) return now_ms;
  auto s = ParseRfc3339(it->get_ref<const std::string&>());
  return s ? *s * 1000 : now_ms;
}

json NumberOrNull(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? *it : json();
}

}  // namespace

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Fleet::Fleet(std::string root) : root_(std::move(root)) {}

std::vector<std::string> Fleet::Subscriptions() const {
  return {root_ + "/+/state", root_ + "/+/online", root_ + "/+/progress", root_ + "/rollouts/+/status"};
}

void Fleet::Drop(const std::string& why) {
  ++dropped_;
  stats_dirty_ = true;
  // One line per distinct reason, so a flood of the same junk does not flood the log.
  if (why != last_drop_) log::Warn(kLog, "ignored: " + why);
  last_drop_ = why;
}

Fleet::Device* Fleet::DeviceFor(const std::string& id) {
  auto it = devices_.find(id);
  if (it != devices_.end()) return &it->second;
  if (devices_.size() >= kMaxDevices) {
    Drop("more than " + std::to_string(kMaxDevices) + " devices");
    return nullptr;
  }
  stats_dirty_ = true;
  return &devices_[id];
}

void Fleet::ForgetIfEmpty(const std::string& id) {
  auto it = devices_.find(id);
  if (it == devices_.end() || it->second.state || it->second.online || !it->second.events.empty()) return;
  devices_.erase(it);
  stats_dirty_ = true;
}

void Fleet::Apply(const std::string& topic, const std::string& payload, std::int64_t now_ms) {
  ++messages_;
  stats_dirty_ = true;
  // <root>/<id>/<kind> or <root>/rollouts/<name>/status
  std::string prefix = root_ + "/";
  if (topic.compare(0, prefix.size(), prefix) != 0) return Drop("topic outside the root: " + topic.substr(0, 300));
  std::string rest = topic.substr(prefix.size());
  auto slash = rest.find('/');
  if (slash == std::string::npos) return Drop("topic without a kind: " + topic.substr(0, 300));
  std::string id = rest.substr(0, slash), kind = rest.substr(slash + 1);
  bool rollout = false;
  if (id == "rollouts" && kind.find('/') != std::string::npos) {
    auto s2 = kind.find('/');
    if (kind.substr(s2 + 1) != "status") return Drop("unexpected rollout topic " + topic.substr(0, 300));
    id = kind.substr(0, s2);
    kind = "status";
    rollout = true;
  }
  if (id.empty() || id.size() > kMaxIdBytes) return Drop("device or rollout name of " + std::to_string(id.size()) + " bytes");
  if (payload.size() > kMaxPayloadBytes)
    return Drop(topic.substr(0, 300) + ": payload of " + std::to_string(payload.size()) + " bytes");

  // An empty retained payload clears the topic: the device or rollout is gone.
  if (payload.empty()) {
    if (rollout) {
      if (rollouts_.erase(id)) dirty_rollouts_.insert(id);
      return;
    }
    auto it = devices_.find(id);
    if (it == devices_.end()) return;
    if (kind == "state") it->second.state.reset();
    if (kind == "online") it->second.online.reset();
    dirty_devices_.insert(id);
    ForgetIfEmpty(id);
    return;
  }
  auto body = json::parse(payload, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return Drop(topic.substr(0, 300) + ": not a JSON object");

  if (rollout) {
    rollouts_[id] = std::move(body);
    rollouts_[id]["name"] = id;  // the topic names it, whatever the body claims
    dirty_rollouts_.insert(id);
    return;
  }
  if (kind != "state" && kind != "online" && kind != "progress") return Drop("unexpected topic " + topic.substr(0, 300));
  if (kind == "online" && !(body.contains("online") && body["online"].is_boolean()))
    return Drop(topic.substr(0, 300) + ": no boolean \"online\"");
  if (kind == "progress" && Str(body, "status").empty()) return Drop(topic.substr(0, 300) + ": progress without a status");
  Device* d = DeviceFor(id);
  if (!d) return;
  std::int64_t ts = TsMs(body, now_ms);
  if (kind == "state") {
    d->state = body;
    d->state_order = ++order_;
    d->last = {{"kind", "state"}, {"text", "state " + Str(body, "status")}, {"ts_ms", ts}};
  } else if (kind == "online") {
    auto on = body.find("online");
    d->online = body;
    d->last = {{"kind", "online"}, {"text", on->get<bool>() ? "online" : "offline"}, {"ts_ms", ts}};
  } else {
    std::string status = Str(body, "status");
    body["received_ms"] = now_ms;
    d->events.push_back(body);
    while (d->events.size() > kEventsKept) d->events.pop_front();
    d->progress_order = ++order_;
    std::string text = status;
    auto pct = body.find("progress");
    if (!IsFinal(status) && pct != body.end() && pct->is_number()) text += " " + std::to_string(pct->get<long long>()) + "%";
    if (!Str(body, "msg").empty()) text += ": " + Str(body, "msg");
    d->last = {{"kind", "progress"}, {"text", text}, {"ts_ms", ts}};
  }
  dirty_devices_.insert(id);
}

json Fleet::Summary(const std::string& id, const Device& d) const {
  json s = {{"id", id}, {"online", nullptr}, {"rev", nullptr}, {"seq", nullptr}, {"status", ""},
            {"groups", json::array()}, {"containers", {0, 0}}, {"sensors", {0, 0}}, {"progress", nullptr},
            {"last", d.last.is_null() ? json() : d.last}};
  if (d.online) s["online"] = (*d.online)["online"];
  if (d.state) {
    const json& st = *d.state;
    if (auto it = st.find("rev"); it != st.end() && (it->is_string() || it->is_null())) s["rev"] = *it;
    s["seq"] = NumberOrNull(st, "seq");
    s["status"] = Str(st, "status");
    if (auto g = st.find("groups"); g != st.end() && g->is_array())
      for (auto& x : *g)
        if (x.is_string()) s["groups"].push_back(x);
    int running = 0, total = 0;
    if (auto c = st.find("containers"); c != st.end() && c->is_array())
      for (auto& x : *c) {
        ++total;
        if (x.is_object() && Str(x, "state") == "RUNNING") ++running;
      }
    s["containers"] = {running, total};
    int updated = 0, sensors = 0;
    if (auto c = st.find("sensors"); c != st.end() && c->is_array())
      for (auto& x : *c) {
        ++sensors;
        if (!x.is_object()) continue;
        auto job = x.find("job");
        if (job != x.end() && job->is_object() && Str(*job, "state") == "SUCCEEDED") ++updated;
      }
    s["sensors"] = {updated, sensors};
  }
  // A progress event newer than the state says what the device is doing now.
  if (!d.events.empty() && d.progress_order > d.state_order) {
    const json& e = d.events.back();
    s["status"] = Str(e, "status");
    if (!IsFinal(Str(e, "status"))) s["progress"] = NumberOrNull(e, "progress");
  }
  return s;
}

json Fleet::Stats() const {
  std::size_t online = 0;
  for (auto& [id, d] : devices_)
    if (d.online && (*d.online)["online"] == true) ++online;
  return {{"devices", devices_.size()}, {"online", online}, {"rollouts", rollouts_.size()},
          {"messages", messages_}, {"dropped", dropped_}};
}

json Fleet::Snapshot() const {
  json out = {{"devices", json::array()}, {"rollouts", json::array()}, {"stats", Stats()}};
  for (auto& [id, d] : devices_) out["devices"].push_back(Summary(id, d));
  for (auto& [name, r] : rollouts_) out["rollouts"].push_back(r);
  return out;
}

std::optional<json> Fleet::TakeChanges() {
  if (dirty_devices_.empty() && dirty_rollouts_.empty() && !stats_dirty_) return std::nullopt;
  json out = {{"devices", json::array()}, {"rollouts", json::array()}, {"stats", Stats()},
              {"removed", {{"devices", json::array()}, {"rollouts", json::array()}}}};
  for (auto& id : dirty_devices_) {
    auto it = devices_.find(id);
    if (it == devices_.end()) out["removed"]["devices"].push_back(id);
    else out["devices"].push_back(Summary(id, it->second));
  }
  for (auto& name : dirty_rollouts_) {
    auto it = rollouts_.find(name);
    if (it == rollouts_.end()) out["removed"]["rollouts"].push_back(name);
    else out["rollouts"].push_back(it->second);
  }
  dirty_devices_.clear();
  dirty_rollouts_.clear();
  stats_dirty_ = false;
  return out;
}

std::optional<json> Fleet::DeviceDetails(const std::string& id) const {
  auto it = devices_.find(id);
  if (it == devices_.end()) return std::nullopt;
  const Device& d = it->second;
  json events = json::array();
  for (auto& e : d.events) events.push_back(e);
  return json{{"summary", Summary(id, d)},
              {"state", d.state ? *d.state : json()},
              {"online", d.online ? *d.online : json()},
              {"events", events}};
}

}  // namespace gantry::dashboard
