#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "test_util.hpp"

using namespace gantry;
using nlohmann::json;

namespace {

json Minimal() {
  return json::parse(R"({"device_id": "gw-0001", "data_dir": "/var/lib/gantry",
    "plugin_dir": "/usr/lib/gantry/plugins", "mqtt": {"uri": "tcp://127.0.0.1:1883"},
    "trust": {"keys_dir": "/etc/gantry/keys"}})");
}

// The minimal config with `value` at `pointer` (a JSON pointer); a discarded value removes it.
std::string With(const std::string& pointer, const json& value) {
  json doc = Minimal();
  if (value.is_discarded())
    doc.at(json::json_pointer(pointer).parent_pointer())
        .erase(json::json_pointer(pointer).back());
  else
    doc[json::json_pointer(pointer)] = value;
  return doc.dump();
}

const json kRemove = json(json::value_t::discarded);

// Parses text that must fail and returns the message (code checked here).
std::string ErrorOf(const std::string& text, const config::Overrides& overrides = {}) {
  auto c = config::Parse(text, overrides);
  if (c) return "<parsed>";
  EXPECT_EQ(c.error().code, "config");
  return c.error().message;
}

struct BadCase {
  std::string pointer;
  json value;
  std::string message;  // exact
};

}  // namespace

TEST(Config, MinimalGetsEveryDefault) {
  auto c = config::Parse(Minimal().dump());
  ASSERT_TRUE(c) << c.error().String();
  EXPECT_EQ(c->device_id, "gw-0001");
  EXPECT_TRUE(c->groups.empty());
  EXPECT_EQ(c->data_dir, "/var/lib/gantry");
  EXPECT_EQ(c->plugin_dir, "/usr/lib/gantry/plugins");
  EXPECT_EQ(c->mqtt.uri, "tcp://127.0.0.1:1883");
  EXPECT_EQ(c->mqtt.root, "gantry");
  EXPECT_EQ(c->mqtt.version, 5);
  EXPECT_FALSE(c->mqtt.response_prefix);
  EXPECT_EQ(c->mqtt.ResponsePrefix(), "gantry/");
  EXPECT_FALSE(c->mqtt.ca_file || c->mqtt.cert_file || c->mqtt.key_file || c->mqtt.username ||
               c->mqtt.password_file);
  EXPECT_EQ(c->trust.keys_dir, "/etc/gantry/keys");
  EXPECT_EQ(c->trust.threshold, 1);
  EXPECT_EQ(c->update.commit_window_s, 10);
  EXPECT_EQ(c->update.parallel_downloads, 4);
  EXPECT_EQ(c->update.stop_timeout_s, 5);
  EXPECT_EQ(c->update.bsp, "ignore");
  EXPECT_TRUE(c->runtime.allow_lxc_keys.empty());
  EXPECT_TRUE(c->runtime.privileged.empty());
  EXPECT_EQ(c->runtime.idmap, "0 100000 65536");
  EXPECT_EQ(c->cache.quota_bytes, 0u);
  EXPECT_EQ(c->relay.transports, std::vector<std::string>{"mqtt"});
  EXPECT_FALSE(c->relay.mqtt_uri);
  EXPECT_EQ(c->relay.coap_port, 5683);
  EXPECT_EQ(c->relay.max_concurrent, 8);
  EXPECT_EQ(c->relay.job_timeout_s, 300);
  EXPECT_EQ(c->relay.max_sensors, 1024);
  EXPECT_EQ(c->relay.max_msgs_per_s, 50);
}

