// gantryctl pack as an operator runs it: the example source trees become bundles that are
// reproducible to the byte, that the agent's own parser takes without a warning, and that a
// real gantryd (real mosquitto, real HTTP block server, real LXC) runs — and rolls back.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <sstream>

#include "system/agent/agent_fixture.hpp"

namespace gantry::test {
namespace {

namespace stdfs = std::filesystem;
using nlohmann::json;

std::string Q(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

const std::string kCtl = GANTRYCTL;
const std::string kExamples = GANTRY_EXAMPLES "/revisions";

// Packs src into out; returns {exit code, output}.
std::pair<int, std::string> PackCmd(const std::string& src, const stdfs::path& out,
                                    const std::string& extra = "") {
  return Sh(Q(kCtl) + " pack " + Q(src) + " --out " + Q(out.string()) + " " + extra);
}

json ReadJson(const stdfs::path& p) { return json::parse(Slurp(p)); }

std::set<std::string> Objects(const stdfs::path& bundle) {
  std::set<std::string> out;
  for (auto& e : stdfs::directory_iterator(bundle / "objects")) out.insert(e.path().filename().string());
  return out;
}

std::string PackUnusableReason() {
  auto [rc, out] = Sh("command -v mksquashfs && file -L /bin/busybox");
  if (rc != 0 || out.find("statically linked") == std::string::npos)
    return "squashfs-tools or busybox-static is missing: " + out;
  return "";
}

TEST(Pack, ExamplesPackReproduciblyAndParseWithoutWarnings) {
  ASSERT_EQ(PackUnusableReason(), "");
  TempDir t;
  auto [rc1, out1] = PackCmd(kExamples + "/rev1", t.path() / "a", "--rev rev1 --seq 1 --target gw-0001");
  ASSERT_EQ(rc1, 0) << out1;
  EXPECT_EQ(out1.find("warning"), std::string::npos) << out1;
  // A copy with other times and modes (as another checkout would have) packs to the same bytes.
  auto copy = t.path() / "copy";
  ASSERT_EQ(Sh("cp -rL " + Q(kExamples + "/rev1") + " " + Q(copy.string()) + " && find " +
               Q(copy.string()) + " -exec touch -h -d '2030-01-01' {} + && chmod -R g+w " + Q(copy.string()))
                .first,
            0);
  auto [rc2, out2] = PackCmd(copy.string(), t.path() / "b", "--rev rev1 --seq 1 --target gw-0001");
  ASSERT_EQ(rc2, 0) << out2;
  EXPECT_EQ(Slurp(t.path() / "a/state.json"), Slurp(t.path() / "b/state.json"));
  EXPECT_EQ(Slurp(t.path() / "a/revision.json"), Slurp(t.path() / "b/revision.json"));
  EXPECT_EQ(Objects(t.path() / "a"), Objects(t.path() / "b"));

  // Every block is stored under its SHA-256 and listed with its size.
  auto rev = ReadJson(t.path() / "a/revision.json");
  EXPECT_EQ(rev["rev"], "rev1");
  EXPECT_EQ(rev["seq"], 1);
  EXPECT_EQ(rev["targets"], json({"gw-0001"}));
  EXPECT_FALSE(rev.contains("objects_base"));
  std::set<std::string> listed;
  for (auto& [id, o] : rev["objects"].items()) {
    listed.insert(id);
    auto bytes = Slurp(t.path() / "a/objects" / id);
    EXPECT_EQ(Sha256Hex(bytes), id);
    EXPECT_EQ(o["size"].get<size_t>(), bytes.size());
  }
  EXPECT_EQ(listed, Objects(t.path() / "a"));
  auto state = ReadJson(t.path() / "a/state.json");
  EXPECT_EQ(rev["state"], state);
  EXPECT_EQ(state["web/run.json"]["root-volume"], "root.squashfs");
  EXPECT_EQ(state["web/run.json"]["config"], "lxc.container.conf");
  EXPECT_TRUE(state.contains("_sensors/th-sensor/firmware.bin"));
  EXPECT_TRUE(state.contains("_sensors/co2-sensor/firmware.bin"));

  // The agent's parser: no warnings, both containers, both sensor models.
  auto [irc, inspect] = Sh(Q(kCtl) + " state inspect " + Q((t.path() / "a/revision.json").string()));
  EXPECT_EQ(irc, 0) << inspect;
  EXPECT_NE(inspect.find("warnings: 0"), std::string::npos) << inspect;
  EXPECT_NE(inspect.find("containers (start order): 2"), std::string::npos) << inspect;
  EXPECT_NE(inspect.find("sensors: 2"), std::string::npos) << inspect;

  // The image is a squashfs holding busybox with its applets, the tree's files, the storage
  // mount point, and not the marker.
  auto image = t.path() / "a/objects" / state["web/root.squashfs"].get<std::string>();
  auto [lrc, listing] = Sh("unsquashfs -lls " + Q(image.string()));
  ASSERT_EQ(lrc, 0) << listing;
  for (const char* want : {"squashfs-root/bin/busybox", "squashfs-root/bin/sh -> busybox",
                           "squashfs-root/sbin/web-init", "squashfs-root/www/index.html", "root/root"})
    EXPECT_NE(listing.find(want), std::string::npos) << want << " not in\n" << listing;
  EXPECT_EQ(listing.find(".busybox"), std::string::npos) << listing;
  auto collector = t.path() / "a/objects" / state["collector/root.squashfs"].get<std::string>();
  auto [crc, clisting] = Sh("unsquashfs -l " + Q(collector.string()));
  EXPECT_NE(clisting.find("squashfs-root/data\n"), std::string::npos) << clisting;

  // rev2 changes only the collector: web's blocks are the very same.
  auto [rc3, out3] = PackCmd(kExamples + "/rev2", t.path() / "c", "--rev rev2 --seq 2 --target gw-0001");
  ASSERT_EQ(rc3, 0) << out3;
  auto state2 = ReadJson(t.path() / "c/state.json");
  EXPECT_EQ(state2["web/root.squashfs"], state["web/root.squashfs"]);
  EXPECT_EQ(state2["web/lxc.container.conf"], state["web/lxc.container.conf"]);
  EXPECT_NE(state2["collector/root.squashfs"], state["collector/root.squashfs"]);

  // Without a target there is a state but no revision document.
  auto [rc4, out4] = PackCmd(kExamples + "/rev1", t.path() / "d");
  ASSERT_EQ(rc4, 0) << out4;
  EXPECT_TRUE(stdfs::exists(t.path() / "d/state.json"));
  EXPECT_FALSE(stdfs::exists(t.path() / "d/revision.json"));
  EXPECT_NE(out4.find("--target"), std::string::npos) << out4;
}

// A minimal valid container directory under root/name.
void GoodContainer(const stdfs::path& root, const std::string& name) {
  Spit(root / name / "rootfs/etc/hostname", "x\n");
  Spit(root / name / "run.json", R"({"group": "app"})");
  Spit(root / name / "lxc.container.conf", "lxc.init.cmd = /bin/sh\n");
}

TEST(Pack, BadSourceTreesExit2NamingThePath) {
  ASSERT_EQ(PackUnusableReason(), "");
  struct Case {
    std::string what;
    std::function<void(const stdfs::path&)> make;
    std::string message;
  };
  std::vector<Case> cases = {
      {"good tree (control)", [](auto& r) { GoodContainer(r, "app"); }, ""},
      {"missing rootfs", [](auto& r) { GoodContainer(r, "app"); stdfs::remove_all(r / "app/rootfs"); },
       "app/rootfs: missing"},
      {"missing run.json", [](auto& r) { GoodContainer(r, "app"); stdfs::remove(r / "app/run.json"); },
       "app/run.json: missing"},
      {"missing lxc config",
       [](auto& r) { GoodContainer(r, "app"); stdfs::remove(r / "app/lxc.container.conf"); },
       "app/lxc.container.conf: missing"},
      {"bad container name", [](auto& r) { GoodContainer(r, "Web"); }, "container directory name \"Web\""},
      {"stray top-level file", [](auto& r) { GoodContainer(r, "app"); Spit(r / "notes.txt", "x"); },
       "notes.txt: unexpected entry"},
      {"stray file in a container", [](auto& r) { GoodContainer(r, "app"); Spit(r / "app/extra", "x"); },
       "app/extra: unexpected entry"},
      {"run.json not JSON", [](auto& r) { GoodContainer(r, "app"); Spit(r / "app/run.json", "{"); },
       "app/run.json: not valid JSON"},
      {"run.json sets root-volume",
       [](auto& r) { GoodContainer(r, "app"); Spit(r / "app/run.json", R"({"root-volume": "x"})"); },
       "\"root-volume\" is filled in by pack"},
      {"run.json names another container",
       [](auto& r) { GoodContainer(r, "app"); Spit(r / "app/run.json", R"({"name": "other"})"); },
       "\"name\" must equal the directory name"},
      {"fifo in rootfs",
       [](auto& r) { GoodContainer(r, "app"); ASSERT_EQ(mkfifo((r / "app/rootfs/pipe").c_str(), 0644), 0); },
       "app/rootfs/pipe: not a regular file"},
      {"config for a missing container",
       [](auto& r) { GoodContainer(r, "app"); Spit(r / "_config/nope/etc/x", "x"); },
       "_config/nope: no container directory"},
      {"dangling config file",
       [](auto& r) {
         GoodContainer(r, "app");
         stdfs::create_directories(r / "_config/app");
         stdfs::create_symlink("/no/such/file", r / "_config/app/x");
       },
       "_config/app/x: not a regular file"},
      {"sensor without sensor.json",
       [](auto& r) { GoodContainer(r, "app"); Spit(r / "_sensors/th/firmware.bin", "fw"); },
       "_sensors/th/sensor.json: missing"},
      {"sensor.json the parser refuses",
       [](auto& r) {
         GoodContainer(r, "app");
         Spit(r / "_sensors/th/firmware.bin", "fw");
         Spit(r / "_sensors/th/sensor.json", R"({"version": "1", "seq": 1, "colour": "red"})");
       },
       "_sensors/th/sensor.json.colour: unknown field"},
      {"undefined group",
       [](auto& r) { GoodContainer(r, "app"); Spit(r / "app/run.json", R"({"group": "nope"})"); },
       "group \"nope\" is not defined"},
      {"empty tree", [](auto&) {}, "nothing to pack"},
  };
  for (auto& c : cases) {
    TempDir t;
    auto src = t.path() / "src";
    stdfs::create_directories(src);
    c.make(src);
    auto [rc, out] = PackCmd(src.string(), t.path() / "out", "--target gw-0001 --rev r --seq 1");
    if (c.message.empty()) {
      EXPECT_EQ(rc, 0) << c.what << ": " << out;
      continue;
    }
    EXPECT_EQ(rc, 2) << c.what << ": " << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.what << ": " << out;
    EXPECT_FALSE(stdfs::exists(t.path() / "out/revision.json")) << c.what;
  }
  // _config files become blocks; an LXC key devices refuse by default is a warning, not an
  // error (a device's runtime.allow_lxc_keys may list it).
  {
    TempDir t;
    GoodContainer(t.path() / "src", "app");
    Spit(t.path() / "src/_config/app/etc/app.conf", "level = 3\n");
    Spit(t.path() / "src/app/lxc.container.conf", "lxc.cap.keep = sys_admin\n");
    auto [rc, out] = PackCmd((t.path() / "src").string(), t.path() / "o", "--target gw-0001");
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("warning: app/lxc.container.conf"), std::string::npos) << out;
    auto state = ReadJson(t.path() / "o/state.json");
    ASSERT_TRUE(state.contains("_config/app/etc/app.conf")) << state.dump(2);
    EXPECT_EQ(Slurp(t.path() / "o/objects" / state["_config/app/etc/app.conf"].get<std::string>()), "level = 3\n");
    EXPECT_EQ(ReadJson(t.path() / "o/revision.json")["rev"], "src");
  }
  // Bad options are usage errors too; a missing tool is an operational one.
  TempDir t;
  GoodContainer(t.path() / "src", "app");
  auto [rc1, o1] = PackCmd((t.path() / "src").string(), t.path() / "o", "--target gw-0001 --rev Bad");
  EXPECT_EQ(rc1, 2) << o1;
  auto [rc2, o2] = PackCmd((t.path() / "src").string(), t.path() / "o", "--target gw-0001 --expires soon");
  EXPECT_EQ(rc2, 2) << o2;
  EXPECT_NE(o2.find("expires"), std::string::npos) << o2;
  auto [rc3, o3] = PackCmd((t.path() / "src").string(), t.path() / "o", "--mksquashfs /no/such/mksquashfs");
  EXPECT_EQ(rc3, 3) << o3;
  EXPECT_NE(o3.find("squashfs-tools"), std::string::npos) << o3;
  Spit(t.path() / "src/app/rootfs/.busybox", "");
  auto [rc4, o4] = PackCmd((t.path() / "src").string(), t.path() / "o", "--busybox /no/such/busybox");
  EXPECT_EQ(rc4, 3) << o4;
  EXPECT_NE(o4.find("/no/such/busybox"), std::string::npos) << o4;
}

// gantryd on the packed examples: rev1 runs, rev2 swaps only the collector, rev-broken rolls
// back. Containers are cleaned up by hand: they outlive gantryd by design.
class PackAgent : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason = PackUnusableReason();
    if (reason.empty() && ::geteuid() != 0) reason = "needs root (gantryd mounts and starts containers)";
    if (reason.empty() && !stdfs::exists(BuildDir() + "/plugins/gantry-runtime-lxc.so"))
      reason = "gantry-runtime-lxc.so is not built";
    if (reason.empty() && Sh("command -v lxc-ls lxc-attach").first != 0) reason = "lxc utilities missing";
    ASSERT_EQ(reason, "");
    a.config["update"]["commit_window_s"] = 5;
    a.config["update"]["stop_timeout_s"] = 3;
  }
  void TearDown() override {
    a.StopAgent();
    auto lxcpath = (a.data_dir() / "containers").string();
    Sh("for c in $(lxc-ls -P " + Q(lxcpath) + "); do lxc-stop -k -P " + Q(lxcpath) + " -n $c; done");
    auto [rc, mounts] = Sh("awk '{print $2}' /proc/mounts | grep -F " + Q(a.dir().string() + "/") + " | sort -r");
    std::istringstream in(mounts);
    for (std::string m; std::getline(in, m);)
      if (!m.empty()) Sh("umount -l " + Q(m));
    Sh("losetup -a | grep -F " + Q(a.dir().string() + "/") + " | cut -d: -f1 | xargs -r -n1 losetup -d");
  }

