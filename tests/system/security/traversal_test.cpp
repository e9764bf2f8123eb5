// Name and path traversal through a real gantryd (docs/revision-format.md "Name rules"): every field
// of a revision that becomes a path, in a revision signed correctly (so the signature is not
// what stops it), is refused with ok:false and one WONTGO naming the field; nothing is
// written outside the data dir's own tree, and the agent then still takes a good update.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "crypto/base64url.hpp"
#include "system/agent/agent_fixture.hpp"
#include "tools/tally.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;
namespace stdfs = std::filesystem;

namespace {

// A marker in every hostile name, so an escaped write can be found wherever it landed.
std::string Marker() { return "gxesc" + std::to_string(::getpid()); }

// Every path below root (relative), skipping the subtree `skip` (absolute).
std::set<std::string> Tree(const stdfs::path& root, const stdfs::path& skip = {}) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(root, ec); it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!skip.empty() && it->path() == skip) {
      out.insert(stdfs::relative(it->path(), root).string());
      it.disable_recursion_pending();
      continue;
    }
    out.insert(stdfs::relative(it->path(), root).string());
  }
  return out;
}

// What the data dir may hold after updates of firmware-only revisions (docs/operator-guide.md).
bool ExpectedInDataDir(const std::string& rel) {
  static const std::regex kAllowed(
      "gantry\\.db(-wal|-shm|-journal)?|lock|objects|objects/[0-9a-f]{2}|"
      "objects/([0-9a-f]{2})/\\2[0-9a-f]{62}|tmp|tmp/[0-9a-f]{64}|containers|storage|inline");
  return std::regex_match(rel, kAllowed);
}

// An envelope whose protected header is exactly `header`, signed by key: a kid the signing
// helpers would refuse to produce.
json SignWithHeader(const json& doc, const crypto::SigningKey& key, const json& header) {
  std::string payload = crypto::Base64UrlEncode(doc.dump());
  std::string prot = crypto::Base64UrlEncode(header.dump());
  auto sig = key.Sign(prot + "." + payload);
  if (!sig) throw std::runtime_error(sig.error().String());
  return {{"payload", payload}, {"signatures", {{{"protected", prot}, {"signature", crypto::Base64UrlEncode(*sig)}}}}};
}

struct Hostile {
  std::string name;
  std::function<void(json& doc, json& header, json& cmd)> mutate;
  std::string code;   // the reply's error code
  std::string field;  // the WONTGO message names it
};

}  // namespace