TEST(Config, EveryKeySetIsRead) {
  auto c = config::Parse(R"({
    "device_id": "gw-7", "groups": ["lab", "EU-West_1.a"], "data_dir": "/d", "plugin_dir": "/p",
    "mqtt": {"uri": "mqtts://broker.example.net:8883", "root": "fleet/eu", "version": 4,
             "response_prefix": "ops/answers/",
             "ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem",
             "username": "gw", "password_file": "/pw"},
    "trust": {"keys_dir": "/keys", "threshold": 2},
    "update": {"commit_window_s": 0, "parallel_downloads": 32, "stop_timeout_s": 300, "bsp": "reject"},
    "runtime": {"allow_lxc_keys": ["lxc.cap.keep", "lxc.hook.*"]},
    "cache": {"quota_bytes": 18446744073709551615},
    "relay": {"transports": ["coap", "mqtt"], "mqtt_uri": "ws://[::1]:9001/mqtt",
              "coap_port": 1, "max_concurrent": 1024, "job_timeout_s": 7, "max_sensors": 3,
              "max_msgs_per_s": 100000}})");
  ASSERT_TRUE(c) << c.error().String();
  EXPECT_EQ(c->groups, (std::vector<std::string>{"lab", "EU-West_1.a"}));
  EXPECT_EQ(c->mqtt.root, "fleet/eu");
  EXPECT_EQ(c->mqtt.version, 4);
  EXPECT_EQ(c->mqtt.ResponsePrefix(), "ops/answers/");
  EXPECT_EQ(c->mqtt.ca_file.value_or(""), "/ca.pem");
  EXPECT_EQ(c->mqtt.cert_file.value_or(""), "/c.pem");
  EXPECT_EQ(c->mqtt.key_file.value_or(""), "/k.pem");
  EXPECT_EQ(c->mqtt.username.value_or(""), "gw");
  EXPECT_EQ(c->mqtt.password_file.value_or(""), "/pw");
  EXPECT_EQ(c->trust.threshold, 2);
  EXPECT_EQ(c->update.commit_window_s, 0);
  EXPECT_EQ(c->update.parallel_downloads, 32);
  EXPECT_EQ(c->update.stop_timeout_s, 300);
  EXPECT_EQ(c->update.bsp, "reject");
  EXPECT_EQ(c->runtime.allow_lxc_keys, (std::vector<std::string>{"lxc.cap.keep", "lxc.hook.*"}));
  EXPECT_EQ(c->cache.quota_bytes, 18446744073709551615ull);
  EXPECT_EQ(c->relay.transports, (std::vector<std::string>{"coap", "mqtt"}));
  EXPECT_EQ(c->relay.mqtt_uri.value_or(""), "ws://[::1]:9001/mqtt");
  EXPECT_EQ(c->relay.coap_port, 1);
  EXPECT_EQ(c->relay.max_concurrent, 1024);
  EXPECT_EQ(c->relay.job_timeout_s, 7);
  EXPECT_EQ(c->relay.max_sensors, 3);
  EXPECT_EQ(c->relay.max_msgs_per_s, 100000);
}

TEST(Config, NullOptionalStringsAndEmptyListsAreAllowed) {
  json doc = Minimal();
  for (auto k : {"ca_file", "cert_file", "key_file", "username", "password_file"})
    doc["mqtt"][k] = nullptr;
  doc["relay"]["mqtt_uri"] = nullptr;
  doc["relay"]["transports"] = json::array();
  doc["groups"] = json::array();
  doc["runtime"]["allow_lxc_keys"] = json::array();
  auto c = config::Parse(doc.dump());
  ASSERT_TRUE(c) << c.error().String();
  EXPECT_FALSE(c->mqtt.username);
  EXPECT_TRUE(c->relay.transports.empty());
}

TEST(Config, IntegralFloatsCountAsIntegersLikeJsonSchema) {
  auto c = config::Parse(With("/update/parallel_downloads", 8.0));
  ASSERT_TRUE(c) << c.error().String();
  EXPECT_EQ(c->update.parallel_downloads, 8);
}

TEST(Config, EveryUrlSchemeBrokersUse) {
  for (auto uri : {"tcp://h:1883", "ssl://h:8883", "mqtt://h", "mqtts://10.0.0.1:8883",
                   "ws://h:80/mqtt", "wss://h/", "tcp://[fe80::1%25eth0]:1883"}) {
    auto c = config::Parse(With("/mqtt/uri", uri));
    EXPECT_TRUE(c) << uri << ": " << c.error().String();
  }
}

TEST(Config, RequiredKeysAreNamed) {
  EXPECT_EQ(ErrorOf(With("/device_id", kRemove)), "device_id: required");
  EXPECT_EQ(ErrorOf(With("/data_dir", kRemove)), "data_dir: required");
  EXPECT_EQ(ErrorOf(With("/plugin_dir", kRemove)), "plugin_dir: required");
  EXPECT_EQ(ErrorOf(With("/mqtt/uri", kRemove)), "mqtt.uri: required");
  EXPECT_EQ(ErrorOf(With("/mqtt", kRemove)), "mqtt.uri: required");
  EXPECT_EQ(ErrorOf(With("/trust/keys_dir", kRemove)), "trust.keys_dir: required");
  EXPECT_EQ(ErrorOf(With("/trust", kRemove)), "trust.keys_dir: required");
  EXPECT_EQ(ErrorOf("{}"), "data_dir: required");
}