  // Packs, signs and publishes a revision with `gantryctl publish --watch`; returns its exit
  // code and output.
  std::pair<int, std::string> Publish(const std::string& name, int seq) {
    auto bundle = a.dir() / "bundles" / name;
    auto [rc, out] = PackCmd(kExamples + "/" + name, bundle,
                             "--rev " + name + " --seq " + std::to_string(seq) + " --target " + a.device);
    if (rc != 0) return {rc, "pack: " + out};
    for (auto& e : stdfs::directory_iterator(bundle / "objects"))
      a.blocks().Put("objects/" + e.path().filename().string(), Slurp(e.path()));
    auto [src, sout] = Sh(Q(kCtl) + " sign --key " + Q(a.key().private_pem.string()) + " " +
                          Q((bundle / "revision.json").string()) + " --out " + Q((bundle / "revision.jws").string()));
    if (src != 0) return {src, "sign: " + sout};
    return Sh(Q(kCtl) + " publish --broker " + Q(a.broker().uri()) + " --device " + a.device +
              " --envelope " + Q((bundle / "revision.jws").string()) + " --objects-base " +
              Q(a.blocks().url("/objects/")) + " --watch --timeout 60 --id pub-" + name);
  }

  // The instance names LXC lists for container c.
  std::string Instance(const std::string& c) {
    auto [rc, out] = Sh("lxc-ls -1 -P " + Q((a.data_dir() / "containers").string()) + " --running");
    std::istringstream in(out);
    std::string found;
    for (std::string l; std::getline(in, l);)
      if (l.rfind(c + "-", 0) == 0) found += (found.empty() ? "" : ",") + l;
    return found;
  }

