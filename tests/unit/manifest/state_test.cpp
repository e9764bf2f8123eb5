#include "manifest/state.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "manifest/json_text.hpp"
#include "state_builder.hpp"
#include "test_util.hpp"

using namespace gantry;
using namespace gantry::manifest;
using nlohmann::json;

namespace {

json LoadSample(const std::string& name) {
  auto text = test::Slurp(std::filesystem::path(GANTRY_STATES_DIR) / name);
  auto j = ParseJsonText(text);
  EXPECT_TRUE(j) << name << ": " << (j ? "" : j.error().String());
  return j.value_or(json());
}

bool HasWarning(const State& s, const std::string& needle) {
  return std::any_of(s.warnings.begin(), s.warnings.end(),
                     [&](const auto& w) { return w.find(needle) != std::string::npos; });
}

Error ParseError(const json& state, const StateOptions& options = {}) {
  auto r = ParseState(state, options);
  EXPECT_FALSE(r) << "parsed: " << state.dump();
  return r ? Error{} : r.error();
}

}  // namespace

TEST(State, RealPvrStateParsesWithWarningsForWhatItDoesNotActOn) {
  json raw = LoadSample("pvr-real.json");
  auto s = ParseState(raw);
  ASSERT_TRUE(s) << s.error().String();
  EXPECT_EQ(s->raw, raw);

  ASSERT_EQ(s->groups.size(), 4u);
  EXPECT_EQ(s->groups[0].name, "data");
  EXPECT_EQ(s->groups[0].status_goal, "MOUNTED");
  EXPECT_EQ(s->groups[3].name, "app");
  EXPECT_EQ(s->groups[3].timeout_s, 60);
  EXPECT_EQ(s->groups[3].restart_policy, "container");

  ASSERT_EQ(s->containers.size(), 2u);
  const Container& avahi = s->containers[0];  // platform starts before app
  EXPECT_EQ(avahi.name, "pv-avahi");
  EXPECT_EQ(avahi.group, "platform");
  EXPECT_EQ(avahi.type, "lxc");
  EXPECT_EQ(avahi.config_key, "pv-avahi/lxc.container.conf");
  EXPECT_EQ(avahi.config_block, test::Block("avahi-lxc"));
  EXPECT_EQ(avahi.root_volume.name, "root.squashfs");
  EXPECT_TRUE(avahi.root_volume.dm_verity);
  EXPECT_EQ(avahi.root_volume.block, test::Block("avahi-root"));
  EXPECT_EQ(avahi.storage, (std::map<std::string, std::string>{
                               {"docker--etc-avahi-services", "permanent"}, {"lxc-overlay", "boot"}}));
  EXPECT_EQ(avahi.status_goal, "STARTED");
  EXPECT_EQ(avahi.restart_policy, "system");
  EXPECT_EQ(avahi.update_strategy, "stop-first");
  EXPECT_FALSE(avahi.health);
  ASSERT_EQ(avahi.config_files.size(), 2u);
  EXPECT_EQ(avahi.config_files.at("etc/avahi/avahi-daemon.conf").block, test::Block("avahi-conf"));
  const auto& inline_file = avahi.config_files.at("etc/avahi/services/ssh.json");
  EXPECT_TRUE(inline_file.block.empty());
  EXPECT_EQ(json::parse(inline_file.inline_json), json({{"service", "ssh"}, {"port", 22}}));
  EXPECT_EQ(avahi.content_key.size(), 64u);

  const Container& web = s->containers[1];
  EXPECT_EQ(web.name, "webapp");
  EXPECT_EQ(web.update_strategy, "start-first");
  EXPECT_EQ(web.status_goal, "READY");
  EXPECT_EQ(web.restart_policy, "container");  // from its group
  ASSERT_TRUE(web.health);
  EXPECT_EQ(web.health->argv.size(), 3u);
  EXPECT_EQ(web.health->interval_s, 2);
  EXPECT_EQ(web.health->timeout_s, 5);
  ASSERT_EQ(web.volumes.size(), 1u);
  EXPECT_EQ(web.volumes[0].key, "webapp/data.squashfs");
  EXPECT_NE(web.content_key, avahi.content_key);

  ASSERT_EQ(s->sensors.size(), 1u);
  const auto& fw = s->sensors[0];
  EXPECT_EQ(fw.model, "th-sensor");
  EXPECT_EQ(fw.block, test::Block("th-fw-2.1.0"));
  EXPECT_EQ(fw.version, "2.1.0");
  EXPECT_EQ(fw.seq, 7);
  EXPECT_EQ(fw.vid, "0x1234");
  EXPECT_EQ(fw.cid, "th-v2");
  EXPECT_EQ(fw.targets, std::vector<std::string>{"*"});
  EXPECT_FALSE(fw.size);

  EXPECT_EQ(s->ignored.size(), 7u);
  EXPECT_TRUE(std::find(s->ignored.begin(), s->ignored.end(), "bsp/kernel.img") != s->ignored.end());

  for (const char* w : {"network-mapping.json", "storage-mapping.json", "device.json.disks",
                        "pv-avahi/run.json.drivers", "webapp/notes.txt", "_config/ghost/etc/motd"})
    EXPECT_TRUE(HasWarning(*s, w)) << "no warning for " << w;
  for (const char* quiet : {"pv-avahi/src.json", "docker-digest", "_sigs", "bsp/", "#spec",
                            "description"})
    EXPECT_FALSE(HasWarning(*s, quiet)) << "unexpected warning about " << quiet;

  auto refs = s->ReferencedBlocks();
  EXPECT_TRUE(std::is_sorted(refs.begin(), refs.end()));
  for (const char* label : {"avahi-lxc", "avahi-root", "avahi-conf", "webapp-lxc", "webapp-root",
                            "webapp-data", "th-fw-2.1.0"})
    EXPECT_TRUE(std::binary_search(refs.begin(), refs.end(), test::Block(label))) << label;
  for (const char* label : {"bsp-kernel", "avahi-digest", "webapp-notes", "ghost-motd"})
    EXPECT_FALSE(std::binary_search(refs.begin(), refs.end(), test::Block(label))) << label;
  EXPECT_EQ(refs.size(), 7u);
  EXPECT_EQ(s->blocks.at("bsp/kernel.img"), test::Block("bsp-kernel"));  // still listed
}

