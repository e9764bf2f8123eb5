#include "config/config.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/fs.hpp"
#include "core/names.hpp"

namespace gantry::config {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxBytes = 1u << 20;
// The deepest valid config is 3 levels; the cap only keeps hostile input from recursing.
constexpr int kMaxDepth = 8;

// Every rule below has its twin in schemas/config.schema.json; a test feeds both the same
// documents and fails when their verdicts differ.

Unexpected Bad(const std::string& path, const std::string& message) {
  return Fail("config", (path.empty() ? std::string("(root)") : path) + ": " + message);
}

std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// JSON Schema's "integer" is any number with no fraction (1.0 included), so this is too.
Expected<std::uint64_t> Unsigned(const json& v, const std::string& path, std::uint64_t min,
                                 std::uint64_t max) {
  std::string rule;
  if (max == std::numeric_limits<std::uint64_t>::max())
    rule = min == 0 ? "must be a non-negative integer" : "must be an integer, at least " +
                                                             std::to_string(min);
  else
    rule = "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
  std::uint64_t n = 0;
  if (v.is_number_unsigned()) {
    n = v.get<std::uint64_t>();
  } else if (v.is_number_integer()) {
    return Bad(path, rule);  // negative: nlohmann keeps non-negative integers unsigned
  } else if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < 0 || d >= 0x1p64) return Bad(path, rule);
    n = static_cast<std::uint64_t>(d);
  } else {
    return Bad(path, rule);
  }
  if (n < min || n > max) return Bad(path, rule);
  return n;
}