  std::string Attach(const std::string& instance, const std::string& cmd) {
    return Sh("lxc-attach -P " + Q((a.data_dir() / "containers").string()) + " -n " + Q(instance) +
              " -- " + cmd).second;
  }

  // Waits for the retained state to name rev with every container RUNNING.
  bool WaitState(const std::string& rev, const std::set<std::string>& names) {
    return a.op().WaitFor([&](const std::vector<Received>&) {
      auto s = a.LastState();
      if (!s.is_object() || s.value("rev", json()) != rev) return false;
      std::set<std::string> running;
      for (auto& c : s.value("containers", json::array()))
        if (c.value("state", "") == "RUNNING") running.insert(c.value("name", ""));
      return running == names;
    }, std::chrono::seconds(20));
  }

  std::string CollectedLog() { return Slurp(a.data_dir() / "storage/collector/data/collected.log"); }

  AgentFixture a;
};

TEST_F(PackAgent, PackedExamplesRunSwapOnlyWhatChangedAndRollBack) {
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();

  auto [rc1, out1] = Publish("rev1", 1);
  ASSERT_EQ(rc1, 0) << out1 << "\nagent log:\n" << a.AgentLog();
  EXPECT_NE(out1.find("DONE"), std::string::npos) << out1;
  ASSERT_TRUE(WaitState("rev1", {"web", "collector"})) << a.LastState().dump(2);
  auto web1 = Instance("web");
  ASSERT_FALSE(web1.empty());
  EXPECT_NE(Attach(web1, "wget -qO- http://127.0.0.1:8080/").find("Hello from Gantry"), std::string::npos);
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return CollectedLog().find("collector rev1") != std::string::npos; },
                             std::chrono::seconds(10)))
      << "collected.log: " << CollectedLog();

  // rev2: the collector is replaced, web keeps running in the same instance.
  auto pid = [&](const std::string& inst) {
    return Sh("lxc-info -P " + Q((a.data_dir() / "containers").string()) + " -n " + Q(inst) + " -pH").second;
  };
  auto web_pid = pid(web1);
  auto collector1 = Instance("collector");
  auto [rc2, out2] = Publish("rev2", 2);
  ASSERT_EQ(rc2, 0) << out2 << "\nagent log:\n" << a.AgentLog();
  ASSERT_TRUE(WaitState("rev2", {"web", "collector"})) << a.LastState().dump(2);
  EXPECT_EQ(Instance("web"), web1);
  EXPECT_EQ(pid(web1), web_pid);
  EXPECT_NE(Instance("collector"), collector1);
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return CollectedLog().find("collector rev2") != std::string::npos; },
                             std::chrono::seconds(10)));
  EXPECT_NE(CollectedLog().find("collector rev1"), std::string::npos) << "permanent storage lost its lines";

  // rev-broken: web's init exits after two seconds; the agent rolls back to rev2.
  auto [rc3, out3] = Publish("rev-broken", 3);
  EXPECT_EQ(rc3, 1) << out3 << "\nagent log:\n" << a.AgentLog();
  EXPECT_NE(out3.find("ERROR"), std::string::npos) << out3;
  ASSERT_TRUE(WaitState("rev2", {"web", "collector"})) << a.LastState().dump(2) << "\n" << a.AgentLog();
  auto web2 = Instance("web");
  EXPECT_EQ(web2, web1);
  EXPECT_NE(Attach(web2, "wget -qO- http://127.0.0.1:8080/").find("Hello from Gantry"), std::string::npos);

  // What the operator reads: gantryctl status, a table of the retained state.
  auto [src, status] = Sh(Q(kCtl) + " status --broker " + Q(a.broker().uri()) + " --device " + a.device);
  ASSERT_EQ(src, 0) << status;
  EXPECT_NE(status.find("device   " + a.device + " (online)"), std::string::npos) << status;
  EXPECT_NE(status.find("revision rev2  seq 2  status ERROR"), std::string::npos) << status;
  for (auto c : {"web", "collector"}) {
    std::regex row(std::string("\n") + c + " +app +RUNNING +rev2 +0\n");
    EXPECT_TRUE(std::regex_search(status, row)) << c << " row missing:\n" << status;
  }
  EXPECT_NE(status.find("cache    "), std::string::npos) << status;
}

}  // namespace
}  // namespace gantry::test