TEST(Config, UnknownKeysAreErrorsAtEveryLevel) {
  EXPECT_EQ(ErrorOf(With("/bogus", 1)), "bogus: unknown key");
  for (auto section : {"mqtt", "trust", "update", "runtime", "cache", "relay"})
    EXPECT_EQ(ErrorOf(With(std::string("/") + section + "/bogus", 1)),
              std::string(section) + ".bogus: unknown key");
  EXPECT_EQ(ErrorOf(With("/$schema", "x")), "$schema: unknown key");
}

TEST(Config, BadValuesAreNamedWithTheirRule) {
  const std::string uri_rule =
      "must be a broker URI: tcp|ssl|mqtt|mqtts|ws|wss://host[:port][/path]";
  const std::string id_rule = "must be a safe name: ^[a-z0-9][a-z0-9._-]{0,62}$ without \"..\"";
  const std::string group_rule =
      "must be a group name: ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ without \"..\"";
  const std::string root_rule =
      "must be a topic root: non-empty levels without +, #, NUL or a leading $";
  const std::string prefix_rule = "must be null or a non-empty topic prefix without +, # or NUL";
  const std::vector<BadCase> cases = {
      {"/device_id", "GW-1", "device_id: " + id_rule},
      {"/device_id", "", "device_id: " + id_rule},
      {"/device_id", "a..b", "device_id: " + id_rule},
      {"/device_id", "../x", "device_id: " + id_rule},
      {"/device_id", std::string(64, 'a'), "device_id: " + id_rule},
      {"/device_id", 7, "device_id: " + id_rule},
      {"/device_id", nullptr, "device_id: " + id_rule},
      {"/groups", "lab", "groups: must be an array"},
      {"/mqtt/response_prefix", "", "mqtt.response_prefix: " + prefix_rule},
      {"/mqtt/response_prefix", "a/+/", "mqtt.response_prefix: " + prefix_rule},
      {"/mqtt/response_prefix", "a/#", "mqtt.response_prefix: " + prefix_rule},
      {"/mqtt/response_prefix", 3, "mqtt.response_prefix: " + prefix_rule},
      {"/groups", {"lab", "a/b"}, "groups[1]: " + group_rule},
      {"/groups", {"+"}, "groups[0]: " + group_rule},
      {"/groups", {"Lab..2"}, "groups[0]: " + group_rule},
      {"/groups", {"lab", "lab"}, "groups[1]: duplicate \"lab\""},
      {"/groups", {1}, "groups[0]: " + group_rule},
      {"/data_dir", "", "data_dir: must be a non-empty path"},
      {"/data_dir", nullptr, "data_dir: must be a non-empty path"},
      {"/data_dir", std::string("/a\0b", 4), "data_dir: must be a non-empty path"},
      {"/plugin_dir", {"/p"}, "plugin_dir: must be a non-empty path"},
      {"/mqtt", "tcp://h", "mqtt: must be an object"},
      {"/mqtt/uri", "http://h", "mqtt.uri: " + uri_rule},
      {"/mqtt/uri", "tcp://", "mqtt.uri: " + uri_rule},
      {"/mqtt/uri", "tcp:/h", "mqtt.uri: " + uri_rule},
      {"/mqtt/uri", "h:1883", "mqtt.uri: " + uri_rule},
      {"/mqtt/uri", "tcp://h :1883", "mqtt.uri: " + uri_rule},
      {"/mqtt/uri", "ws://h/a b", "mqtt.uri: " + uri_rule},
      {"/mqtt/uri", "TCP://h", "mqtt.uri: " + uri_rule},
      {"/mqtt/uri", nullptr, "mqtt.uri: " + uri_rule},
      {"/mqtt/root", "", "mqtt.root: " + root_rule},
      {"/mqtt/root", "a/+/b", "mqtt.root: " + root_rule},
      {"/mqtt/root", "a/#", "mqtt.root: " + root_rule},
      {"/mqtt/root", "/a", "mqtt.root: " + root_rule},
      {"/mqtt/root", "a/", "mqtt.root: " + root_rule},
      {"/mqtt/root", "a//b", "mqtt.root: " + root_rule},
      {"/mqtt/root", "$SYS", "mqtt.root: " + root_rule},
      {"/mqtt/root", nullptr, "mqtt.root: " + root_rule},
      {"/mqtt/version", 3, "mqtt.version: must be 4 or 5"},
      {"/mqtt/version", 6, "mqtt.version: must be 4 or 5"},
      {"/mqtt/version", "5", "mqtt.version: must be 4 or 5"},
      {"/mqtt/version", 5.5, "mqtt.version: must be 4 or 5"},
      {"/mqtt/ca_file", "", "mqtt.ca_file: must be null or a non-empty path"},
      {"/mqtt/cert_file", 1, "mqtt.cert_file: must be null or a non-empty path"},
      {"/mqtt/key_file", false, "mqtt.key_file: must be null or a non-empty path"},
      {"/mqtt/password_file", json::array(), "mqtt.password_file: must be null or a non-empty path"},
      {"/mqtt/username", "", "mqtt.username: must be null or a non-empty string"},
      {"/trust/keys_dir", "", "trust.keys_dir: must be a non-empty path"},
      {"/trust/threshold", 0, "trust.threshold: must be an integer from 1 to 2147483647"},
      {"/trust/threshold", -1, "trust.threshold: must be an integer from 1 to 2147483647"},
      {"/trust/threshold", 2147483648ll, "trust.threshold: must be an integer from 1 to 2147483647"},
      {"/trust/threshold", true, "trust.threshold: must be an integer from 1 to 2147483647"},
      {"/update", json::array(), "update: must be an object"},
      {"/update/commit_window_s", -1, "update.commit_window_s: must be an integer from 0 to 3600"},
      {"/update/commit_window_s", 3601, "update.commit_window_s: must be an integer from 0 to 3600"},
      {"/update/parallel_downloads", 0, "update.parallel_downloads: must be an integer from 1 to 32"},
      {"/update/parallel_downloads", 33, "update.parallel_downloads: must be an integer from 1 to 32"},
      {"/update/parallel_downloads", 4.5, "update.parallel_downloads: must be an integer from 1 to 32"},
      {"/update/parallel_downloads", nullptr, "update.parallel_downloads: must be an integer from 1 to 32"},
      {"/update/stop_timeout_s", 0, "update.stop_timeout_s: must be an integer from 1 to 300"},
      {"/update/stop_timeout_s", 301, "update.stop_timeout_s: must be an integer from 1 to 300"},
      {"/update/bsp", "flash", "update.bsp: must be \"ignore\" or \"reject\""},
      {"/update/bsp", "IGNORE", "update.bsp: must be \"ignore\" or \"reject\""},
      {"/runtime", nullptr, "runtime: must be an object"},
      {"/runtime/allow_lxc_keys", "lxc.cap.keep", "runtime.allow_lxc_keys: must be an array"},
      {"/runtime/allow_lxc_keys", {"lxc.cap.keep", "cap.keep"}, "runtime.allow_lxc_keys[1]: must be an LXC key: ^lxc\\.[a-z0-9_.*-]+$"},
      {"/runtime/allow_lxc_keys", {"lxc."}, "runtime.allow_lxc_keys[0]: must be an LXC key: ^lxc\\.[a-z0-9_.*-]+$"},
      {"/runtime/allow_lxc_keys", {"lxc.a", "lxc.a"}, "runtime.allow_lxc_keys[1]: duplicate \"lxc.a\""},
      {"/runtime/privileged", {"Bad Name"}, "runtime.privileged[0]: must be a container name: ^[a-z0-9][a-z0-9._-]{0,62}$"},
      {"/runtime/idmap", "0 0 65536", "runtime.idmap: must be \"<container id> <host id> <count>\" with a host id above 0"},
      {"/runtime/idmap", "0 100000", "runtime.idmap: must be \"<container id> <host id> <count>\" with a host id above 0"},
      {"/runtime/idmap", "0 4294967295 2", "runtime.idmap: must be \"<container id> <host id> <count>\" with a host id above 0"},
      {"/cache/quota_bytes", -1, "cache.quota_bytes: must be a non-negative integer"},
      {"/cache/quota_bytes", 1.5, "cache.quota_bytes: must be a non-negative integer"},
      {"/cache/quota_bytes", 1.8446744073709552e19, "cache.quota_bytes: must be a non-negative integer"},
      {"/cache/quota_bytes", "1G", "cache.quota_bytes: must be a non-negative integer"},
      {"/relay/transports", {"mqtt", "http"}, "relay.transports[1]: must be \"mqtt\" or \"coap\""},
      {"/relay/transports", {"coap", "coap"}, "relay.transports[1]: duplicate \"coap\""},
      {"/relay/transports", "mqtt", "relay.transports: must be an array"},
      {"/relay/mqtt_uri", "", "relay.mqtt_uri: must be null or a broker URI: tcp|ssl|mqtt|mqtts|ws|wss://host[:port][/path]"},
      {"/relay/mqtt_uri", "udp://h", "relay.mqtt_uri: must be null or a broker URI: tcp|ssl|mqtt|mqtts|ws|wss://host[:port][/path]"},
      {"/relay/coap_port", 0, "relay.coap_port: must be an integer from 1 to 65535"},
      {"/relay/coap_port", 65536, "relay.coap_port: must be an integer from 1 to 65535"},
      {"/relay/max_concurrent", 0, "relay.max_concurrent: must be an integer from 1 to 1024"},
      {"/relay/max_concurrent", 1025, "relay.max_concurrent: must be an integer from 1 to 1024"},
      {"/relay/job_timeout_s", 0, "relay.job_timeout_s: must be an integer from 1 to 86400"},
      {"/relay/max_sensors", 65536, "relay.max_sensors: must be an integer from 1 to 65535"},
      {"/relay/max_msgs_per_s", 0, "relay.max_msgs_per_s: must be an integer from 1 to 100000"},
  };
  for (auto& bc : cases)
    EXPECT_EQ(ErrorOf(With(bc.pointer, bc.value)), bc.message)
        << bc.pointer << " = " << bc.value.dump();
}

