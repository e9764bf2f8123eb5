// Container isolation through a real gantryd on real LXC (docs/container-isolation.md):
// a signed revision's default container is unprivileged and cannot reach the host, and a
// container runs privileged only when runtime.privileged lists it.
//
// One revision carries a "probe" container whose init tries each escape once and writes one
// line per probe to its permanent /data; the test reads that file on the host. Each probe
// writes back a value it has just read, so a probe that wrongly succeeded changes nothing.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <thread>

#include "system/swap/swap_fixture.hpp"
#include "tools/tally.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;
namespace stdfs = std::filesystem;

namespace {

// The probe container's init. $HOST_MARKER (from lxc.environment) is a file that exists on
// the host only. "ok" means the isolation held.
const char* kProbes = R"(exec 3>> /data/probes.tmp
p() { echo "$1 $2" >&3; }
read a b c < /proc/self/uid_map; p uid_map "$a $b $c"
read a b c < /proc/self/gid_map; p gid_map "$a $b $c"
set -- $(ls -ln /bin/busybox); p image_owner "$3 $4"
if mknod /tmp/blk b 7 0 2>/dev/null && head -c 1 /tmp/blk >/dev/null 2>&1; then p block_device opened; else p block_device ok; fi
if test -e "$HOST_MARKER" || test -e "/proc/1/root$HOST_MARKER"; then p host_root reachable; else p host_root ok; fi
w=ok
for k in core_pattern modprobe hostname; do v=$(cat /proc/sys/kernel/$k); if echo "$v" 2>/dev/null > /proc/sys/kernel/$k; then w="wrote-$k"; fi; done
p proc_sys_kernel $w
b=$(grep CapBnd /proc/self/status | cut -f2); p cap_sys_module $(( (0x$b >> 16) & 1 ))
if e=$(insmod /bin/busybox 2>&1); then p insmod loaded; else p insmod "failed: $e"; fi
p end end
exec 3>&-
mv /data/probes.tmp /data/probes
trap 'exit 0' PWR; while :; do sleep 1 & wait $!; done)";

