// System tests of gantry-runtime-lxc.so through the agent's Runtime interface: real liblxc,
// real loop devices, squashfs and overlay mounts. Needs root; fails (never skips) when the
// host cannot run LXC, with the reason.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "runtime/runtime.hpp"
#include "test_util.hpp"

using namespace gantry;
using namespace gantry::runtime;
namespace stdfs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kGraceful =
    "trap 'echo halted > /keep/halted; exit 0' PWR; while :; do sleep 1; done";
constexpr const char* kStubborn = "trap '' PWR; while :; do sleep 1; done";
constexpr const char* kExits = "sleep 1; exit 0";
constexpr const char* kLxcConfig = "lxc.init.cmd = /sbin/gantry-init\n";

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string PluginDir() { return test::BuildDir() + "/plugins"; }

// Why LXC cannot run here, or "" when it can.
std::string LxcUnusableReason() {
  if (::geteuid() != 0) return "the runtime tests need root (they mount and start containers)";
  if (!stdfs::exists("/dev/loop-control")) return "/dev/loop-control is missing (no loop devices)";
  if (!stdfs::exists("/sys/fs/cgroup")) return "/sys/fs/cgroup is missing (no cgroups)";
  if (!stdfs::exists(PluginDir() + "/gantry-runtime-lxc.so"))
    return PluginDir() + "/gantry-runtime-lxc.so is not built";
  auto [rc, out] = test::Sh("command -v mksquashfs && file -L /bin/busybox");
  if (rc != 0 || out.find("statically linked") == std::string::npos)
    return "squashfs-tools or busybox-static is missing: " + out;
  return "";
}

// Test images, built on first use and kept in the build tree (ctest runs every test in its
// own process; the name carries a hash of the script and arguments, so a change rebuilds).
class Images {
 public:
  static stdfs::path Graceful() { return Build("graceful", {"--init", kGraceful}); }
  static stdfs::path Stubborn() { return Build("stubborn", {"--init", kStubborn}); }
  static stdfs::path Exits() { return Build("exits", {"--init", kExits}); }
  static stdfs::path MarkerA() { return Build("marker-a", {"--init", kGraceful, "--marker", "AAA"}); }
  static stdfs::path MarkerB() { return Build("marker-b", {"--init", kGraceful, "--marker", "BBB"}); }

 private:
  static stdfs::path Build(const std::string& name, const std::vector<std::string>& args) {
    std::string script = GANTRY_MKROOTFS;
    std::string cmd = Quote(script);
    for (auto& a : args) cmd += " " + Quote(a);
    auto key = std::hash<std::string>{}(test::Slurp(script) + cmd);
    auto dir = stdfs::path(test::BuildDir()) / "tests" / "runtime-lxc-images";
    auto out = dir / (name + "-" + std::to_string(key) + ".squashfs");
    if (stdfs::exists(out)) return out;
    stdfs::create_directories(dir);
    auto tmp = out;
    tmp += "." + std::to_string(::getpid());
    auto [rc, log] = test::Sh(Quote(script) + " " + Quote(tmp.string()) + cmd.substr(Quote(script).size()));
    if (rc != 0) throw std::runtime_error("mkrootfs.sh " + name + " failed: " + log);
    stdfs::rename(tmp, out);
    return out;
  }
};

