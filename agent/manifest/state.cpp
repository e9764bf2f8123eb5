#include "manifest/state.hpp"

#include <algorithm>
#include <set>

#include "core/hex.hpp"
#include "core/names.hpp"
#include "digest/sha256.hpp"

namespace gantry::manifest {
namespace {

using json = nlohmann::json;

// Never throws, whatever bytes a caller-built value holds.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string Quote(std::string_view s) { return Dump(json(std::string(s))); }

// Only for keys known to be present (taken from iterating the same object).
const json& At(const json& obj, const std::string& key) { return *obj.find(key); }

Unexpected Bad(const std::string& where, const std::string& message) {
  return Fail("bad_state", where + ": " + message);
}

template <class T>
Unexpected Forward(const Expected<T>& e) {
  return Unexpected(e.error());
}

Expected<std::optional<std::string>> GetString(const json& obj, const std::string& field,
                                               const std::string& where) {
  auto it = obj.find(field);
  if (it == obj.end()) return std::optional<std::string>();
  if (!it->is_string()) return Bad(where + "." + field, "must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

Expected<std::optional<std::int64_t>> GetInt(const json& obj, const std::string& field,
                                             const std::string& where, std::int64_t min,
                                             std::int64_t max) {
  auto it = obj.find(field);
  if (it == obj.end()) return std::optional<std::int64_t>();
  std::string range = " between " + std::to_string(min) + " and " + std::to_string(max);
  if (!it->is_number_integer()) return Bad(where + "." + field, "must be an integer" + range);
  if (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(max))
    return Bad(where + "." + field, "must be an integer" + range);
  auto v = it->get<std::int64_t>();
  if (v < min || v > max) return Bad(where + "." + field, "must be an integer" + range);
  return std::optional<std::int64_t>(v);
}

// A string field restricted to a few values; `fallback` when absent.
Expected<std::string> GetEnum(const json& obj, const std::string& field, const std::string& where,
                              std::initializer_list<const char*> allowed, std::string fallback) {
  auto v = GetString(obj, field, where);
  if (!v) return Forward(v);
  if (!*v) return fallback;
  std::string list;
  for (const char* a : allowed) {
    if (**v == a) return **v;
    list += (list.empty() ? "" : "|") + std::string(a);
  }
  return Bad(where + "." + field, Quote(**v) + " is not one of " + list);
}

const std::initializer_list<const char*> kGoals = {"MOUNTED", "STARTED", "READY"};
const std::initializer_list<const char*> kRestartPolicies = {"system", "container"};

std::vector<Group> DefaultGroups() {
  return {{"data", 0, kDefaultGroupTimeoutS, "MOUNTED", "system"},
          {"root", 1, kDefaultGroupTimeoutS, "STARTED", "system"},
          {"platform", 2, kDefaultGroupTimeoutS, "STARTED", "system"},
          {"app", 3, kDefaultGroupTimeoutS, "STARTED", "container"}};
}

Expected<std::vector<Group>> ParseGroupList(const json& list, const std::string& where,
                                            std::vector<std::string>& warnings) {
  if (!list.is_array()) return Bad(where, "must be an array of groups");
  if (list.empty()) return Bad(where, "must define at least one group");
  std::vector<Group> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string at = where + "[" + std::to_string(i) + "]";
    const json& g = list[i];
    if (!g.is_object()) return Bad(at, "must be an object");
    auto name = GetString(g, "name", at);
    if (!name) return Forward(name);
    if (!*name) return Bad(at + ".name", "missing");
    if (!IsGroupName(**name))
      return Fail("bad_name", at + ".name: " + Quote(**name) + " is not a valid group name");
    if (!seen.insert(**name).second) return Bad(at + ".name", "group " + **name + " defined twice");
    auto timeout = GetInt(g, "timeout", at, 1, 86400);
    if (!timeout) return Forward(timeout);
    auto goal = GetEnum(g, "status_goal", at, kGoals, "STARTED");
    if (!goal) return Forward(goal);
    auto restart = GetEnum(g, "restart_policy", at, kRestartPolicies, "system");
    if (!restart) return Forward(restart);
    for (const auto& [k, v] : g.items())
      if (k != "name" && k != "timeout" && k != "status_goal" && k != "restart_policy" &&
          k != "description")
        warnings.push_back(at + "." + k + ": not acted on");
    out.push_back(Group{**name, static_cast<int>(i),
                        static_cast<int>(timeout->value_or(kDefaultGroupTimeoutS)), *goal,
                        *restart});
  }
  return out;
}

// device.json (Pantavisor's current form) wins over groups.json (the older one).
Expected<std::vector<Group>> ParseGroups(const json* device, const json* groups_json,
                                         std::vector<std::string>& warnings) {
  const json* list = nullptr;
  std::string where;
  if (device != nullptr) {
    if (!device->is_object()) return Bad("device.json", "must be a JSON object");
    for (const auto& [k, v] : device->items())
      if (k != "groups") warnings.push_back("device.json." + k + ": not acted on");
    if (auto it = device->find("groups"); it != device->end()) {
      list = &*it;
      where = "device.json.groups";
    }
  }
  if (groups_json != nullptr) {
    if (list != nullptr) {
      warnings.push_back("groups.json: ignored, device.json defines the groups");
    } else if (groups_json->is_object() && groups_json->contains("groups")) {
      list = &(*groups_json)["groups"];
      where = "groups.json.groups";
    } else {
      list = groups_json;
      where = "groups.json";
    }
  }
  if (list == nullptr) return DefaultGroups();
  return ParseGroupList(*list, where, warnings);
}

Expected<std::optional<Health>> ParseHealth(const json& run, const std::string& where) {
  auto it = run.find("health");
  if (it == run.end()) return std::optional<Health>();
  std::string at = where + ".health";
  if (!it->is_object()) return Bad(at, "must be an object");
  Health h;
  auto exec = it->find("exec");
  if (exec == it->end() || !exec->is_array() || exec->empty())
    return Bad(at + ".exec", "must be a non-empty array of strings (argv)");
  for (const auto& a : *exec) {
    if (!a.is_string() || a.get_ref<const std::string&>().empty())
      return Bad(at + ".exec", "must be a non-empty array of non-empty strings (argv)");
    h.argv.push_back(a.get<std::string>());
  }
  auto interval = GetInt(*it, "interval_s", at, 1, 3600);
  if (!interval) return Forward(interval);
  auto timeout = GetInt(*it, "timeout_s", at, 1, 3600);
  if (!timeout) return Forward(timeout);
  h.interval_s = static_cast<int>(interval->value_or(h.interval_s));
  h.timeout_s = static_cast<int>(timeout->value_or(h.timeout_s));
  for (const auto& [k, v] : it->items())
    if (k != "exec" && k != "interval_s" && k != "timeout_s")
      return Bad(at + "." + k, "unknown field (exec, interval_s, timeout_s)");
  return std::optional<Health>(std::move(h));
}

// "root.squashfs" or "dm:root.squashfs" → the block-valued key "<c>/root.squashfs".
Expected<Volume> ResolveVolume(const std::string& c, const std::string& ref, const std::string& where,
                               const State& st) {
  Volume v;
  v.name = ref;
  if (v.name.rfind("dm:", 0) == 0) {
    v.dm_verity = true;
    v.name = v.name.substr(3);
  }
  if (!IsSafeKey(v.name))
    return Fail("bad_name", where + ": " + Quote(ref) + " is not a safe relative key");
  v.key = c + "/" + v.name;
  auto it = st.blocks.find(v.key);
  if (it == st.blocks.end())
    return Bad(where, "names " + v.key + ", which is not a block in the state");
  v.block = it->second;
  return v;
}

bool IsContainerMetadata(std::string_view file) {
  auto ends_with = [&](std::string_view suffix) {
    return file.size() >= suffix.size() && file.substr(file.size() - suffix.size()) == suffix;
  };
  return file == "src.json" || file == "build.json" || ends_with(".docker-digest");
}

const std::set<std::string> kRunFieldsUsed = {
    "#spec", "name", "type", "config", "root-volume", "volumes", "storage", "group",
    "status_goal", "restart_policy", "update_strategy", "health", "runlevel", "privileged"};

Expected<Container> ParseContainer(const std::string& c, const std::vector<std::string>& keys,
                                   const std::map<std::string, std::string>& config_keys,
                                   State& st) {
  if (!IsSafeName(c))
    return Fail("bad_name", c + "/run.json: container name " + Quote(c) +
                                " must match ^[a-z0-9][a-z0-9._-]{0,62}$");
  if (c.size() > kMaxContainerName)
    return Fail("bad_name", c + "/run.json: container name " + Quote(c) + " has " + std::to_string(c.size()) +
                                " characters; at most " + std::to_string(kMaxContainerName) +
                                " (its instance name <name>-<12 hex> must fit 63)");
  const std::string where = c + "/run.json";
  const json& run = At(st.raw, where);
  if (!run.is_object()) return Bad(where, "must be inline JSON (an object)");
  Container ct;
  ct.name = c;

  auto spec = GetString(run, "#spec", where);
  if (!spec) return Forward(spec);
  if (!*spec) return Bad(where + ".#spec", std::string("missing (") + kRunSpec + ")");
  if (**spec != kRunSpec) return Bad(where + ".#spec", Quote(**spec) + " is not " + kRunSpec);

  auto name = GetString(run, "name", where);
  if (!name) return Forward(name);
  if (!*name) return Bad(where + ".name", "missing");
  if (**name != c)
    return Fail("bad_name", where + ".name: " + Quote(**name) +
                                " must equal the container's directory " + Quote(c));

  auto type = GetString(run, "type", where);
  if (!type) return Forward(type);
  if (!*type) return Bad(where + ".type", "missing (lxc)");
  if (**type != "lxc")
    return Bad(where + ".type", Quote(**type) + " is not supported; Gantry runs lxc containers only");

  auto config = GetString(run, "config", where);
  if (!config) return Forward(config);
  if (!*config) return Bad(where + ".config", "missing (the LXC config key inside " + c + "/)");
  if (!IsSafeKey(**config))
    return Fail("bad_name", where + ".config: " + Quote(**config) + " is not a safe relative key");
  ct.config_key = c + "/" + **config;
  auto cfg = st.blocks.find(ct.config_key);
  if (cfg == st.blocks.end())
    return Bad(where + ".config", "names " + ct.config_key + ", which is not a block in the state");
  ct.config_block = cfg->second;

  auto root = GetString(run, "root-volume", where);
  if (!root) return Forward(root);
  if (!*root) return Bad(where + ".root-volume", "missing (the squashfs rootfs key inside " + c + "/)");
  auto rv = ResolveVolume(c, **root, where + ".root-volume", st);
  if (!rv) return Forward(rv);
  ct.root_volume = std::move(*rv);

  if (auto vols = run.find("volumes"); vols != run.end()) {
    if (!vols->is_array()) return Bad(where + ".volumes", "must be an array of strings");
    for (size_t i = 0; i < vols->size(); ++i) {
      std::string at = where + ".volumes[" + std::to_string(i) + "]";
      if (!(*vols)[i].is_string()) return Bad(at, "must be a string");
      auto v = ResolveVolume(c, (*vols)[i].get<std::string>(), at, st);
      if (!v) return Forward(v);
      ct.volumes.push_back(std::move(*v));
    }
  }

  if (auto storage = run.find("storage"); storage != run.end()) {
    if (!storage->is_object()) return Bad(where + ".storage", "must be an object");
    for (const auto& [path, spec_v] : storage->items()) {
      std::string at = where + ".storage." + path;
      if (!IsSafeKey(path))
        return Fail("bad_name", at + ": storage name must be relative, without '..', NUL or backslash");
      if (!spec_v.is_object()) return Bad(at, "must be an object with \"persistence\"");
      auto p = GetEnum(spec_v, "persistence", at, {"permanent", "revision", "boot"}, "");
      if (!p) return Forward(p);
      if (p->empty()) return Bad(at + ".persistence", "missing (permanent|revision|boot)");
      for (const auto& [k, v] : spec_v.items())
        if (k != "persistence") st.warnings.push_back(at + "." + k + ": not acted on");
      ct.storage[path] = *p;
    }
  }

  // Older pvr states name the group "runlevel".
  auto group = GetString(run, "group", where);
  if (!group) return Forward(group);
  auto runlevel = GetString(run, "runlevel", where);
  if (!runlevel) return Forward(runlevel);
  ct.group = group->value_or(runlevel->value_or(kDefaultGroup));
  const Group* g = st.FindGroup(ct.group);
  if (g == nullptr) return Bad(where + ".group", "group " + Quote(ct.group) + " is not defined");

  auto goal = GetEnum(run, "status_goal", where, kGoals, g->status_goal);
  if (!goal) return Forward(goal);
  ct.status_goal = *goal;
  auto restart = GetEnum(run, "restart_policy", where, kRestartPolicies, g->restart_policy);
  if (!restart) return Forward(restart);
  ct.restart_policy = *restart;
  auto strategy = GetEnum(run, "update_strategy", where, {"stop-first", "start-first"}, "stop-first");
  if (!strategy) return Forward(strategy);
  ct.update_strategy = *strategy;
  if (run.contains("privileged")) {
    if (!run["privileged"].is_boolean()) return Bad(where + ".privileged", "must be true or false");
    ct.privileged = run["privileged"].get<bool>();
  }
  auto health = ParseHealth(run, where);
  if (!health) return Forward(health);
  ct.health = std::move(*health);
  if (ct.status_goal == "READY" && !ct.health)
    return Bad(where + ".status_goal", "READY needs \"health\": its success is what READY means");

  for (const auto& [k, v] : run.items())
    if (!kRunFieldsUsed.count(k)) st.warnings.push_back(where + "." + k + ": not acted on");

  // Keys of the container directory that nothing above used.
  std::set<std::string> used = {where, ct.config_key, ct.root_volume.key};
  for (const auto& v : ct.volumes) used.insert(v.key);
  for (const auto& k : keys)
    if (!used.count(k) && !IsContainerMetadata(k.substr(c.size() + 1)))
      st.warnings.push_back(k + ": not used by container " + c);

  json own = json::object();
  for (const auto& k : keys) own[k] = At(st.raw, k);
  for (const auto& [path, key] : config_keys) {
    const json& v = At(st.raw, key);
    ct.config_files[path] = v.is_string() ? ConfigFile{v.get<std::string>(), ""}
                                          : ConfigFile{"", Dump(v)};
    own[key] = v;
  }
  ct.content_key = digest::Sha256Hex("gantry-container-v1\n" + Dump(own));
  return ct;
}

Expected<SensorFirmware> ParseSensor(const std::string& model,
                                     const std::map<std::string, std::string>& files, State& st) {
  std::string dir = "_sensors/" + model;
  if (!IsSafeName(model))
    return Fail("bad_name", dir + ": sensor model " + Quote(model) +
                                " must match ^[a-z0-9][a-z0-9._-]{0,62}$");
  SensorFirmware s;
  s.model = model;
  s.key = dir + "/firmware.bin";
  auto fw = st.blocks.find(s.key);
  if (fw == st.blocks.end()) return Bad(dir, "firmware.bin missing or not a block");
  s.block = fw->second;
  std::string where = dir + "/sensor.json";
  auto meta_it = st.raw.find(where);
  if (meta_it == st.raw.end()) return Bad(dir, "sensor.json missing");
  const json& meta = *meta_it;
  if (!meta.is_object()) return Bad(where, "must be inline JSON (an object)");
  auto version = GetString(meta, "version", where);
  if (!version) return Forward(version);
  if (!*version || (*version)->empty()) return Bad(where + ".version", "missing or empty");
  s.version = **version;
  auto seq = GetInt(meta, "seq", where, 0, INT64_MAX);
  if (!seq) return Forward(seq);
  if (!*seq) return Bad(where + ".seq", "missing");
  s.seq = **seq;
  auto vid = GetString(meta, "vid", where);
  if (!vid) return Forward(vid);
  s.vid = *vid;
  auto cid = GetString(meta, "cid", where);
  if (!cid) return Forward(cid);
  s.cid = *cid;
  if (auto t = meta.find("targets"); t != meta.end()) {
    if (!t->is_array() || t->empty())
      return Bad(where + ".targets", "must be a non-empty array of sensor ids or \"*\"");
    for (const auto& id : *t) {
      if (!id.is_string() || (id != "*" && !IsSafeName(id.get_ref<const std::string&>())))
        return Fail("bad_name", where + ".targets: " + Dump(id) + " is not a sensor id or \"*\"");
      s.targets.push_back(id.get<std::string>());
    }
  } else {
    s.targets = {"*"};
  }
  // Gantry's own format (not Pantavisor's): closed, so a misspelt field is not ignored.
  for (const auto& [k, v] : meta.items())
    if (k != "version" && k != "seq" && k != "vid" && k != "cid" && k != "targets")
      return Bad(where + "." + k, "unknown field (version, seq, vid, cid, targets)");
  for (const auto& [file, key] : files)
    if (file != "firmware.bin" && file != "sensor.json")
      st.warnings.push_back(key + ": not acted on");
  return s;
}

}  // namespace

std::vector<std::string> State::ReferencedBlocks() const {
  std::set<std::string> out;
  for (const auto& c : containers) {
    out.insert(c.config_block);
    out.insert(c.root_volume.block);
    for (const auto& v : c.volumes) out.insert(v.block);
    for (const auto& [path, f] : c.config_files)
      if (!f.block.empty()) out.insert(f.block);
  }
  for (const auto& s : sensors) out.insert(s.block);
  return {out.begin(), out.end()};
}

const Container* State::FindContainer(std::string_view name) const {
  for (const auto& c : containers)
    if (c.name == name) return &c;
  return nullptr;
}

const Group* State::FindGroup(std::string_view name) const {
  for (const auto& g : groups)
    if (g.name == name) return &g;
  return nullptr;
}

Expected<State> ParseState(const json& state, const StateOptions& options) {
  if (!state.is_object()) return Bad("state", "must be a JSON object");
  State st;
  st.raw = state;
  std::map<std::string, std::vector<std::string>> dirs;  // first segment → its keys
  std::map<std::string, std::map<std::string, std::string>> config_keys;  // c → path → key
  std::map<std::string, std::map<std::string, std::string>> sensor_keys;  // model → file → key
  const json* device = nullptr;
  const json* groups_json = nullptr;

  if (!state.contains("#spec")) return Bad("#spec", std::string("missing (") + kStateSpec + ")");
  for (const auto& [key, value] : state.items()) {
    if (key == "#spec") {
      if (value != kStateSpec) return Bad("#spec", Dump(value) + " is not " + kStateSpec);
      continue;
    }
    if (!IsSafeKey(key))
      return Fail("bad_name", "state key " + Quote(key) +
                                  ": keys must be relative, without '..', '.', empty segments, NUL "
                                  "or backslash");
    if (value.is_string()) {
      if (!IsBlockId(value.get_ref<const std::string&>()))
        return Fail("bad_block_id", key + ": " + Quote(value.get<std::string>()) +
                                        " is not a block id (64 lowercase hex characters)");
      st.blocks[key] = value.get<std::string>();
    } else if (!value.is_object() && !value.is_array()) {
      st.warnings.push_back(key + ": " + value.type_name() +
                            " is neither a block id nor inline JSON; not acted on");
      continue;
    }
    auto slash = key.find('/');
    if (slash == std::string::npos) {
      if (key == "device.json") device = &value;
      else if (key == "groups.json") groups_json = &value;
      else if (key != "src.json" && key != "build.json") st.warnings.push_back(key + ": not acted on");
      continue;
    }
    std::string first = key.substr(0, slash), rest = key.substr(slash + 1);
    auto split = rest.find('/');
    if (first == "bsp") {
      if (options.bsp == BspPolicy::kReject)
        return Bad(key, "the revision carries BSP parts (bsp/*) and update.bsp is \"reject\"");
      st.ignored.push_back(key);
    } else if (first == "_sigs") {
      // Pantavisor's own signatures: metadata, superseded by the JWS envelope.
    } else if (first == "_config" && split != std::string::npos) {
      config_keys[rest.substr(0, split)][rest.substr(split + 1)] = key;
    } else if (first == "_sensors" && split != std::string::npos) {
      sensor_keys[rest.substr(0, split)][rest.substr(split + 1)] = key;
    } else if (first == "_config" || first == "_sensors") {
      st.warnings.push_back(key + ": not acted on (expected " + first + "/<name>/<path>)");
    } else if (split != std::string::npos && key.size() > 9 && key.ends_with("/run.json")) {
      // "a/b/run.json" would define a container named "a/b": names become paths.
      return Fail("bad_name", key + ": container names cannot contain '/'");
    } else {
      dirs[first].push_back(key);
    }
  }

  auto groups = ParseGroups(device, groups_json, st.warnings);
  if (!groups) return Forward(groups);
  st.groups = std::move(*groups);

  for (const auto& [dir, keys] : dirs) {
    if (!state.contains(dir + "/run.json")) {
      for (const auto& k : keys) st.warnings.push_back(k + ": not acted on (no " + dir + "/run.json)");
      continue;
    }
    static const std::map<std::string, std::string> kNoConfig;
    auto cfg = config_keys.find(dir);
    auto c = ParseContainer(dir, keys, cfg == config_keys.end() ? kNoConfig : cfg->second, st);
    if (!c) return Forward(c);
    st.containers.push_back(std::move(*c));
  }
  for (const auto& [c, files] : config_keys)
    if (st.FindContainer(c) == nullptr)
      for (const auto& [path, key] : files)
        st.warnings.push_back(key + ": not acted on (no container " + c + ")");
  std::stable_sort(st.containers.begin(), st.containers.end(), [&](const auto& a, const auto& b) {
    return st.FindGroup(a.group)->order < st.FindGroup(b.group)->order;
  });

  for (const auto& [model, files] : sensor_keys) {
    auto s = ParseSensor(model, files, st);
    if (!s) return Forward(s);
    st.sensors.push_back(std::move(*s));
  }
  return st;
}

}  // namespace gantry::manifest