TEST(State, BspCanBeRejected) {
  auto e = ParseError(LoadSample("pvr-real.json"), StateOptions{BspPolicy::kReject});
  EXPECT_EQ(e.code, "bad_state");
  EXPECT_NE(e.message.find("bsp/"), std::string::npos) << e.message;
}

TEST(State, EmptyStateHasDefaultGroupsAndNoContainers) {
  auto s = ParseState(LoadSample("empty.json"));
  ASSERT_TRUE(s) << s.error().String();
  EXPECT_TRUE(s->containers.empty());
  EXPECT_TRUE(s->warnings.empty());
  ASSERT_EQ(s->groups.size(), 4u);
  std::vector<std::string> names;
  for (const auto& g : s->groups) {
    names.push_back(g.name);
    EXPECT_EQ(g.timeout_s, kDefaultGroupTimeoutS);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"data", "root", "platform", "app"}));
  auto bare = ParseState(json::object());
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.error().code, "bad_state");
  EXPECT_EQ(bare.error().message.rfind("#spec", 0), 0u) << bare.error().message;
}

TEST(State, SpecMustBePantavisorServiceSystem) {
  EXPECT_EQ(ParseError({{"#spec", "pantavisor-multi-platform@1"}}).code, "bad_state");
  EXPECT_EQ(ParseError({{"#spec", 1}}).code, "bad_state");
  EXPECT_EQ(ParseError(json::array()).code, "bad_state");
  EXPECT_EQ(ParseError("x").code, "bad_state");
}

TEST(State, ContentKeyChangesOnlyWithTheContainersOwnKeys) {
  json a = test::OneContainerState("web");
  test::AddContainer(a, "db", "platform");
  a["_config/web/etc/web.conf"] = test::Block("web.conf v1");
  auto key = [](const json& st, const std::string& c) {
    auto s = ParseState(st);
    EXPECT_TRUE(s) << s.error().String();
    return s ? s->FindContainer(c)->content_key : std::string();
  };
  std::string web = key(a, "web"), db = key(a, "db");
  EXPECT_NE(web, db);

  json other_changed = a;
  other_changed["db/root.squashfs"] = test::Block("db-root v2");
  other_changed["device.json"] = {{"groups", {{{"name", "platform"}, {"timeout", 5}},
                                              {{"name", "app"}, {"timeout", 9}}}}};
  EXPECT_EQ(key(other_changed, "web"), web);
  EXPECT_NE(key(other_changed, "db"), db);

  json config_changed = a;
  config_changed["_config/web/etc/web.conf"] = test::Block("web.conf v2");
  EXPECT_NE(key(config_changed, "web"), web);
  EXPECT_EQ(key(config_changed, "db"), db);

  json run_changed = a;
  run_changed["web/run.json"]["update_strategy"] = "start-first";
  EXPECT_NE(key(run_changed, "web"), web);

  json extra_key = a;
  extra_key["web/src.json"] = {{"docker_tag", "v2"}};
  EXPECT_NE(key(extra_key, "web"), web);

  // A container whose name is a prefix of another's is not mixed with it.
  json prefix = a;
  test::AddContainer(prefix, "web2");
  EXPECT_EQ(key(prefix, "web"), web);
}