TEST(Config, NotAnObjectOrNotJson) {
  EXPECT_EQ(ErrorOf("[]"), "(root): must be an object");
  EXPECT_EQ(ErrorOf("null"), "(root): must be an object");
  EXPECT_EQ(ErrorOf("").rfind("not JSON: parse error at line 1, column 1", 0), 0u) << ErrorOf("");
  auto msg = ErrorOf("{\n  \"device_id\": \"gw\",\n  oops\n}");
  EXPECT_EQ(msg.rfind("not JSON: parse error at line 3, column 3", 0), 0u) << msg;
  EXPECT_EQ(ErrorOf(std::string("{\"device_id\": \"\xff\"}")).rfind("not JSON:", 0), 0u);
}

TEST(Config, DeepNestingIsRefusedWithoutRecursing) {
  std::string deep = "{\"groups\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(ErrorOf(deep), "(root): nested deeper than 8 levels");
}

TEST(Config, TextOverOneMebibyteIsRefused) {
  std::string big = Minimal().dump();
  big.insert(1, std::string((1u << 20), ' '));
  EXPECT_EQ(ErrorOf(big), "(root): " + std::to_string(big.size()) +
                              " bytes, more than the 1 MiB limit");
}

TEST(Config, LoadReadsAFileAndNamesFileProblems) {
  test::TempDir dir;
  auto good = dir.path() / "gantryd.json";
  test::Spit(good, Minimal().dump(2));
  auto c = config::Load(good);
  ASSERT_TRUE(c) << c.error().String();
  EXPECT_EQ(c->device_id, "gw-0001");

  auto missing = config::Load(dir.path() / "nope.json");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "config");
  EXPECT_NE(missing.error().message.find((dir.path() / "nope.json").string()), std::string::npos);
  EXPECT_NE(missing.error().message.find("No such file"), std::string::npos);

  auto big = dir.path() / "big.json";
  test::Spit(big, std::string((1u << 20) + 1, ' '));
  auto too_big = config::Load(big);
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().code, "config");
  EXPECT_EQ(too_big.error().message, big.string() + ": larger than the 1 MiB limit");

  auto text = dir.path() / "text.json";
  test::Spit(text, "device_id = gw");
  auto not_json = config::Load(text);
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error().message.rfind("not JSON:", 0), 0u) << not_json.error().message;

  auto bad = dir.path() / "bad.json";
  test::Spit(bad, With("/mqtt/version", 3));
  auto bad_value = config::Load(bad);
  ASSERT_FALSE(bad_value);
  EXPECT_EQ(bad_value.error().message, "mqtt.version: must be 4 or 5");
}