std::vector<std::string> MountsUnder(const stdfs::path& dir) {
  std::vector<std::string> out;
  std::istringstream in(test::Slurp("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line))
    if (line.find(" " + dir.string()) != std::string::npos) out.push_back(line);
  return out;
}

std::string LoopsFor(const stdfs::path& image) {
  auto [rc, out] = test::Sh("losetup -a");
  std::string hits;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (line.find(image.string()) != std::string::npos) hits += line + "\n";
  return hits;
}

// cgroups named after the instance (lxc.monitor.<i>, lxc.payload.<i>) in any hierarchy.
std::string CgroupsOf(const std::string& instance) {
  std::string found;
  std::error_code ec;
  std::vector<stdfs::path> dirs = {"/sys/fs/cgroup"};
  for (auto& h : stdfs::directory_iterator("/sys/fs/cgroup", ec)) dirs.push_back(h.path());
  for (auto& d : dirs)
    for (auto& e : stdfs::directory_iterator(d, ec))
      if (e.path().filename().string().find(instance) != std::string::npos)
        found += e.path().string() + "\n";
  return found;
}

class RuntimeLxc : public ::testing::Test {
 protected:
  void SetUp() override {
    auto reason = LxcUnusableReason();
    ASSERT_EQ(reason, "") << "LXC cannot run here: " << reason;
    rt_ = Load();
    ASSERT_TRUE(rt_);
  }

  // Stops and releases whatever the test left, even after a failed assertion, so no mount,
  // loop device or container outlives the test.
  void TearDown() override {
    if (!rt_) rt_ = Load();
    if (rt_) {
      if (auto list = rt_->List()) {
        for (auto& i : *list) {
          if (auto r = rt_->Release(i); !r) ADD_FAILURE() << "cleanup release " << i << ": " << r.error().String();
        }
      }
    }
    rt_.reset();
    // Last resort for a broken runtime: never let TempDir's remove_all walk into a mount.
    for (int i = 0; i < 3 && !MountsUnder(data_.path()).empty(); ++i) {
      test::Sh("for c in $(lxc-ls -P " + (data_.path() / "containers").string() +
               "); do lxc-stop -k -P " + (data_.path() / "containers").string() + " -n $c; done");
      for (auto& m : MountsUnder(data_.path())) {
        std::istringstream f(m);
        std::string a, b, c, d, point;
        f >> a >> b >> c >> d >> point;
        test::Sh("umount -l '" + point + "'");
      }
      ADD_FAILURE() << "mounts were left below " << data_.path();
    }
  }

  std::unique_ptr<Runtime> Load() {
    auto rt = LoadRuntimePlugin(PluginDir(), data_.path(), nlohmann::json::object());
    EXPECT_TRUE(rt) << rt.error().String();
    return rt ? std::move(*rt) : nullptr;
  }

  ContainerSpec Spec(const std::string& name, const std::string& hex, const stdfs::path& image) {
    ContainerSpec s;
    s.name = name;
    s.instance = name + "-" + hex;
    s.rootfs_image = image;
    s.lxc_config = kLxcConfig;
    s.storage = {{"/keep", "revision"}};
    return s;
  }

  void PrepareAndStart(const ContainerSpec& s) {
    auto p = rt_->Prepare(s);
    ASSERT_TRUE(p) << p.error().String();
    auto r = rt_->Start(s.instance);
    ASSERT_TRUE(r) << r.error().String();
  }

  Status StatusOf(const std::string& instance) {
    auto s = rt_->GetStatus(instance);
    EXPECT_TRUE(s) << s.error().String();
    return s ? *s : Status{};
  }

  // Awaits a state, polling liblxc, for at most timeout.
  bool AwaitState(const std::string& instance, State want,
                  std::chrono::seconds timeout = std::chrono::seconds(15)) {
    auto end = Clock::now() + timeout;
    while (Clock::now() < end) {
      if (StatusOf(instance).state == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  int ExecCode(const std::string& instance, const std::string& script) {
    auto r = rt_->Exec(instance, {"sh", "-c", script}, 10);
    EXPECT_TRUE(r) << r.error().String();
    return r ? *r : -1;
  }

  test::TempDir data_;
  std::unique_ptr<Runtime> rt_;
};

TEST_F(RuntimeLxc, StartStatusExecStop) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  PrepareAndStart(s);
  auto st = StatusOf(s.instance);
  EXPECT_EQ(st.state, State::kRunning);
  ASSERT_GT(st.init_pid, 0);
  EXPECT_TRUE(stdfs::exists("/proc/" + std::to_string(st.init_pid)));
  // The uts name is the container name; exit codes come through unchanged.
  EXPECT_EQ(ExecCode(s.instance, "test \"$(hostname)\" = app"), 0);
  EXPECT_EQ(ExecCode(s.instance, "exit 3"), 3);
  EXPECT_EQ(ExecCode(s.instance, "test -x /sbin/gantry-init"), 0);
  // The capabilities that reach past the container are not in its bounding set: sys_module
  // (bit 16) and sys_time (bit 25); sys_admin (bit 21) is (privileged containers need it).
  auto cap = [](int bit) {
    return "v=$(awk '/^CapBnd/{print $2}' /proc/self/status); exit $(( (0x$v >> " + std::to_string(bit) + ") & 1 ))";
  };
  EXPECT_EQ(ExecCode(s.instance, cap(16)), 0) << "sys_module was not dropped";
  EXPECT_EQ(ExecCode(s.instance, cap(25)), 0) << "sys_time was not dropped";
  EXPECT_EQ(ExecCode(s.instance, cap(21)), 1) << "the bounding set check reads nothing";
  // lxc-ls on the data dir's lxcpath sees it (docs/operator-guide.md).
  auto [rc, ls] = test::Sh("lxc-ls -P " + (data_.path() / "containers").string() + " --running");
  EXPECT_NE(ls.find(s.instance), std::string::npos) << ls;
  // A clean halt: the init's PWR trap ran (it wrote into the revision volume).
  auto stop = rt_->Stop(s.instance, 10);
  ASSERT_TRUE(stop) << stop.error().String();
  EXPECT_EQ(StatusOf(s.instance).state, State::kStopped);
  EXPECT_EQ(test::Slurp(data_.path() / "containers" / s.instance / "volumes/keep/halted"),
            "halted\n");
  EXPECT_TRUE(rt_->Stop(s.instance, 1)) << "stopping a stopped container succeeds";
}

TEST_F(RuntimeLxc, ExecTimeoutKillsTheCommand) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  PrepareAndStart(s);
  auto r = rt_->Exec(s.instance, {"sleep", "30"}, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "timeout") << r.error().String();
  // The killed command is gone from the container.
  EXPECT_EQ(ExecCode(s.instance, "ps | grep -v grep | grep -q 'sleep 30'"), 1);
  auto missing = rt_->Exec(s.instance, {"/no/such/program"}, 5);
  ASSERT_TRUE(missing) << missing.error().String();
  EXPECT_NE(*missing, 0);
}

TEST_F(RuntimeLxc, StopSigkillsAnInitThatIgnoresTheHaltSignal) {
  auto s = Spec("stubborn", "0123456789ab", Images::Stubborn());
  PrepareAndStart(s);
  ASSERT_EQ(StatusOf(s.instance).state, State::kRunning);
  auto t0 = Clock::now();
  auto stop = rt_->Stop(s.instance, 2);
  auto waited = Clock::now() - t0;
  ASSERT_TRUE(stop) << stop.error().String();
  EXPECT_EQ(StatusOf(s.instance).state, State::kStopped);
  // It was given the full halt timeout before SIGKILL.
  EXPECT_GE(waited, std::chrono::seconds(2));
}

TEST_F(RuntimeLxc, FreshPluginAdoptsRunningContainer) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  PrepareAndStart(s);
  int pid = StatusOf(s.instance).init_pid;
  ASSERT_GT(pid, 0);
  rt_.reset();  // the agent goes away: its helper exits, the container does not
  EXPECT_TRUE(stdfs::exists("/proc/" + std::to_string(pid)));
  rt_ = Load();
  ASSERT_TRUE(rt_);
  auto list = rt_->List();
  ASSERT_TRUE(list) << list.error().String();
  EXPECT_EQ(*list, std::vector<std::string>{s.instance});
  auto st = StatusOf(s.instance);
  EXPECT_EQ(st.state, State::kRunning);
  EXPECT_EQ(st.init_pid, pid) << "adoption must not restart the container";
  // Preparing it again (as a recovering agent does) leaves it running untouched.
  ASSERT_TRUE(rt_->Prepare(s));
  EXPECT_EQ(StatusOf(s.instance).init_pid, pid);
  EXPECT_EQ(ExecCode(s.instance, "true"), 0);
  ASSERT_TRUE(rt_->Stop(s.instance, 5));
}

TEST_F(RuntimeLxc, TwoInstancesOfOneNameCoexist) {
  auto a = Spec("app", "aaaaaaaaaaaa", Images::MarkerA());
  auto b = Spec("app", "bbbbbbbbbbbb", Images::MarkerB());
  PrepareAndStart(a);
  PrepareAndStart(b);  // start-first: the new one starts while the old one runs
  EXPECT_EQ(StatusOf(a.instance).state, State::kRunning);
  EXPECT_EQ(StatusOf(b.instance).state, State::kRunning);
  EXPECT_NE(StatusOf(a.instance).init_pid, StatusOf(b.instance).init_pid);
  EXPECT_EQ(ExecCode(a.instance, "grep -qx AAA /etc/gantry-marker"), 0);
  EXPECT_EQ(ExecCode(b.instance, "grep -qx BBB /etc/gantry-marker"), 0);
  ASSERT_TRUE(rt_->Stop(a.instance, 5));
  EXPECT_EQ(StatusOf(b.instance).state, State::kRunning);
  ASSERT_TRUE(rt_->Release(a.instance));
  EXPECT_EQ(ExecCode(b.instance, "grep -qx BBB /etc/gantry-marker"), 0);
}

TEST_F(RuntimeLxc, StoragePersistence) {
  auto s = Spec("db", "0123456789ab", Images::Graceful());
  s.storage = {{"/data", "permanent"}, {"/keep", "revision"}, {"/scratch", "boot"}};
  PrepareAndStart(s);
  EXPECT_EQ(ExecCode(s.instance,
                     "echo perm > /data/x && echo rev > /keep/x && echo boot > /scratch/x && "
                     "echo root > /etc/rootfile"),
            0);
  // Restart: revision data stays, boot data (and the default "boot" root layer) is cleared.
  ASSERT_TRUE(rt_->Stop(s.instance, 5));
  ASSERT_TRUE(rt_->Start(s.instance));
  EXPECT_EQ(ExecCode(s.instance, "grep -qx perm /data/x"), 0);
  EXPECT_EQ(ExecCode(s.instance, "grep -qx rev /keep/x"), 0);
  EXPECT_EQ(ExecCode(s.instance, "test -e /scratch/x"), 1);
  EXPECT_EQ(ExecCode(s.instance, "test -e /etc/rootfile"), 1);
  // Release and prepare a new instance of the same container: only permanent data is there.
  ASSERT_TRUE(rt_->Stop(s.instance, 5));
  ASSERT_TRUE(rt_->Release(s.instance));
  EXPECT_EQ(test::Slurp(data_.path() / "storage/db/data/x"), "perm\n");
  auto next = s;
  next.instance = "db-ba9876543210";
  PrepareAndStart(next);
  EXPECT_EQ(ExecCode(next.instance, "grep -qx perm /data/x"), 0);
  EXPECT_EQ(ExecCode(next.instance, "test -e /keep/x"), 1);
}

TEST_F(RuntimeLxc, RevisionRootLayerSurvivesRestart) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  s.storage = {{"lxc-overlay", "revision"}};
  PrepareAndStart(s);
  EXPECT_EQ(ExecCode(s.instance, "echo root > /etc/rootfile"), 0);
  ASSERT_TRUE(rt_->Stop(s.instance, 5));
  ASSERT_TRUE(rt_->Start(s.instance));
  EXPECT_EQ(ExecCode(s.instance, "grep -qx root /etc/rootfile"), 0);
}

TEST_F(RuntimeLxc, ConfigFilesAreOverlaid) {
  test::TempDir src;
  test::Spit(src.path() / "app.conf", "answer=42\n");
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  s.config_files = {{"/etc/app/app.conf", src.path() / "app.conf"}};
  PrepareAndStart(s);
  EXPECT_EQ(ExecCode(s.instance, "grep -qx answer=42 /etc/app/app.conf"), 0);
  // Root's inside, and so is the directory created for it (unprivileged: host uid 100000).
  EXPECT_EQ(ExecCode(s.instance, "set -- $(ls -ln /etc/app/app.conf); test \"$3 $4\" = \"0 0\""), 0);
  EXPECT_EQ(ExecCode(s.instance, "set -- $(ls -lnd /etc/app); test \"$3 $4\" = \"0 0\""), 0);
  // The image's own files are still there underneath.
  EXPECT_EQ(ExecCode(s.instance, "grep -q root /etc/passwd"), 0);
}

// An image is untrusted input: its symlinks must not steer storage or config files onto the
// host. A link is resolved as if the container's root were "/".
TEST_F(RuntimeLxc, ImageSymlinksCannotEscapeTheRoot) {
  test::TempDir host;
  auto victim = host.path() / "victim";
  stdfs::create_directories(victim);
  test::Spit(victim / "keep.txt", "host\n");
  test::TempDir src;
  test::Spit(src.path() / "app.conf", "evil\n");
  auto build = [&](const std::string& name, const std::string& extra) {
    auto image = data_.path() / (name + ".squashfs");
    auto [rc, log] = test::Sh(Quote(GANTRY_MKROOTFS) + " " + Quote(image.string()) + " --init " +
                              Quote(kGraceful) + " --link /vol=" + Quote(victim.string()) +
                              " --link /etc/conf=" + Quote(victim.string()) + extra);
    EXPECT_EQ(rc, 0) << log;
    return image;
  };
  auto spec_for = [&](const stdfs::path& image) {
    auto s = Spec("evil", "0123456789ab", image);
    s.storage = {{"/vol", "permanent"}};
    s.config_files = {{"/etc/conf/keep.txt", src.path() / "app.conf"}};
    return s;
  };
  // The links' target does not exist inside the image: refused, the host untouched.
  auto dangling = spec_for(build("dangling", ""));
  auto r = rt_->Prepare(dangling);
  EXPECT_FALSE(r) << "a storage path through a dangling link must not be prepared";
  EXPECT_EQ(test::Slurp(victim / "keep.txt"), "host\n");
  EXPECT_TRUE(MountsUnder(host.path()).empty());
  // The target exists inside the image too: that one is used.
  auto inside = spec_for(build("inside", " --text " + Quote((victim / "in-image").string() + "=yes")));
  inside.instance = "evil-ba9876543210";
  PrepareAndStart(inside);
  EXPECT_EQ(test::Slurp(victim / "keep.txt"), "host\n") << "a config file was written on the host";
  auto host_mounts = MountsUnder(host.path());
  EXPECT_TRUE(host_mounts.empty()) << "storage was mounted on the host: " << host_mounts.front();
  EXPECT_EQ(ExecCode(inside.instance, "echo x > /vol/x && grep -qx evil /etc/conf/keep.txt"), 0);
  EXPECT_FALSE(stdfs::exists(victim / "x"));
  EXPECT_EQ(test::Slurp(data_.path() / "storage/evil/vol/x"), "x\n");
}

TEST_F(RuntimeLxc, ReleaseLeavesNoMountsLoopsOrFiles) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  s.storage = {{"/data", "permanent"}, {"/keep", "revision"}, {"/scratch", "boot"}};
  PrepareAndStart(s);
  ASSERT_TRUE(rt_->Prepare(s)) << "prepare is idempotent";
  EXPECT_FALSE(MountsUnder(data_.path()).empty());
  EXPECT_NE(LoopsFor(s.rootfs_image), "");
  // Released while running: it is killed first.
  auto r = rt_->Release(s.instance);
  ASSERT_TRUE(r) << r.error().String();
  auto left = MountsUnder(data_.path());
  EXPECT_TRUE(left.empty()) << left.front();
  EXPECT_EQ(LoopsFor(s.rootfs_image), "");
  EXPECT_FALSE(stdfs::exists(data_.path() / "containers" / s.instance));
  EXPECT_TRUE(stdfs::exists(data_.path() / "storage/app/data"));
  EXPECT_EQ(CgroupsOf(s.instance), "") << "liblxc cgroups left behind";
  EXPECT_EQ(StatusOf(s.instance).state, State::kAbsent);
  EXPECT_TRUE(rt_->Release(s.instance)) << "releasing an absent instance succeeds";
  EXPECT_TRUE(rt_->List()->empty());
}