TEST(State, UnsafeKeysAreRefused) {
  for (const std::string& bad :
       std::vector<std::string>{"/etc/passwd", "web/../../etc", "../x", "web//run.json",
                                "web\\run.json", std::string("web/a\0b", 7), "web/./x", "web/"}) {
    json s = test::OneContainerState();
    s[bad] = test::Block("x");
    auto e = ParseError(s);
    EXPECT_EQ(e.code, "bad_name") << bad << ": " << e.String();
  }
  json s = test::OneContainerState();
  s["_config/web/../../etc/shadow"] = test::Block("x");
  EXPECT_EQ(ParseError(s).code, "bad_name");
}

TEST(State, ContainerNamesAreChecked) {
  for (const std::string& bad : std::vector<std::string>{"Web", "-web", "we b", "_web", ".web"}) {
    json s = {{"#spec", kStateSpec}};
    test::AddContainer(s, bad);
    EXPECT_EQ(ParseError(s).code, "bad_name") << bad;
  }
  json mismatch = test::OneContainerState("web");
  mismatch["web/run.json"]["name"] = "db";
  auto e = ParseError(mismatch);
  EXPECT_EQ(e.code, "bad_name");
  EXPECT_NE(e.message.find("web/run.json.name"), std::string::npos) << e.message;
  json traversal = test::OneContainerState("web");
  traversal["web/run.json"]["name"] = "../web";
  EXPECT_EQ(ParseError(traversal).code, "bad_name");
  json slash = test::OneContainerState("web");
  slash["web/run.json"]["config"] = "../db/lxc.container.conf";
  EXPECT_EQ(ParseError(slash).code, "bad_name");
  json abs_root = test::OneContainerState("web");
  abs_root["web/run.json"]["root-volume"] = "/root.squashfs";
  EXPECT_EQ(ParseError(abs_root).code, "bad_name");
}

TEST(State, BlockIdsAre64LowercaseHex) {
  std::string upper = test::Block("x");
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  for (const std::string& bad : std::vector<std::string>{upper, test::Block("x").substr(1), test::Block("x") + "0",
                                std::string(64, 'g'), std::string("")}) {
    json s = test::OneContainerState();
    s["web/root.squashfs"] = bad;
    auto e = ParseError(s);
    EXPECT_EQ(e.code, "bad_block_id") << bad;
    EXPECT_NE(e.message.find("web/root.squashfs"), std::string::npos) << e.message;
  }
}

TEST(State, OnlyLxcContainersRun) {
  json s = test::OneContainerState();
  s["web/run.json"]["type"] = "docker";
  auto e = ParseError(s);
  EXPECT_EQ(e.code, "bad_state");
  EXPECT_NE(e.message.find("lxc"), std::string::npos) << e.message;
}

