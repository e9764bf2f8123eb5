#pragma once
// A real gantryd swapping real LXC containers (busybox squashfs images built by mkrootfs.sh),
// driven over MQTT by an operator client: AgentFixture plus images, container states, and
// what the host sees (lxc-ls, lxc-info, mounts, loop devices).
//
//   SwapFixture f;                                  // fails loudly when LXC cannot run here
//   f.a.StartAgent();
//   auto st = f.State({{.name = "a", .marker = "a1"}});
//   EXPECT_EQ(f.Update("u1", "r1", 1, st)["status"], "DONE");
//   f.Running();                                    // {"a-0123456789ab"}
//
// Teardown stops the agent, releases every instance through the plugin and fails the test
// if a mount or loop device of its data dir is left.
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "system/agent/agent_fixture.hpp"

namespace gantry::test {

namespace stdfs = std::filesystem;

// PID 1 of the container: logs "up-<marker>" / "down-<marker>" to /data/events (permanent
// storage when the container has it), halts at once on SIGPWR (wait returns on a trapped
// signal), and otherwise idles.
inline const char* kServe =
    "M=$(cat /etc/gantry-marker); echo up-$M >> /data/events; "
    "trap 'echo down-$M >> /data/events; exit 0' PWR; while :; do sleep 1 & wait $!; done";
// Runs two seconds, then its init exits: the container stops by itself.
inline const char* kExitAfter2s = "sleep 2; exit 1";

struct ContainerDef {
  std::string name;
  std::string marker;  // different marker → different image → different content key
  std::string init = kServe;
  std::string group = "app";
  std::string goal = "STARTED";
  std::string strategy;  // empty: the default (stop-first)
  nlohmann::json health;  // null: none
  bool permanent_data = false;  // /data as permanent storage, shared by the container's instances
  std::string restart_policy = "container";
};

inline std::string ShQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::string LxcUnusableReason() {
  if (::geteuid() != 0) return "the swap tests need root (gantryd mounts and starts containers)";
  if (!stdfs::exists("/dev/loop-control")) return "/dev/loop-control is missing (no loop devices)";
  if (!stdfs::exists(BuildDir() + "/plugins/gantry-runtime-lxc.so"))
    return BuildDir() + "/plugins/gantry-runtime-lxc.so is not built";
  if (!stdfs::exists(BuildDir() + "/gantryd")) return BuildDir() + "/gantryd is not built";
  auto [rc, out] = Sh("command -v mksquashfs && command -v lxc-ls && file -L /bin/busybox");
  if (rc != 0 || out.find("statically linked") == std::string::npos)
    return "squashfs-tools, lxc-utils or busybox-static is missing: " + out;
  return "";
}

class SwapFixture {
 public:
  SwapFixture() {
    reason_ = LxcUnusableReason();
    a.config["update"]["commit_window_s"] = 2;
    a.config["update"]["stop_timeout_s"] = 3;
    a.config["relay"] = {{"transports", nlohmann::json::array()}};  // no sensors here
  }
  ~SwapFixture() { Cleanup(); }

  // "" when LXC can run; tests ASSERT it so a machine that cannot run them fails loudly.
  const std::string& reason() const { return reason_; }

  AgentFixture a;

  // The squashfs image for an init script and marker, built once per build tree.
  std::string Image(const std::string& init, const std::string& marker) {
    std::string cmd = ShQuote(GANTRY_MKROOTFS) + " --init " + ShQuote(init) + " --marker " + ShQuote(marker);
    auto key = std::hash<std::string>{}(Slurp(GANTRY_MKROOTFS) + cmd);
    auto dir = stdfs::path(BuildDir()) / "tests" / "swap-images";
    auto out = dir / (std::to_string(key) + ".squashfs");
    if (!stdfs::exists(out)) {
      stdfs::create_directories(dir);
      auto tmp = out.string() + "." + std::to_string(::getpid());
      auto [rc, log] = Sh(ShQuote(GANTRY_MKROOTFS) + " " + ShQuote(tmp) + cmd.substr(ShQuote(GANTRY_MKROOTFS).size()));
      if (rc != 0) throw std::runtime_error("mkrootfs.sh failed: " + log);
      stdfs::rename(tmp, out);
    }
    return Slurp(out);
  }

