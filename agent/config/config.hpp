#pragma once
// gantryd's configuration (docs/operator-guide.md). Loaded from one JSON file, checked key by key: an
// unknown key or a bad value is an error naming the key (gantryd exits 2).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace gantry::config {

struct Mqtt {
  std::string uri;  // required: tcp|ssl|mqtt|mqtts|ws|wss://host[:port][/path]; the first of uris
  std::vector<std::string> uris;  // every broker (cluster node) given, tried in order
  std::string root = "gantry";
  int version = 5;  // 5 or 4 (3.1.1)
  // A command's MQTT 5 response topic must start with this; null means "<root>/".
  std::optional<std::string> response_prefix;
  std::string ResponsePrefix() const { return response_prefix.value_or(root + "/"); }
  std::optional<std::string> ca_file, cert_file, key_file, username, password_file;
};

struct Trust {
  std::string keys_dir;  // required
  int threshold = 1;     // >= 1
};

struct Update {
  int commit_window_s = 10;    // 0..3600
  int parallel_downloads = 4;  // 1..32
  int stop_timeout_s = 5;      // 1..300
  std::string bsp = "ignore";  // ignore|reject
};

struct Runtime {
  std::vector<std::string> allow_lxc_keys;
  std::vector<std::string> privileged;   // containers that may run privileged (run.json asks too)
  std::string idmap = "0 100000 65536";  // container id, host id, count (uid and gid)
};

struct Cache {
  std::uint64_t quota_bytes = 0;  // 0 = no quota
};

struct Relay {
  std::vector<std::string> transports = {"mqtt"};  // mqtt, coap
  std::optional<std::string> mqtt_uri;             // null = share the agent's connection
  int coap_port = 5683;                            // 1..65535
  int max_concurrent = 8;                          // 1..1024
  int job_timeout_s = 300;     // 1..86400: a job with no progress this long ends FAILED
  int max_sensors = 1024;      // 1..65535: sensors tracked; hellos from more are ignored
  int max_msgs_per_s = 50;     // 1..100000: messages handled per sensor and second
};

struct Config {
  std::string device_id;  // required, a safe name
  std::vector<std::string> groups;  // ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ without "..", distinct
  std::filesystem::path data_dir;    // required
  std::filesystem::path plugin_dir;  // required
  Mqtt mqtt;
  Trust trust;
  Update update;
  Runtime runtime;
  Cache cache;
  Relay relay;
};

// gantryd's command-line overrides (docs/operator-guide.md). They are put into the document before it is
// checked, so a bad override is refused like a bad key in the file, e.g.
// "device_id: must be a safe name: ... (given with --device-id)".
struct Overrides {
  std::optional<std::string> device_id;  // --device-id
  std::optional<std::string> mqtt_uri;   // --broker
  std::optional<std::string> data_dir;   // --data-dir
};

// Error code "config"; the message starts with the JSON path of the offending key,
// e.g. "mqtt.version: must be 4 or 5". Text over 1 MiB, or not JSON, is refused as such.
Expected<Config> Parse(const std::string& json_text, const Overrides& overrides = {});
// As Parse; a file that cannot be read or is over 1 MiB is refused naming the file.
Expected<Config> Load(const std::filesystem::path& file, const Overrides& overrides = {});

}  // namespace gantry::config