TEST(State, RunJsonFieldsAreTyped) {
  auto mutate = [](auto f) {
    json s = test::OneContainerState();
    f(s["web/run.json"], s);
    return ParseError(s);
  };
  std::vector<std::pair<std::string, Error>> cases = {
      {"run.json a block", mutate([](json&, json& s) { s["web/run.json"] = test::Block("r"); })},
      {"name missing", mutate([](json& r, json&) { r.erase("name"); })},
      {"name number", mutate([](json& r, json&) { r["name"] = 1; })},
      {"spec other", mutate([](json& r, json&) { r["#spec"] = "service-manifest-run@2"; })},
      {"spec missing", mutate([](json& r, json&) { r.erase("#spec"); })},
      {"type missing", mutate([](json& r, json&) { r.erase("type"); })},
      {"config missing", mutate([](json& r, json&) { r.erase("config"); })},
      {"config not a key", mutate([](json& r, json&) { r["config"] = "other.conf"; })},
      {"config inline", mutate([](json&, json& s) { s["web/lxc.container.conf"] = json::object(); })},
      {"root-volume missing", mutate([](json& r, json&) { r.erase("root-volume"); })},
      {"root-volume absent block", mutate([](json& r, json&) { r["root-volume"] = "dm:other.squashfs"; })},
      {"volumes string", mutate([](json& r, json&) { r["volumes"] = "data.squashfs"; })},
      {"volumes missing block", mutate([](json& r, json&) { r["volumes"] = {"data.squashfs"}; })},
      {"volumes number", mutate([](json& r, json&) { r["volumes"] = {1}; })},
      {"storage array", mutate([](json& r, json&) { r["storage"] = json::array(); })},
      {"storage persistence", mutate([](json& r, json&) { r["storage"] = {{"x", {{"persistence", "forever"}}}}; })},
      {"storage no persistence", mutate([](json& r, json&) { r["storage"] = {{"x", json::object()}}; })},
      {"group undefined", mutate([](json& r, json&) { r["group"] = "lab"; })},
      {"group number", mutate([](json& r, json&) { r["group"] = 3; })},
      {"status_goal", mutate([](json& r, json&) { r["status_goal"] = "RUNNING"; })},
      {"restart_policy", mutate([](json& r, json&) { r["restart_policy"] = "always"; })},
      {"update_strategy", mutate([](json& r, json&) { r["update_strategy"] = "rolling"; })},
      {"READY without health", mutate([](json& r, json&) { r["status_goal"] = "READY"; })},
      {"health string", mutate([](json& r, json&) { r["health"] = "true"; })},
      {"health no exec", mutate([](json& r, json&) { r["health"] = {{"interval_s", 1}}; })},
      {"health empty exec", mutate([](json& r, json&) { r["health"] = {{"exec", json::array()}}; })},
      {"health exec number", mutate([](json& r, json&) { r["health"] = {{"exec", {1}}}; })},
      {"health interval 0", mutate([](json& r, json&) { r["health"] = {{"exec", {"true"}}, {"interval_s", 0}}; })},
      {"health timeout float", mutate([](json& r, json&) { r["health"] = {{"exec", {"true"}}, {"timeout_s", 1.5}}; })},
      {"health unknown field", mutate([](json& r, json&) { r["health"] = {{"exec", {"true"}}, {"retries", 3}}; })},
  };
  for (const auto& [name, e] : cases) {
    EXPECT_TRUE(e.code == "bad_state" || e.code == "bad_name") << name << ": " << e.String();
    EXPECT_NE(e.message.find("web/"), std::string::npos) << name << ": " << e.message;
  }
  EXPECT_EQ(cases[0].second.code, "bad_state");
  EXPECT_EQ(cases[17].second.code, "bad_state");
}

TEST(State, DefaultsComeFromTheGroupAndOlderForms) {
  json s = test::OneContainerState();
  s["web/run.json"].erase("group");
  auto st = ParseState(s);
  ASSERT_TRUE(st) << st.error().String();
  const auto& c = st->containers.at(0);
  EXPECT_EQ(c.group, kDefaultGroup);
  EXPECT_EQ(c.status_goal, "STARTED");
  EXPECT_EQ(c.restart_policy, "system");
  EXPECT_EQ(c.type, "lxc");

  s["web/run.json"]["runlevel"] = "data";
  auto legacy = ParseState(s);
  ASSERT_TRUE(legacy) << legacy.error().String();
  EXPECT_EQ(legacy->containers.at(0).group, "data");
  EXPECT_EQ(legacy->containers.at(0).status_goal, "MOUNTED");
}