TEST_F(RuntimeLxc, ContainerWhoseInitExitsIsStopped) {
  auto s = Spec("oneshot", "0123456789ab", Images::Exits());
  PrepareAndStart(s);
  EXPECT_TRUE(AwaitState(s.instance, State::kStopped)) << StateName(StatusOf(s.instance).state);
  EXPECT_EQ(StatusOf(s.instance).init_pid, -1);
  // Still prepared: it can be started again.
  EXPECT_EQ(*rt_->List(), std::vector<std::string>{s.instance});
  ASSERT_TRUE(rt_->Start(s.instance));
  EXPECT_TRUE(AwaitState(s.instance, State::kStopped));
}

TEST_F(RuntimeLxc, PreparedButNotStartedIsStopped) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  ASSERT_TRUE(rt_->Prepare(s));
  EXPECT_EQ(StatusOf(s.instance).state, State::kStopped);
  EXPECT_EQ(StatusOf("nothing-here").state, State::kAbsent);
  EXPECT_TRUE(rt_->Stop("nothing-here", 1)) << "stopping an absent instance succeeds";
  auto r = rt_->Exec(s.instance, {"true"}, 5);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "not_running");
}

TEST_F(RuntimeLxc, BadRequestsAreRefusedWithReasons) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  s.instance = "../escape";
  auto r = rt_->Prepare(s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "bad_request");
  s = Spec("app", "0123456789ab", data_.path() / "missing.squashfs");
  r = rt_->Prepare(s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "not_found") << r.error().String();
  EXPECT_FALSE(stdfs::exists(data_.path() / "containers" / s.instance)) << "a failed prepare leaves nothing";
  EXPECT_TRUE(rt_->List()->empty());
  s = Spec("app", "0123456789ab", Images::Graceful());
  s.storage = {{"/data/../../etc", "permanent"}};
  r = rt_->Prepare(s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "bad_request");
  s.storage = {{"/data", "forever"}};
  r = rt_->Prepare(s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "bad_request");
  auto start = rt_->Start("never-prepared");
  ASSERT_FALSE(start);
  EXPECT_EQ(start.error().code, "not_found");
}