TEST(Config, ShippedExamplesParse) {
  auto dir = std::filesystem::path(GANTRY_EXAMPLES_DIR) / "config";
  auto full = config::Load(dir / "gantryd.json");
  ASSERT_TRUE(full) << full.error().String();
  auto minimal = config::Load(dir / "minimal.json");
  ASSERT_TRUE(minimal) << minimal.error().String();
  // The full example spells out every default: it must mean exactly what minimal.json means.
  auto defaults = json::parse(test::Slurp(dir / "gantryd.json"));
  EXPECT_EQ(full->device_id, "gw-0001");
  EXPECT_EQ(minimal->device_id, "gw-0001");
  EXPECT_EQ(full->mqtt.version, minimal->mqtt.version);
  EXPECT_EQ(full->mqtt.root, minimal->mqtt.root);
  EXPECT_EQ(full->trust.threshold, minimal->trust.threshold);
  EXPECT_EQ(full->update.commit_window_s, minimal->update.commit_window_s);
  EXPECT_EQ(full->update.parallel_downloads, minimal->update.parallel_downloads);
  EXPECT_EQ(full->update.stop_timeout_s, minimal->update.stop_timeout_s);
  EXPECT_EQ(full->update.bsp, minimal->update.bsp);
  EXPECT_EQ(full->cache.quota_bytes, minimal->cache.quota_bytes);
  EXPECT_EQ(full->relay.transports, minimal->relay.transports);
  EXPECT_EQ(full->relay.mqtt_uri, minimal->relay.mqtt_uri);
  EXPECT_EQ(full->relay.coap_port, minimal->relay.coap_port);
  EXPECT_EQ(full->relay.max_concurrent, minimal->relay.max_concurrent);
  EXPECT_EQ(full->relay.job_timeout_s, minimal->relay.job_timeout_s);
  EXPECT_EQ(full->relay.max_sensors, minimal->relay.max_sensors);
  EXPECT_EQ(full->relay.max_msgs_per_s, minimal->relay.max_msgs_per_s);
  for (auto section : {"mqtt", "trust", "update", "runtime", "cache", "relay"})
    EXPECT_TRUE(defaults.contains(section)) << "gantryd.json lacks " << section;
  EXPECT_EQ(defaults["mqtt"].size(), 8u) << "gantryd.json must list every mqtt key";
  EXPECT_EQ(defaults["update"].size(), 4u);
  EXPECT_EQ(defaults["relay"].size(), 7u);
}