  // A Pantavisor state of these containers; its blocks are put on the block server and
  // remembered for Update(). groups: the groups.json value, or null for the default groups.
  nlohmann::json State(const std::vector<ContainerDef>& defs, const nlohmann::json& groups = nullptr) {
    nlohmann::json s = {{"#spec", "pantavisor-service-system@1"}};
    if (!groups.is_null()) s["groups.json"] = groups;
    for (const auto& d : defs) {
      auto conf = Put("lxc.init.cmd = /sbin/gantry-init\n");
      auto root = Put(Image(d.init, d.marker));
      nlohmann::json run = {{"#spec", "service-manifest-run@1"}, {"name", d.name}, {"type", "lxc"},
                            {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"},
                            {"group", d.group}, {"status_goal", d.goal}, {"restart_policy", d.restart_policy}};
      if (!d.strategy.empty()) run["update_strategy"] = d.strategy;
      if (!d.health.is_null()) run["health"] = d.health;
      if (d.permanent_data) run["storage"] = {{"data", {{"persistence", "permanent"}}}};
      s[d.name + "/run.json"] = run;
      s[d.name + "/lxc.container.conf"] = conf;
      s[d.name + "/root.squashfs"] = root;
    }
    return s;
  }

  // Sends a signed update; returns its reply (the final status is awaited separately).
  nlohmann::json Send(const std::string& id, const std::string& rev, int seq, const nlohmann::json& state) {
    std::map<std::string, std::string> blocks;
    for (auto& [k, v] : state.items())
      if (v.is_string() && blocks_.count(v.get<std::string>())) blocks[v] = blocks_[v];
    a.Send({{"id", id}, {"op", "update"}, {"revision", a.Sign(a.Revision(rev, seq, state, blocks))}});
    return a.WaitReply(id);
  }
  // Sends an update and returns its final progress event.
  nlohmann::json Update(const std::string& id, const std::string& rev, int seq, const nlohmann::json& state,
                        std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto reply = Send(id, rev, seq, state);
    if (reply.value("ok", false) != true) return reply;
    return a.WaitFinal(id, timeout);
  }

  stdfs::path lxcpath() const { return a.data_dir() / "containers"; }

  // Running LXC instances, as lxc-ls sees them.
  std::set<std::string> Running() {
    auto [rc, out] = Sh("lxc-ls -1 --running -P " + ShQuote(lxcpath().string()));
    std::set<std::string> names;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) names.insert(l);
    return names;
  }
  // The running instance of container name ("" when none, throws when several).
  std::string RunningInstance(const std::string& name) {
    std::string found;
    for (auto& i : Running())
      if (i.rfind(name + "-", 0) == 0 && i.size() == name.size() + 13) {
        if (!found.empty()) throw std::runtime_error("two running instances of " + name);
        found = i;
      }
    return found;
  }
  // Host pid of the instance's init, -1 when it is not running.
  int InitPid(const std::string& instance) {
    auto [rc, out] = Sh("lxc-info -H -p -P " + ShQuote(lxcpath().string()) + " -n " + ShQuote(instance));
    if (rc != 0 || out.empty()) return -1;
    try {
      return std::stoi(out);
    } catch (...) {
      return -1;
    }
  }
  // Lines of /data/events of a container with permanent /data.
  std::vector<std::string> Events(const std::string& name) {
    std::vector<std::string> lines;
    std::istringstream in(Slurp(a.data_dir() / "storage" / name / "data" / "events"));
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) lines.push_back(l);
    return lines;
  }

  // The latest retained P/state once pred holds for it.
  nlohmann::json WaitState(const std::function<bool(const nlohmann::json&)>& pred,
                           std::chrono::seconds timeout = std::chrono::seconds(20)) {
    a.op().WaitFor([&](auto&) { return pred(a.LastState()); }, timeout);
    return a.LastState();
  }
  static bool AllRunning(const nlohmann::json& state, const std::string& rev, size_t n) {
    if (state.value("rev", nlohmann::json()) != rev || !state.contains("containers") ||
        state["containers"].size() != n)
      return false;
    for (auto& c : state["containers"])
      if (c.value("state", "") != "RUNNING" || c.value("rev", "") != rev) return false;
    return true;
  }

  // Mount points and loop devices that belong to this test's data dir.
  std::vector<std::string> Mounts() {
    std::vector<std::string> out;
    std::istringstream in(Slurp("/proc/self/mountinfo"));
    for (std::string l; std::getline(in, l);)
      if (l.find(" " + a.dir().string() + "/") != std::string::npos) out.push_back(l);
    return out;
  }
  std::vector<std::string> Loops() {
    auto [rc, out] = Sh("losetup -a");
    std::vector<std::string> hits;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);)
      if (l.find(a.dir().string() + "/") != std::string::npos) hits.push_back(l);
    return hits;
  }

  // Stops the agent, releases what it left through the plugin, and checks nothing of this
  // data dir stays mounted or attached.
  void Cleanup() {
    if (cleaned_) return;
    cleaned_ = true;
    a.StopAgent();
    if (!stdfs::exists(a.data_dir())) return;
    auto [rc, out] = Sh(ShQuote(BuildDir() + "/tests/swap_release_all") + " " + ShQuote(BuildDir() + "/plugins") +
                        " " + ShQuote(a.data_dir().string()));
    if (rc != 0) ADD_FAILURE() << "releasing the instances failed: " << out;
    auto mounts = Mounts();
    auto loops = Loops();
    std::string m, l;
    for (auto& x : mounts) m += x + "\n";
    for (auto& x : loops) l += x + "\n";
    EXPECT_TRUE(mounts.empty()) << "leaked mounts:\n" << m;
    EXPECT_TRUE(loops.empty()) << "leaked loop devices:\n" << l;
    // Last resort so that TempDir's remove_all never walks into a mount.
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
      std::istringstream f(*it);
      std::string x1, x2, x3, x4, point;
      f >> x1 >> x2 >> x3 >> x4 >> point;
      Sh("umount -l " + ShQuote(point));
    }
  }

 private:
  std::string Put(const std::string& bytes) {
    auto id = a.PutBlock(bytes);
    blocks_[id] = bytes;
    return id;
  }

  std::string reason_;
  bool cleaned_ = false;
  std::map<std::string, std::string> blocks_;
};

}  // namespace gantry::test