TEST_F(RuntimeLxc, BadPluginOptionsAreRefused) {
  auto comma = LoadRuntimePlugin(PluginDir(), data_.path() / "a,b", nlohmann::json::object());
  ASSERT_FALSE(comma);
  EXPECT_NE(comma.error().message.find("must not contain"), std::string::npos) << comma.error().message;
  auto relative = LoadRuntimePlugin(PluginDir(), "relative/dir", nlohmann::json::object());
  ASSERT_FALSE(relative);
  EXPECT_NE(relative.error().message.find("absolute"), std::string::npos) << relative.error().message;
  auto level = LoadRuntimePlugin(PluginDir(), data_.path(), {{"log_level", "LOUD"}});
  ASSERT_FALSE(level);
  EXPECT_NE(level.error().message.find("LOUD"), std::string::npos) << level.error().message;
  auto debug = LoadRuntimePlugin(PluginDir(), data_.path(), {{"log_level", "DEBUG"}});
  EXPECT_TRUE(debug) << debug.error().String();
}

TEST_F(RuntimeLxc, LxcFailureIsReportedWithLiblxcReason) {
  auto s = Spec("broken", "0123456789ab", Images::Graceful());
  s.lxc_config = "lxc.init.cmd = /no/such/init\n";
  ASSERT_TRUE(rt_->Prepare(s));
  auto r = rt_->Start(s.instance);
  ASSERT_FALSE(r) << "an init that cannot be executed must fail the start";
  EXPECT_EQ(r.error().code, "lxc");
  // The cause from liblxc's log, not just "failed".
  EXPECT_NE(r.error().message.find("/no/such/init"), std::string::npos) << r.error().message;
  EXPECT_EQ(StatusOf(s.instance).state, State::kStopped);
}

