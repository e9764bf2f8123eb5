// LXC config keys that would let a container escape (docs/container-isolation.md's refused list, plus the keys
// whose value is a host path: lxc.mount.fstab, lxc.console.*), through a real
// gantryd on real LXC: each is WONTGO naming the key and nothing starts; with
// runtime.allow_lxc_keys listing one, the same revision passes and runs (its host hook fires,
// which is what proves the refused ones never ran), while an unlisted key is still refused.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "system/swap/swap_fixture.hpp"
#include "tools/tally.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;
namespace stdfs = std::filesystem;

namespace {

// A state of one container "c" whose LXC config is the working base plus `extra`.
struct OneContainer {
  json state;
  std::map<std::string, std::string> blocks;
};

OneContainer WithConfig(SwapFixture& f, const std::string& image, const std::string& extra) {
  std::string conf = "lxc.init.cmd = /sbin/gantry-init\n" + extra + "\n";
  auto conf_id = f.a.PutBlock(conf), root_id = f.a.PutBlock(image);
  json run = {{"#spec", "service-manifest-run@1"}, {"name", "c"}, {"type", "lxc"},
              {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"}, {"group", "app"},
              {"status_goal", "STARTED"}, {"restart_policy", "container"}};
  return {{{"#spec", "pantavisor-service-system@1"}, {"c/run.json", run}, {"c/lxc.container.conf", conf_id},
           {"c/root.squashfs", root_id}},
          {{conf_id, conf}, {root_id, image}}};
}

struct KeyCase {
  std::string line;  // the config line
  std::string key;   // what the WONTGO must name
};

}  // namespace

TEST(SecurityLxcKeys, EscapeKeysRefusedUnlessAllowed) {
  Tally tally{"security-lxc-keys"};
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  auto image = f.Image(kServe, "security-keys");

  // A host hook that leaves a trace: if any refused revision had started, it would be here.
  auto hook = f.a.dir() / "hook.sh";
  auto trace = f.a.dir() / "hook-ran";
  Spit(hook, "#!/bin/sh\necho \"$@\" >> " + ShQuote(trace.string()) + "\n");
  ::chmod(hook.c_str(), 0755);
  // A host fstab that binds a host directory into the container at /data.
  auto canary = f.a.dir() / "canary";
  auto fstab = f.a.dir() / "fstab";
  stdfs::create_directories(canary);
  Spit(fstab, canary.string() + " data none bind,create=dir 0 0\n");

  std::vector<KeyCase> cases = {
      {"lxc.rootfs.mount = /", "lxc.rootfs.mount"},
      {"lxc.rootfs.options = idmap=container", "lxc.rootfs.options"},
      {"lxc.hook.pre-start = " + hook.string(), "lxc.hook.pre-start"},
      {"lxc.hook.mount = " + hook.string(), "lxc.hook.mount"},
      {"\tlxc.hook.start-host=" + hook.string(), "lxc.hook.start-host"},
      {"lxc.include = /etc/passwd", "lxc.include"},
      {"lxc.mount.entry = /etc host-etc none bind,create=dir 0 0", "lxc.mount.entry"},
      {"lxc.mount.entry = etc host-etc none rbind,create=dir 0 0", "lxc.mount.entry"},
      {"lxc.cap.keep = sys_admin", "lxc.cap.keep"},
      {"lxc.apparmor.profile = unconfined", "lxc.apparmor.profile"},
      {"lxc.seccomp.profile = /dev/null", "lxc.seccomp.profile"},
      {"lxc.seccomp.allow_nesting = 1", "lxc.seccomp.allow_nesting"},
      {"lxc.cgroup.devices.allow = a", "lxc.cgroup.devices.allow"},
      {"lxc.cgroup2.devices.allow = b 8:* rwm", "lxc.cgroup2.devices.allow"},
      {"lxc.namespace.share.net = 1", "lxc.namespace.share.net"},
      {"lxc.namespace.keep = net user", "lxc.namespace.keep"},
      {"lxc.net.0.type = none", "lxc.net.0.type"},
      {"lxc.net.1.type = phys", "lxc.net.1.type"},
      // Beyond the documented list: host paths as values. Before they were refused, a host fstab
      // (or a cached block of one, at its predictable path) bound host directories into the
      // container, which wrote to them.
      {"lxc.mount.fstab = " + fstab.string(), "lxc.mount.fstab"},
      {"lxc.console.logfile = " + (canary / "console.log").string(), "lxc.console.logfile"},
      {"lxc.console.path = " + (canary / "tty").string(), "lxc.console.path"},
      // Issue 12's classes: bytes liblxc reads differently, quoting, escapes a deny-list missed.
      {std::string("#\0\nlxc.rootfs.path = dir:/", 26), "NUL byte 0x00"},
      {"lxc.init.cwd = /\r", "CR byte 0x0d"},
      {"lxc.init.cwd = /\xff", "byte 0xff"},
      {"lxc.apparmor.profile = \"unconfined\"", "lxc.apparmor.profile"},
      {"lxc.apparmor.profile = unchanged", "lxc.apparmor.profile"},
      {"lxc.apparmor.raw = change_profile -> **,", "lxc.apparmor.raw"},
      {"lxc.net.0.type = \"none\"", "lxc.net.0.type"},
      {"lxc.mount.entry = \"/ host none ro,bind,create=dir 0 0\"", "lxc.mount.entry"},
      {"lxc.mount.entry = overlay host overlay lowerdir=/,upperdir=/tmp/u,workdir=/tmp/w,create=dir 0 0",
       "lxc.mount.entry"},
      {"lxc.sysctl.kernel.core_pattern = |/bin/true", "lxc.sysctl.kernel.core_pattern"},
      {"lxc.mount.auto = proc:rw sys:rw", "lxc.mount.auto"},
      {"lxc.cgroup.devices.deny = ", "lxc.cgroup.devices.deny"},
  };

  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  int seq = 0;
  for (auto& kc : cases) {
    SCOPED_TRACE(kc.line);
    auto oc = WithConfig(f, image, kc.line);
    std::string id = "key-" + std::to_string(++seq);
    f.a.Send({{"id", id}, {"op", "update"}, {"revision", f.a.Sign(f.a.Revision("k" + std::to_string(seq), seq, oc.state, oc.blocks))}});
    ++tally.inputs;
    auto final_event = f.a.WaitFinal(id, std::chrono::seconds(30));
    auto msg = final_event.value("msg", "");
    EXPECT_EQ(final_event.value("status", ""), "WONTGO") << final_event.dump() << f.a.AgentLog();
    EXPECT_NE(msg.find(kc.key), std::string::npos) << "the WONTGO does not name " << kc.key << ": " << msg;
    EXPECT_NE(msg.find("refused"), std::string::npos) << msg;
    std::printf("refused %-58.58s %s\n", kc.line.c_str(), msg.substr(0, 100).c_str());
  }
  auto running = f.Running();
  EXPECT_TRUE(running.empty()) << "a refused revision started a container";
  EXPECT_FALSE(stdfs::exists(trace)) << "a refused hook ran on the host: " << Slurp(trace);
  EXPECT_TRUE(stdfs::is_empty(canary)) << "a refused key wrote to the host";
  tally.lost += static_cast<long>(running.size()) + (stdfs::exists(trace) ? 1 : 0) + (stdfs::is_empty(canary) ? 0 : 1);

  // The operator allows hooks: the hook revision is admitted, started, and its hook runs.
  f.a.StopAgent();
  f.a.config["runtime"]["allow_lxc_keys"] = {"lxc.hook.*"};
  f.a.StartAgent();
  auto allowed = WithConfig(f, image, "lxc.hook.pre-start = " + hook.string());
  f.a.Send({{"id", "allowed"}, {"op", "update"}, {"revision", f.a.Sign(f.a.Revision("allowed", 100, allowed.state, allowed.blocks))}});
  auto done = f.a.WaitFinal("allowed", std::chrono::seconds(60));
  EXPECT_EQ(done.value("status", ""), "DONE") << done.dump() << f.a.AgentLog();
  EXPECT_NE(f.RunningInstance("c"), "");
  EXPECT_NE(Slurp(trace).find("pre-start"), std::string::npos) << "the allowed hook did not run";

  // Allowing hooks allows nothing else: a hook plus an include is refused for the include,
  // and the running revision stays.
  auto running_before = f.Running();
  auto mixed = WithConfig(f, image, "lxc.hook.pre-start = " + hook.string() + "\nlxc.include = /etc/passwd");
  f.a.Send({{"id", "mixed"}, {"op", "update"}, {"revision", f.a.Sign(f.a.Revision("mixed", 101, mixed.state, mixed.blocks))}});
  ++tally.inputs;
  auto mixed_final = f.a.WaitFinal("mixed", std::chrono::seconds(30));
  EXPECT_EQ(mixed_final.value("status", ""), "WONTGO") << mixed_final.dump();
  EXPECT_NE(mixed_final.value("msg", "").find("lxc.include"), std::string::npos) << mixed_final.dump();
  EXPECT_EQ(f.Running(), running_before) << "a refused revision touched the running one";
  if (f.Running() != running_before) ++tally.lost;
  tally.extra = std::to_string(cases.size()) + " escape keys and bytes WONTGO naming them, nothing started; " +
                "allowed hook runs, allowing it admits nothing else";
  EXPECT_EQ(tally.lost, 0);
  f.Cleanup();
  tally.Print();
}