TEST(Config, OverridesReplaceKeysAndAreCheckedLikeThem) {
  config::Overrides o;
  o.device_id = "gw-0002";
  o.mqtt_uri = "ssl://b:8883";
  o.data_dir = "/tmp/g";
  auto c = config::Parse(Minimal().dump(), o);
  ASSERT_TRUE(c) << c.error().String();
  EXPECT_EQ(c->device_id, "gw-0002");
  EXPECT_EQ(c->mqtt.uri, "ssl://b:8883");
  EXPECT_EQ(c->data_dir, "/tmp/g");

  // An override may supply a key the file lacks.
  auto partial = config::Parse(With("/device_id", kRemove), o);
  ASSERT_TRUE(partial) << partial.error().String();
  EXPECT_EQ(partial->device_id, "gw-0002");
  auto no_mqtt = config::Parse(With("/mqtt", kRemove), o);
  ASSERT_TRUE(no_mqtt) << no_mqtt.error().String();
  EXPECT_EQ(no_mqtt->mqtt.uri, "ssl://b:8883");

  config::Overrides bad_id;
  bad_id.device_id = "../etc";
  EXPECT_EQ(ErrorOf(Minimal().dump(), bad_id),
            "device_id: must be a safe name: ^[a-z0-9][a-z0-9._-]{0,62}$ without \"..\" "
            "(given with --device-id)");
  config::Overrides bad_uri;
  bad_uri.mqtt_uri = "localhost:1883";
  EXPECT_EQ(ErrorOf(Minimal().dump(), bad_uri).rfind("mqtt.uri: must be a broker URI", 0), 0u);
  EXPECT_NE(ErrorOf(Minimal().dump(), bad_uri).find("(given with --broker)"), std::string::npos);
  config::Overrides bad_dir;
  bad_dir.data_dir = "";
  EXPECT_EQ(ErrorOf(Minimal().dump(), bad_dir),
            "data_dir: must be a non-empty path (given with --data-dir)");
  // An error elsewhere is not blamed on an override.
  EXPECT_EQ(ErrorOf(With("/mqtt/version", 3), o), "mqtt.version: must be 4 or 5");
}