// The helper dies with the process that created the plugin, and containers survive both.
TEST_F(RuntimeLxc, HelperExitsWhenTheAgentDies) {
  auto s = Spec("app", "0123456789ab", Images::Graceful());
  PrepareAndStart(s);
  int init_pid = StatusOf(s.instance).init_pid;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t agent = ::fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    ::close(ready[0]);
    auto rt = LoadRuntimePlugin(PluginDir(), data_.path(), nlohmann::json::object());
    char ok = rt ? 'y' : 'n';
    if (::write(ready[1], &ok, 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(ok, 'y');
  // Find the helper: a child of the fake agent named gantry-lxc.
  pid_t helper = -1;
  for (auto& e : stdfs::directory_iterator("/proc")) {
    auto status = test::Slurp(e.path() / "status");
    if (status.find("Name:\tgantry-lxc\n") != std::string::npos &&
        status.find("PPid:\t" + std::to_string(agent) + "\n") != std::string::npos)
      helper = std::stoi(e.path().filename().string());
  }
  ASSERT_GT(helper, 0) << "no helper process found under pid " << agent;
  ::kill(agent, SIGKILL);
  ::waitpid(agent, nullptr, 0);
  auto end = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < end && stdfs::exists("/proc/" + std::to_string(helper)))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(stdfs::exists("/proc/" + std::to_string(helper))) << "helper outlived the agent";
  EXPECT_EQ(StatusOf(s.instance).init_pid, init_pid);
}

}  // namespace