// A container entry of a state: run.json, config and image, with extra run.json fields.
void AddContainer(SwapFixture& f, json& state, std::map<std::string, std::string>& blocks,
                  const std::string& name, const std::string& image, const std::string& extra_config,
                  const json& extra_run) {
  std::string conf = "lxc.init.cmd = /sbin/gantry-init\n" + extra_config;
  auto conf_id = f.a.PutBlock(conf), root_id = f.a.PutBlock(image);
  json run = {{"#spec", "service-manifest-run@1"}, {"name", name}, {"type", "lxc"},
              {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"}, {"group", "app"},
              {"status_goal", "STARTED"}, {"restart_policy", "container"}};
  run.update(extra_run);
  state[name + "/run.json"] = run;
  state[name + "/lxc.container.conf"] = conf_id;
  state[name + "/root.squashfs"] = root_id;
  blocks[conf_id] = conf;
  blocks[root_id] = image;
}

json Update(SwapFixture& f, const std::string& id, int seq, const json& state,
            const std::map<std::string, std::string>& blocks) {
  f.a.Send({{"id", id}, {"op", "update"}, {"revision", f.a.Sign(f.a.Revision(id, seq, state, blocks))}});
  return f.a.WaitFinal(id, std::chrono::seconds(60));
}

// probe name → result, once the probe container has written its file.
std::map<std::string, std::string> Probes(const stdfs::path& file) {
  for (int i = 0; i < 300 && !stdfs::exists(file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::map<std::string, std::string> out;
  std::istringstream in(Slurp(file));
  for (std::string l; std::getline(in, l);) {
    auto sp = l.find(' ');
    if (sp != std::string::npos) out[l.substr(0, sp)] = l.substr(sp + 1);
  }
  return out;
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

TEST(SecurityIsolation, UnprivilegedByDefaultPrivilegedOnlyWhenListed) {
  Tally tally{"security-isolation"};
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  auto probe_image = f.Image(kProbes, "isolation-probe");
  auto serve_image = f.Image(kServe, "isolation-platform");
  auto marker = f.a.dir() / "host-only-marker";
  Spit(marker, "host");
  auto core_before = Slurp("/proc/sys/kernel/core_pattern");

  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();

  // 1. The default container: every probe holds.
  json state = {{"#spec", "pantavisor-service-system@1"}};
  std::map<std::string, std::string> blocks;
  AddContainer(f, state, blocks, "probe", probe_image, "lxc.environment = HOST_MARKER=" + marker.string() + "\n",
               {{"storage", {{"data", {{"persistence", "permanent"}}}}}});
  auto done = Update(f, "iso-1", 1, state, blocks);
  ASSERT_EQ(done.value("status", ""), "DONE") << done.dump() << f.a.AgentLog();
  auto probes = Probes(f.a.data_dir() / "storage" / "probe" / "data" / "probes");
  ASSERT_EQ(probes["end"], "end") << "the probe container did not finish; it wrote: "
                                  << Slurp(f.a.data_dir() / "storage" / "probe" / "data" / "probes.tmp");
  const std::map<std::string, std::string> expected = {
      {"uid_map", "0 100000 65536"},  // uid 0 inside is host uid 100000
      {"gid_map", "0 100000 65536"},
      {"image_owner", "0 0"},          // the image's files are still root's inside
      {"block_device", "ok"},          // mknod b 7:0 (loop0) + open fails
      {"host_root", "ok"},             // the host-only file is not there, nor via /proc/1/root
      {"proc_sys_kernel", "ok"},       // core_pattern, modprobe, hostname not writable
      {"cap_sys_module", "0"},         // not in the bounding set
  };
  std::string held;  // the tally names what was enforced
  for (auto& [probe, want] : expected) {
    ++tally.inputs;
    EXPECT_EQ(probes[probe], want) << "probe " << probe;
    if (probes[probe] != want) ++tally.lost;
    else held += (held.empty() ? "" : " ") + probe;
    std::printf("isolation probe %-16s %s\n", probe.c_str(), probes[probe].c_str());
  }
  // Loading a module fails with EPERM (LXC's seccomp policy, and no CAP_SYS_MODULE), not with
  // the ENOSYS host root gets from a kernel built without module support.
  ++tally.inputs;
  EXPECT_EQ(probes["insmod"].rfind("failed: ", 0), 0u) << probes["insmod"];
  EXPECT_NE(probes["insmod"].find("not permitted"), std::string::npos) << probes["insmod"];
  if (probes["insmod"].find("not permitted") != std::string::npos) held += " insmod";
  std::printf("isolation probe %-16s %s\n", "insmod", probes["insmod"].c_str());
  EXPECT_EQ(Slurp("/proc/sys/kernel/core_pattern"), core_before);
  // On the host, the probe file belongs to the mapped root.
  struct stat st {};
  ASSERT_EQ(::stat((f.a.data_dir() / "storage" / "probe" / "data" / "probes").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000u);

  // 2. A privileged container that runtime.privileged does not list: WONTGO naming it, the
  // running revision untouched (same instance, same init process).
  auto probe_instance = f.RunningInstance("probe");
  ASSERT_NE(probe_instance, "");
  auto probe_pid = f.InitPid(probe_instance);
  auto running_before = f.Running();
  AddContainer(f, state, blocks, "platform", serve_image, "", {{"privileged", true}});
  ++tally.inputs;
  auto refused = Update(f, "iso-2", 2, state, blocks);
  auto msg = refused.value("msg", "");
  EXPECT_EQ(refused.value("status", ""), "WONTGO") << refused.dump() << f.a.AgentLog();
  EXPECT_NE(msg.find("platform asks to run privileged"), std::string::npos) << msg;
  EXPECT_NE(msg.find("runtime.privileged does not list platform"), std::string::npos) << msg;
  std::printf("refused privileged: %s\n", msg.c_str());
  EXPECT_EQ(f.Running(), running_before) << "the refused revision touched the running one";
  EXPECT_EQ(f.InitPid(probe_instance), probe_pid) << "the running container was restarted";
  EXPECT_EQ(f.a.LastState().value("rev", ""), "iso-1");
  if (f.Running() != running_before || f.InitPid(probe_instance) != probe_pid) ++tally.lost;
  bool refused_unlisted = refused.value("status", "") == "WONTGO" && msg.find("does not list platform") != std::string::npos;

  // 3. Listed in runtime.privileged, the same container runs privileged (the identity map)
  // next to the unprivileged probe.
  f.a.StopAgent();
  f.a.config["runtime"]["privileged"] = {"platform"};
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  ++tally.inputs;
  auto admitted = Update(f, "iso-3", 3, state, blocks);
  EXPECT_EQ(admitted.value("status", ""), "DONE") << admitted.dump() << f.a.AgentLog();
  auto platform = f.RunningInstance("platform");
  ASSERT_NE(platform, "");
  auto platform_pid = f.InitPid(platform);
  ASSERT_GT(platform_pid, 0);
  auto uid_map = FirstLine(Slurp("/proc/" + std::to_string(platform_pid) + "/uid_map"));
  unsigned long inside = 1, outside = 1, count = 0;
  std::istringstream(uid_map) >> inside >> outside >> count;
  EXPECT_EQ(inside, 0u);
  EXPECT_EQ(outside, 0u) << "privileged container is not host root: " << uid_map;
  EXPECT_EQ(count, 4294967295u);
  bool listed_runs = inside == 0 && outside == 0 && count == 4294967295u;
  auto probe_now = f.RunningInstance("probe");
  ASSERT_NE(probe_now, "");
  auto probe_map = FirstLine(Slurp("/proc/" + std::to_string(f.InitPid(probe_now)) + "/uid_map"));
  std::istringstream(probe_map) >> inside >> outside >> count;
  EXPECT_EQ(outside, 100000u) << "the probe container became privileged: " << probe_map;

  tally.extra = "unprivileged container held: " + held + "; privileged: unlisted " +
                (refused_unlisted ? "WONTGO" : "NOT REFUSED") + ", listed " +
                (listed_runs ? "runs" : "BROKEN");
  EXPECT_EQ(tally.lost, 0);
  f.Cleanup();
  tally.Print();
}