ExpectedVoid Int(const json& v, const std::string& path, int& out, int min, int max) {
  auto n = Unsigned(v, path, static_cast<std::uint64_t>(min), static_cast<std::uint64_t>(max));
  if (!n) return Unexpected(n.error());
  out = static_cast<int>(*n);
  return {};
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// ^(tcp|ssl|mqtt|mqtts|ws|wss)://[A-Za-z0-9._~%:\[\]-]+(/[!-~]*)?$ — what Paho accepts.
bool IsBrokerUri(std::string_view s) {
  auto sep = s.find("://");
  if (sep == std::string_view::npos) return false;
  static const std::set<std::string_view> kSchemes = {"tcp", "ssl", "mqtt", "mqtts", "ws", "wss"};
  if (!kSchemes.count(s.substr(0, sep))) return false;
  auto rest = s.substr(sep + 3);
  auto slash = rest.find('/');
  auto host = rest.substr(0, slash);
  if (host.empty()) return false;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("._~%:[]-").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  if (slash == std::string_view::npos) return true;
  for (char c : rest.substr(slash))
    if (c < '!' || c > '~') return false;
  return true;
}

// Levels separated by "/", none empty, no wildcard, no NUL, not a "$" system topic.
bool IsTopicRoot(std::string_view s) {
  if (s.empty() || s.front() == '$' || s.front() == '/' || s.back() == '/') return false;
  if (s.find("//") != std::string_view::npos) return false;
  for (char c : s)
    if (c == '+' || c == '#' || c == '\0') return false;
  return true;
}

// ^lxc\.[a-z0-9_.*-]+$
// "0 100000 65536": container id, host id (not 0: container root must not be host root), count.
bool IsIdmap(std::string_view s) {
  unsigned long long v[3];
  int n = 0;
  std::string text(s);
  std::size_t pos = 0;
  for (; n < 3; ++n) {
    while (pos < text.size() && text[pos] == ' ') ++pos;
    std::size_t start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
    if (pos == start || pos - start > 10) return false;
    v[n] = std::stoull(text.substr(start, pos - start));
  }
  return pos == text.size() && v[1] > 0 && v[2] > 0 && v[0] + v[2] <= 4294967295ULL &&
         v[1] + v[2] <= 4294967295ULL;
}

bool IsLxcKey(std::string_view s) {
  if (s.size() <= 4 || s.substr(0, 4) != "lxc.") return false;
  for (char c : s.substr(4)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              std::string_view("_.*-").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

ExpectedVoid String(const json& v, const std::string& path, std::string& out,
                    const std::function<bool(std::string_view)>& valid, const char* rule) {
  if (!v.is_string() || !valid(v.get_ref<const std::string&>())) return Bad(path, rule);
  out = v.get<std::string>();
  return {};
}

bool NonEmptyNoNul(std::string_view s) { return !s.empty() && !HasNul(s); }
bool IsResponsePrefix(std::string_view s) {
  return NonEmptyNoNul(s) && s.find_first_of("+#") == std::string_view::npos;
}

ExpectedVoid OptionalString(const json& v, const std::string& path,
                            std::optional<std::string>& out,
                            const std::function<bool(std::string_view)>& valid,
                            const char* rule) {
  if (v.is_null()) {
    out.reset();
    return {};
  }
  std::string s;
  if (auto r = String(v, path, s, valid, rule); !r) return r;
  out = std::move(s);
  return {};
}

ExpectedVoid Path(const json& v, const std::string& path, std::filesystem::path& out) {
  std::string s;
  if (auto r = String(v, path, s, NonEmptyNoNul, "must be a non-empty path"); !r) return r;
  out = s;
  return {};
}

// An array of distinct strings, each passing `valid`.
ExpectedVoid StringSet(const json& v, const std::string& path, std::vector<std::string>& out,
                       const std::function<bool(std::string_view)>& valid, const char* rule) {
  if (!v.is_array()) return Bad(path, "must be an array");
  std::vector<std::string> items;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::string item_path = path + "[" + std::to_string(i) + "]";
    std::string s;
    if (auto r = String(v[i], item_path, s, valid, rule); !r) return r;
    for (auto& seen : items)
      if (seen == s) return Bad(item_path, "duplicate \"" + s + "\"");
    items.push_back(std::move(s));
  }
  out = std::move(items);
  return {};
}

enum class Presence { kOptional, kRequired, kSection };

struct Field {
  std::function<ExpectedVoid(const json&, const std::string&)> read;
  Presence presence = Presence::kOptional;
};

// Reads an object key by key: every key must be known, every required key present. A
// missing section is read as {} so that its own required keys are the ones named.
ExpectedVoid Object(const json& v, const std::string& path,
                    const std::map<std::string, Field, std::less<>>& fields) {
  if (!v.is_object()) return Bad(path, "must be an object");
  for (auto& [key, value] : v.items()) {
    auto f = fields.find(key);
    if (f == fields.end()) return Bad(Join(path, key), "unknown key");
    if (auto r = f->second.read(value, Join(path, key)); !r) return r;
  }
  for (auto& [key, field] : fields) {
    if (v.contains(key)) continue;
    if (field.presence == Presence::kRequired) return Bad(Join(path, key), "required");
    if (field.presence == Presence::kSection) {
      if (auto r = field.read(json::object(), Join(path, key)); !r) return r;
    }
  }
  return {};
}

ExpectedVoid ReadMqtt(const json& v, const std::string& path, Mqtt& m) {
  auto file = [&](std::optional<std::string>& out) {
    return [&out](const json& x, const std::string& p) {
      return OptionalString(x, p, out, NonEmptyNoNul, "must be null or a non-empty path");
    };
  };
  return Object(
      v, path,
      {{"uri",
        {[&](const json& x, const std::string& p) -> ExpectedVoid {
           // One URI, or the nodes of a broker cluster (tried in order, fail-over).
           const char* rule = "must be a broker URI: tcp|ssl|mqtt|mqtts|ws|wss://host[:port][/path]";
           if (!x.is_array()) {
             if (auto r = String(x, p, m.uri, IsBrokerUri, rule); !r) return r;
             m.uris = {m.uri};
             return ExpectedVoid{};
           }
           if (x.empty() || x.size() > 16) return Bad(p, "must be a broker URI or a list of 1 to 16 of them");
           if (auto r = StringSet(x, p, m.uris, IsBrokerUri, rule); !r) return r;
           m.uri = m.uris.front();
           return ExpectedVoid{};
         },
         Presence::kRequired}},
       {"root",
        {[&](const json& x, const std::string& p) {
           return String(x, p, m.root, IsTopicRoot,
                         "must be a topic root: non-empty levels without +, #, NUL or a "
                         "leading $");
         }}},
       {"version",
        {[&](const json& x, const std::string& p) -> ExpectedVoid {
           int n = 0;
           if (!Int(x, p, n, 4, 5)) return Bad(p, "must be 4 or 5");
           m.version = n;
           return {};
         }}},
       {"response_prefix",
        {[&](const json& x, const std::string& p) {
           return OptionalString(x, p, m.response_prefix, IsResponsePrefix,
                                 "must be null or a non-empty topic prefix without +, # or NUL");
         }}},
       {"ca_file", {file(m.ca_file)}},
       {"cert_file", {file(m.cert_file)}},
       {"key_file", {file(m.key_file)}},
       {"password_file", {file(m.password_file)}},
       {"username",
        {[&](const json& x, const std::string& p) {
           return OptionalString(x, p, m.username, NonEmptyNoNul,
                                 "must be null or a non-empty string");
         }}}});
}

ExpectedVoid ReadTrust(const json& v, const std::string& path, Trust& t) {
  return Object(v, path,
                {{"keys_dir",
                  {[&](const json& x, const std::string& p) -> ExpectedVoid {
                     std::filesystem::path dir;
                     if (auto r = Path(x, p, dir); !r) return r;
                     t.keys_dir = dir.string();
                     return {};
                   },
                   Presence::kRequired}},
                 {"threshold",
                  {[&](const json& x, const std::string& p) {
                     return Int(x, p, t.threshold, 1, std::numeric_limits<int>::max());
                   }}}});
}

ExpectedVoid ReadUpdate(const json& v, const std::string& path, Update& u) {
  return Object(
      v, path,
      {{"commit_window_s",
        {[&](const json& x, const std::string& p) { return Int(x, p, u.commit_window_s, 0, 3600); }}},
       {"parallel_downloads",
        {[&](const json& x, const std::string& p) { return Int(x, p, u.parallel_downloads, 1, 32); }}},
       {"stop_timeout_s",
        {[&](const json& x, const std::string& p) { return Int(x, p, u.stop_timeout_s, 1, 300); }}},
       {"bsp",
        {[&](const json& x, const std::string& p) {
           return String(
               x, p, u.bsp, [](std::string_view s) { return s == "ignore" || s == "reject"; },
               "must be \"ignore\" or \"reject\"");
         }}}});
}

ExpectedVoid ReadRelay(const json& v, const std::string& path, Relay& r) {
  return Object(
      v, path,
      {{"transports",
        {[&](const json& x, const std::string& p) {
           return StringSet(
               x, p, r.transports, [](std::string_view s) { return s == "mqtt" || s == "coap"; },
               "must be \"mqtt\" or \"coap\"");
         }}},
       {"mqtt_uri",
        {[&](const json& x, const std::string& p) {
           return OptionalString(
               x, p, r.mqtt_uri, IsBrokerUri,
               "must be null or a broker URI: tcp|ssl|mqtt|mqtts|ws|wss://host[:port][/path]");
         }}},
       {"coap_port",
        {[&](const json& x, const std::string& p) { return Int(x, p, r.coap_port, 1, 65535); }}},
       {"max_concurrent",
        {[&](const json& x, const std::string& p) { return Int(x, p, r.max_concurrent, 1, 1024); }}},
       {"job_timeout_s",
        {[&](const json& x, const std::string& p) { return Int(x, p, r.job_timeout_s, 1, 86400); }}},
       {"max_sensors",
        {[&](const json& x, const std::string& p) { return Int(x, p, r.max_sensors, 1, 65535); }}},
       {"max_msgs_per_s",
        {[&](const json& x, const std::string& p) { return Int(x, p, r.max_msgs_per_s, 1, 100000); }}}});
}

ExpectedVoid ReadConfig(const json& v, Config& c) {
  return Object(
      v, "",
      {{"device_id",
        {[&](const json& x, const std::string& p) {
           return String(x, p, c.device_id, IsSafeName,
                         "must be a safe name: ^[a-z0-9][a-z0-9._-]{0,62}$ without \"..\"");
         },
         Presence::kRequired}},
       {"groups",
        {[&](const json& x, const std::string& p) {
           return StringSet(x, p, c.groups, IsGroupName,
                            "must be a group name: ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ without \"..\"");
         }}},
       {"data_dir",
        {[&](const json& x, const std::string& p) { return Path(x, p, c.data_dir); },
         Presence::kRequired}},
       {"plugin_dir",
        {[&](const json& x, const std::string& p) { return Path(x, p, c.plugin_dir); },
         Presence::kRequired}},
       {"mqtt",
        {[&](const json& x, const std::string& p) { return ReadMqtt(x, p, c.mqtt); },
         Presence::kSection}},
       {"trust",
        {[&](const json& x, const std::string& p) { return ReadTrust(x, p, c.trust); },
         Presence::kSection}},
       {"update", {[&](const json& x, const std::string& p) { return ReadUpdate(x, p, c.update); }}},
       {"runtime",
        {[&](const json& x, const std::string& p) {
           return Object(x, p,
                         {{"allow_lxc_keys",
                           {[&](const json& y, const std::string& q) {
                              return StringSet(y, q, c.runtime.allow_lxc_keys, IsLxcKey,
                                               "must be an LXC key: ^lxc\\.[a-z0-9_.*-]+$");
                            }}},
                          {"privileged",
                           {[&](const json& y, const std::string& q) {
                              return StringSet(y, q, c.runtime.privileged, IsSafeName,
                                               "must be a container name: ^[a-z0-9][a-z0-9._-]{0,62}$");
                            }}},
                          {"idmap",
                           {[&](const json& y, const std::string& q) {
                              return String(y, q, c.runtime.idmap, IsIdmap,
                                            "must be \"<container id> <host id> <count>\" with a host id above 0");
                            }}}});
         }}},
       {"cache",
        {[&](const json& x, const std::string& p) {
           return Object(x, p,
                         {{"quota_bytes",
                           {[&](const json& y, const std::string& q) -> ExpectedVoid {
                              auto n = Unsigned(y, q, 0, std::numeric_limits<std::uint64_t>::max());
                              if (!n) return Unexpected(n.error());
                              c.cache.quota_bytes = *n;
                              return {};
                            }}}});
         }}},
       {"relay", {[&](const json& x, const std::string& p) { return ReadRelay(x, p, c.relay); }}}});
}

struct TooDeep {};

}  // namespace

Expected<Config> Parse(const std::string& json_text, const Overrides& overrides) {
  if (json_text.size() > kMaxBytes)
    return Fail("config", "(root): " + std::to_string(json_text.size()) +
                              " bytes, more than the 1 MiB limit");
  json doc;
  try {
    doc = json::parse(json_text, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxDepth) throw TooDeep{};
      return true;
    });
  } catch (const TooDeep&) {
    return Fail("config", "(root): nested deeper than " + std::to_string(kMaxDepth) + " levels");
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    auto end = what.find("] ");
    return Fail("config", "not JSON: " + (end == std::string::npos ? what : what.substr(end + 2)));
  }
  struct Given {
    const std::optional<std::string>& value;
    const char* pointer;  // where it goes in the document
    const char* path;     // how an error names that key
    const char* flag;
  };
  const Given given[] = {{overrides.device_id, "/device_id", "device_id", "--device-id"},
                         {overrides.mqtt_uri, "/mqtt/uri", "mqtt.uri", "--broker"},
                         {overrides.data_dir, "/data_dir", "data_dir", "--data-dir"}};
  // A document of the wrong shape is refused as it is, overrides or not.
  if (doc.is_object() && (!doc.contains("mqtt") || doc["mqtt"].is_object())) {
    for (const auto& g : given)
      if (g.value) doc[json::json_pointer(g.pointer)] = *g.value;
  }
  Config c;
  if (auto r = ReadConfig(doc, c); !r) {
    for (const auto& g : given)
      if (g.value && r.error().message.rfind(std::string(g.path) + ": ", 0) == 0)
        return Fail("config", r.error().message + " (given with " + g.flag + ")");
    return Unexpected(r.error());
  }
  return c;
}

Expected<Config> Load(const std::filesystem::path& file, const Overrides& overrides) {
  auto text = fs::ReadFile(file, kMaxBytes);
  if (!text) {
    if (text.error().code == "too_large")
      return Fail("config", file.string() + ": larger than the 1 MiB limit");
    return Fail("config", text.error().message);
  }
  return Parse(*text, overrides);
}

}  // namespace gantry::config