namespace {

// Others' tests and the demo pack these images into revisions: same input, same bytes.
TEST(Mkrootfs, IsReproducibleAndHonoursItsOptions) {
  test::TempDir dir;
  test::Spit(dir.path() / "src.conf", "k=v\n");
  auto build = [&](const std::string& out, const std::string& marker) {
    return test::Sh(Quote(GANTRY_MKROOTFS) + " " + Quote((dir.path() / out).string()) +
                    " --init 'sleep 1' --marker " + marker + " --text /etc/t=hello --file " +
                    Quote((dir.path() / "src.conf").string() + ":/etc/app/src.conf"));
  };
  auto a = build("a.squashfs", "one");
  ASSERT_EQ(a.first, 0) << a.second;
  auto b = build("b.squashfs", "one");
  ASSERT_EQ(b.first, 0) << b.second;
  auto c = build("c.squashfs", "two");
  ASSERT_EQ(c.first, 0) << c.second;
  EXPECT_EQ(test::Slurp(dir.path() / "a.squashfs"), test::Slurp(dir.path() / "b.squashfs"));
  EXPECT_NE(test::Slurp(dir.path() / "a.squashfs"), test::Slurp(dir.path() / "c.squashfs"));
  auto [rc, listing] = test::Sh("unsquashfs -lls " + Quote((dir.path() / "a.squashfs").string()));
  ASSERT_EQ(rc, 0) << listing;
  for (auto path : {"/bin/busybox", "/bin/sh -> busybox", "/bin/httpd -> busybox", "/sbin/gantry-init",
                    "/etc/passwd", "/etc/gantry-marker", "/etc/t", "/etc/app/src.conf", "/proc", "/dev", "/tmp"})
    EXPECT_NE(listing.find(path), std::string::npos) << path << " missing:\n" << listing;
  EXPECT_EQ(listing.find(" 1000/"), std::string::npos) << "files must be owned by root";
  EXPECT_EQ(listing.rfind("drwxr-xr-x root/root", 0), 0u) << "the root directory must be 0755";
  EXPECT_EQ(test::Sh(Quote(GANTRY_MKROOTFS) + " /tmp/x.squashfs --nonsense").first, 2);
}

}  // namespace