TEST(State, GroupsFromGroupsJsonAndDeviceJson) {
  json s = test::OneContainerState();
  test::AddContainer(s, "net", "Net-Root");
  s["web/run.json"]["group"] = "apps";
  s["groups.json"] = json::array({{{"name", "Net-Root"}, {"timeout", 5}},
                                  {{"name", "apps"}, {"status_goal", "MOUNTED"}, {"restart_policy", "container"}}});
  auto st = ParseState(s);
  ASSERT_TRUE(st) << st.error().String();
  ASSERT_EQ(st->groups.size(), 2u);
  EXPECT_EQ(st->groups[0].timeout_s, 5);
  EXPECT_EQ(st->groups[1].timeout_s, kDefaultGroupTimeoutS);
  EXPECT_EQ(st->containers[0].name, "net");
  EXPECT_EQ(st->containers[1].status_goal, "MOUNTED");
  EXPECT_EQ(st->containers[1].restart_policy, "container");

  // device.json wins over groups.json.
  s["device.json"] = {{"groups", {{{"name", "Net-Root"}}, {{"name", "apps"}}}}};
  auto both = ParseState(s);
  ASSERT_TRUE(both) << both.error().String();
  EXPECT_EQ(both->groups[0].timeout_s, kDefaultGroupTimeoutS);
  EXPECT_TRUE(HasWarning(*both, "groups.json: ignored"));

  auto bad = [&](const json& groups) {
    json t = s;
    t["device.json"] = {{"groups", groups}};
    return ParseError(t);
  };
  EXPECT_EQ(bad(json::array()).code, "bad_state");
  EXPECT_EQ(bad("apps").code, "bad_state");
  EXPECT_EQ(bad({{{"name", "apps"}}, {{"name", "apps"}}}).code, "bad_state");
  EXPECT_EQ(bad({{{"name", "bad name"}}}).code, "bad_name");
  EXPECT_EQ(bad({{{"name", "../x"}}}).code, "bad_name");
  EXPECT_EQ(bad({{{"timeout", 3}}}).code, "bad_state");
  EXPECT_EQ(bad({{{"name", "apps"}, {"timeout", "30"}}}).code, "bad_state");
  EXPECT_EQ(bad({{{"name", "apps"}, {"timeout", 0}}}).code, "bad_state");
  EXPECT_EQ(bad({{{"name", "apps"}, {"status_goal", "UP"}}}).code, "bad_state");
  json not_object = s;
  not_object["device.json"] = json::array();
  EXPECT_EQ(ParseError(not_object).code, "bad_state");
}

TEST(State, SensorFirmwareIsChecked) {
  json base = {{"#spec", kStateSpec},
               {"_sensors/th/firmware.bin", test::Block("fw")},
               {"_sensors/th/sensor.json", {{"version", "1.0.0"}, {"seq", 3}}},
               {"_sensors/th/notes.md", test::Block("notes")}};
  auto st = ParseState(base);
  ASSERT_TRUE(st) << st.error().String();
  ASSERT_EQ(st->sensors.size(), 1u);
  EXPECT_EQ(st->sensors[0].targets, std::vector<std::string>{"*"});
  EXPECT_FALSE(st->sensors[0].vid);
  EXPECT_TRUE(HasWarning(*st, "_sensors/th/notes.md"));
  EXPECT_EQ(st->ReferencedBlocks(), std::vector<std::string>{test::Block("fw")});

  auto with = [&](const std::string& key, const json& v) {
    json s = base;
    if (v.is_null()) s.erase(key);
    else s[key] = v;
    return ParseError(s);
  };
  EXPECT_EQ(with("_sensors/th/sensor.json", nullptr).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/firmware.bin", nullptr).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/firmware.bin", json::object()).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", test::Block("meta")).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"seq", 3}}).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"version", "1"}}).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"version", "1"}, {"seq", -1}}).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"version", "1"}, {"seq", "3"}}).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"version", "1"}, {"seq", 3}, {"vid", 5}}).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"version", "1"}, {"seq", 3}, {"targets", json::array()}}).code, "bad_state");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"version", "1"}, {"seq", 3}, {"targets", {"../s"}}}).code, "bad_name");
  EXPECT_EQ(with("_sensors/th/sensor.json", {{"version", "1"}, {"seq", 3}, {"target", {"s1"}}}).code, "bad_state");
  json upper = {{"#spec", kStateSpec},
                {"_sensors/TH/firmware.bin", test::Block("fw")},
                {"_sensors/TH/sensor.json", {{"version", "1"}, {"seq", 1}}}};
  EXPECT_EQ(ParseError(upper).code, "bad_name");
}

TEST(State, OddValuesAndStrayKeysAreWarningsNotErrors) {
  json s = test::OneContainerState();
  s["flag"] = true;
  s["count"] = 3;
  s["orphan/file.txt"] = test::Block("orphan");
  s["_config/ghost/etc/x"] = test::Block("ghost");
  s["_config/lonely"] = test::Block("lonely");
  s["web/run.json"]["exports"] = json::array();
  auto st = ParseState(s);
  ASSERT_TRUE(st) << st.error().String();
  for (const char* w : {"flag", "count", "orphan/file.txt", "_config/ghost/etc/x", "_config/lonely",
                        "web/run.json.exports"})
    EXPECT_TRUE(HasWarning(*st, w)) << w;
  EXPECT_EQ(st->containers.size(), 1u);
}