TEST(SecurityTraversal, EveryFieldThatBecomesAPathIsRefused) {
  Tally tally{"security-traversal"};
  AgentFixture a;
  // The data dir two levels below canary directories that must stay as they are.
  auto canary = a.dir() / "canary";
  auto data = canary / "inner" / "data";
  stdfs::create_directories(data.parent_path());
  a.config["data_dir"] = data.string();
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();

  const std::string m = Marker();
  std::string conf = "lxc.init.cmd = /sbin/init\n", root(4096, 'r'), fw(5000, 'f');
  auto conf_id = a.PutBlock(conf), root_id = a.PutBlock(root), fw_id = a.PutBlock(fw);
  std::map<std::string, std::string> blocks = {{conf_id, conf}, {root_id, root}, {fw_id, fw}};
  json run = {{"#spec", "service-manifest-run@1"}, {"name", "c"}, {"type", "lxc"},
              {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"}, {"group", "app"},
              {"storage", {{"data", {{"persistence", "permanent"}}}}}};
  json base_state = FirmwareState({{"m1", fw_id}});
  base_state["c/run.json"] = run;
  base_state["c/lxc.container.conf"] = conf_id;
  base_state["c/root.squashfs"] = root_id;
  base_state["_config/c/etc/app.conf"] = conf_id;

  auto state_key = [](std::string key, json value) {
    return [key, value](json& d, json&, json&) { d["state"][key] = value; };
  };
  auto run_field = [](std::string field, json value) {
    return [field, value](json& d, json&, json&) { d["state"]["c/run.json"][field] = value; };
  };
  auto rename_container = [&](std::string name) {
    return [name, run](json& d, json&, json&) {
      auto& s = d["state"];
      json r = run;
      r["name"] = name;
      s.erase("c/run.json");
      s[name + "/run.json"] = r;
      s[name + "/lxc.container.conf"] = s["c/lxc.container.conf"];
      s[name + "/root.squashfs"] = s["c/root.squashfs"];
    };
  };
  auto sensor_model = [&](std::string model) {
    return [model, fw_id](json& d, json&, json&) {
      auto& s = d["state"];
      s["_sensors/" + model + "/firmware.bin"] = fw_id;
      s["_sensors/" + model + "/sensor.json"] = {{"version", "1.0.0"}, {"seq", 1}};
    };
  };
  const std::string abs_target = "/tmp/" + m + "-abs";
  std::string bad_hex(64, 'z'), upper_hex = fw_id;
  for (auto& ch : upper_hex) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));

  std::vector<Hostile> table = {
      {"rev with ../", [&](json& d, json&, json&) { d["rev"] = "../../" + m; }, "bad_name", "rev:"},
      {"rev with /", [&](json& d, json&, json&) { d["rev"] = "a/" + m; }, "bad_name", "rev:"},
      {"rev ..", [&](json& d, json&, json&) { d["rev"] = ".."; }, "bad_name", "rev:"},
      {"rev absolute", [&](json& d, json&, json&) { d["rev"] = abs_target; }, "bad_name", "rev:"},
      {"rev with NUL", [&](json& d, json&, json&) { d["rev"] = std::string("r\0", 2) + m; }, "bad_name", "rev:"},
      {"rev with backslash", [&](json& d, json&, json&) { d["rev"] = "..\\" + m; }, "bad_name", "rev:"},
      {"state key absolute", state_key(abs_target, fw_id), "bad_name", "state key"},
      {"state key ../", state_key("../" + m, fw_id), "bad_name", "state key"},
      {"state key c/../../", state_key("c/../../" + m, fw_id), "bad_name", "state key"},
      {"state key backslash", state_key("c\\..\\..\\" + m, fw_id), "bad_name", "state key"},
      {"state key NUL", state_key("c/" + m + std::string("\0.conf", 6), fw_id), "bad_name", "state key"},
      {"state key empty segment", state_key("c//" + m, fw_id), "bad_name", "state key"},
      {"overlay path _config/c/../../", state_key("_config/c/../../../" + m, conf_id), "bad_name", "state key"},
      {"overlay path _config/c/etc/..", state_key("_config/c/etc/../../" + m, conf_id), "bad_name", "state key"},
      {"overlay path absolute", state_key("/_config/c/" + m, conf_id), "bad_name", "state key"},
      {"overlay container ..", state_key("_config/../" + m, conf_id), "bad_name", "state key"},
      {"sensor dir ..", state_key("_sensors/../" + m + "/firmware.bin", fw_id), "bad_name", "state key"},
      {"sensor model uppercase", sensor_model("Gx-" + m), "bad_name", "sensor model"},
      {"sensor model dot", sensor_model("." + m), "bad_name", "sensor model"},
      {"sensor model with ..", sensor_model("m.." + m), "bad_name", "state key"},  // a key with ".." anywhere
      {"sensor target ../",
       [&](json& d, json&, json&) { d["state"]["_sensors/m1/sensor.json"]["targets"] = {"../" + m}; }, "bad_name",
       "sensor.json.targets"},
      {"block id not hex", state_key("c/" + m, bad_hex), "bad_block_id", "is not a block id"},
      {"block id ../x", state_key("c/" + m, "../" + m), "bad_block_id", "is not a block id"},
      {"block id uppercase", state_key("c/root.squashfs", upper_hex), "bad_block_id", "is not a block id"},
      {"block id 63 chars", state_key("c/root.squashfs", fw_id.substr(1)), "bad_block_id", "is not a block id"},
      {"objects key ../x",
       [&](json& d, json&, json&) { d["objects"]["../" + m] = {{"size", 1}}; }, "bad_block_id", "objects: key"},
      {"container name uppercase", rename_container("Evil" + m), "bad_name", "container name"},
      {"container name with ..", rename_container("c.." + m), "bad_name", "state key"},  // its keys contain ".."
      {"container name leading dot", rename_container("." + m), "bad_name", "container name"},
      {"container name leading dash", rename_container("-" + m), "bad_name", "container name"},
      {"container name 64 chars", rename_container(std::string(64, 'c')), "bad_name", "container name"},
      {"nested container dir", state_key("c/" + m + "/run.json", run), "bad_name", "cannot contain '/'"},
      {"run.json name ../", run_field("name", "../" + m), "bad_name", "c/run.json.name"},
      {"run.json config ../", run_field("config", "../../" + m), "bad_name", "c/run.json.config"},
      {"run.json config absolute", run_field("config", "/etc/shadow"), "bad_name", "c/run.json.config"},
      {"root-volume dm:../", run_field("root-volume", "dm:../../" + m), "bad_name", "c/run.json.root-volume"},
      {"root-volume absolute", run_field("root-volume", abs_target), "bad_name", "c/run.json.root-volume"},
      {"volume backslash", run_field("volumes", {"..\\" + m}), "bad_name", "c/run.json.volumes[0]"},
      {"storage ../", run_field("storage", {{"../../" + m, {{"persistence", "permanent"}}}}), "bad_name",
       "c/run.json.storage"},
      {"storage absolute", run_field("storage", {{abs_target, {{"persistence", "permanent"}}}}), "bad_name",
       "c/run.json.storage"},
      {"storage data/../..", run_field("storage", {{"data/../../../" + m, {{"persistence", "boot"}}}}), "bad_name",
       "c/run.json.storage"},
      {"storage NUL", run_field("storage", {{"data" + std::string("\0", 1) + m, {{"persistence", "revision"}}}}),
       "bad_name", "c/run.json.storage"},
      {"kid ../", [&](json&, json& h, json&) { h["kid"] = "../../trust/" + a.key().kid; }, "untrusted_kid", "kid"},
      {"kid absolute", [&](json&, json& h, json&) { h["kid"] = "/tmp/" + m; }, "untrusted_kid", "kid"},
      {"kid with NUL", [&](json&, json& h, json&) { h["kid"] = a.key().kid + std::string("\0/../x", 6); },
       "untrusted_kid", "kid"},
      {"objects_base no scheme", [&](json& d, json&, json&) { d["objects_base"] = "../../" + m + "/"; },
       "bad_revision", "objects_base"},
      {"objects_base gopher", [&](json& d, json&, json&) { d["objects_base"] = "gopher://127.0.0.1:1/" + m + "/"; },
       "bad_revision", "objects_base"},
      {"command objects_base no scheme", [&](json&, json&, json& c) { c["objects_base"] = "../../" + m + "/"; },
       "bad_command", "objects_base"},
      {"command objects_base ftp", [&](json&, json&, json& c) { c["objects_base"] = "ftp://127.0.0.1:1/" + m + "/"; },
       "bad_command", "objects_base"},
  };

  // Only the data dir may change below the test's directory.
  auto outside_before = Tree(a.dir(), data);
  int n = 0;
  for (auto& h : table) {
    SCOPED_TRACE(h.name);
    std::string id = "hostile-" + std::to_string(++n);
    json doc = a.Revision("h" + std::to_string(n), 100 + n, base_state, blocks);
    json header = {{"alg", "EdDSA"}, {"kid", a.key().kid}};
    json cmd = {{"id", id}, {"op", "update"}};
    h.mutate(doc, header, cmd);
    cmd["revision"] = SignWithHeader(doc, a.key().key, header);
    a.Send(cmd);
    ++tally.inputs;
    auto reply = a.WaitReply(id);
    EXPECT_FALSE(reply.value("ok", true)) << reply.dump();
    auto err = reply.value("error", json::object());
    EXPECT_EQ(err.value("code", ""), h.code) << reply.dump();
    EXPECT_NE(err.value("message", "").find(h.field), std::string::npos)
        << "the error does not name " << h.field << ": " << reply.dump();
    if (h.code != "bad_command") {
      // docs/protocol.md: a refused update gets ok:false and exactly one WONTGO with the same id.
      auto final_event = a.WaitFinal(id, std::chrono::seconds(10));
      EXPECT_EQ(final_event.value("status", ""), "WONTGO") << final_event.dump();
      EXPECT_NE(final_event.value("msg", "").find(h.field), std::string::npos) << final_event.dump();
    }
    std::printf("refused %-32s %s\n", h.name.c_str(), err.value("message", "").substr(0, 110).c_str());
  }

  // A good update afterwards goes to DONE: the agent was refusing the names, not broken.
  std::string good_fw(7000, 'g');
  auto good_id = a.PutBlock(good_fw);
  a.Send({{"id", "good"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("good", 1000, FirmwareState({{"m1", good_id}}), {{good_id, good_fw}}))}});
  EXPECT_EQ(a.WaitFinal("good")["status"], "DONE") << a.AgentLog();
  for (int i = 1; i <= n; ++i) {
    auto id = "hostile-" + std::to_string(i);
    EXPECT_LE(a.Progress(id).size(), 1u) << id << " got more than its one WONTGO";
    EXPECT_EQ(a.Replies(id).size(), 1u) << id;
  }

  // Nothing outside the data dir changed; inside it, only the expected tree.
  auto outside_after = Tree(a.dir(), data);
  for (auto& p : outside_after)
    if (!outside_before.count(p)) {
      ADD_FAILURE() << "written outside the data dir: " << (a.dir() / p);
      ++tally.lost;
    }
  EXPECT_EQ(Tree(canary, data), (std::set<std::string>{"inner", "inner/data"}));
  for (auto& p : Tree(data)) {
    if (!ExpectedInDataDir(p)) {
      ADD_FAILURE() << "unexpected file in the data dir: " << p;
      ++tally.lost;
    }
    // docs/operator-guide.md: verified blocks are read-only.
    if (p.rfind("objects/", 0) == 0 && p.size() > 11)
      EXPECT_EQ(stdfs::status(data / p).permissions() & stdfs::perms::all, stdfs::perms(0444)) << p;
  }
  // docs/operator-guide.md: the data dir is mode 0700.
  EXPECT_EQ(stdfs::status(data).permissions() & stdfs::perms::all, stdfs::perms(0700));
  auto [rc, found] = Sh("find /tmp / -xdev -maxdepth 3 -name '*" + m + "*' 2>/dev/null");
  EXPECT_EQ(found, "") << "hostile names were written to disk";
  if (!found.empty()) ++tally.lost;
  EXPECT_EQ(a.SchemaProblems(), "");
  EXPECT_EQ(tally.lost, 0);
  tally.Print();
}