// Isolation (docs/container-isolation.md): a default container runs in a user namespace
// (container root is host uid 100000), the image's files still appear root-owned, and root
// inside reaches neither host devices, the host's /, kernel settings nor kernel modules.
TEST_F(RuntimeLxc, DefaultContainerIsUnprivileged) {
  auto s = Spec("iso", "0123456789ab", Images::Graceful());
  PrepareAndStart(s);
  auto marker = data_.path() / "host-marker";
  test::Spit(marker, "host");
  auto core_before = test::Slurp("/proc/sys/kernel/core_pattern");
  // uid 0 inside is host uid 100000, not host root.
  EXPECT_EQ(ExecCode(s.instance, "read a b c < /proc/self/uid_map; test \"$a $b $c\" = \"0 100000 65536\""), 0);
  EXPECT_EQ(ExecCode(s.instance, "read a b c < /proc/self/gid_map; test \"$a $b\" = \"0 100000\""), 0);
  // The image's files are root's inside (idmapped squashfs under the overlay).
  EXPECT_EQ(ExecCode(s.instance, "set -- $(ls -ln /bin/busybox); test \"$3 $4\" = \"0 0\""), 0);
  // Root inside can write its own root file system.
  EXPECT_EQ(ExecCode(s.instance, "echo x > /written && mkdir -p /var/x && test -s /written"), 0);
  // A host block device (loop0, 7:0) cannot be created and opened.
  EXPECT_NE(ExecCode(s.instance, "mknod /tmp/blk b 7 0 && head -c 1 /tmp/blk > /dev/null"), 0);
  // The host's / is not reachable: the marker file does not exist inside.
  EXPECT_NE(ExecCode(s.instance, "test -e " + marker.string()), 0);
  EXPECT_NE(ExecCode(s.instance, "ls /proc/1/root" + marker.string()), 0);
  // Host-wide kernel settings cannot be written.
  EXPECT_NE(ExecCode(s.instance, "echo '|/bin/true' > /proc/sys/kernel/core_pattern"), 0);
  EXPECT_EQ(test::Slurp("/proc/sys/kernel/core_pattern"), core_before);
  // Kernel modules: CAP_SYS_MODULE (bit 16) is not in the bounding set, and loading fails.
  EXPECT_EQ(ExecCode(s.instance, "b=$(grep CapBnd /proc/self/status | cut -f2); test $(( (0x$b >> 16) & 1 )) = 0"), 0);
  EXPECT_NE(ExecCode(s.instance, "insmod /bin/busybox"), 0);
  // On the host, what root wrote inside belongs to the mapped uid.
  struct stat st {};
  ASSERT_EQ(::stat((data_.path() / "containers" / s.instance / "rootfs" / "written").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000u);
}

TEST_F(RuntimeLxc, PrivilegedOnlyWhenTheOptionsListTheContainer) {
  auto s = Spec("platform", "0123456789ab", Images::Graceful());
  s.privileged = true;
  auto refused = rt_->Prepare(s);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, "privileged");
  EXPECT_NE(refused.error().message.find("platform"), std::string::npos) << refused.error().message;
  EXPECT_FALSE(stdfs::exists(data_.path() / "containers" / s.instance)) << "a refused prepare left files";

  rt_.reset();
  auto rt = LoadRuntimePlugin(PluginDir(), data_.path(), {{"privileged", {"platform"}}});
  ASSERT_TRUE(rt) << rt.error().String();
  rt_ = std::move(*rt);
  PrepareAndStart(s);
  EXPECT_EQ(ExecCode(s.instance, "read a b c < /proc/self/uid_map; test \"$a $b $c\" = \"0 0 4294967295\""), 0);
  EXPECT_EQ(ExecCode(s.instance, "echo ok > /tmp/x && grep -q ok /tmp/x"), 0);
}
