#include "helper.hpp"

#include <lxc/attach_options.h>
#include <lxc/lxccontainer.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cgroups.hpp"
#include "channel.hpp"
#include "core/fs.hpp"
#include "core/names.hpp"
#include "lxc_config.hpp"
#include "mounts.hpp"

namespace gantry::lxc {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// The program LXC starts as the container's init: the first word of the last lxc.init.cmd,
// else LXC's default.
std::string InitCommand(const std::string& config) {
  std::string cmd = "/sbin/init";
  if (auto pairs = manifest::ReadLxcConfig(config))
    for (auto& p : *pairs)
      if (p.key == "lxc.init.cmd") {
        std::istringstream words(p.value);
        if (std::string first; words >> first) cmd = first;
      }
  return cmd;
}

// In <instance>/boot (cleared at every mount of the root file system): a container has been
// started on the mounted root file system since.
constexpr const char* kUsedMarker = "rootfs-used";

struct ContainerPut {
  void operator()(lxc_container* c) const { lxc_container_put(c); }
};
using ContainerPtr = std::unique_ptr<lxc_container, ContainerPut>;

struct Volume {
  std::string rel;  // path inside the container without the leading "/", "" for the root layer
  std::string persistence;
};

struct Spec {
  std::string name, instance;
  stdfs::path rootfs_image;
  std::string lxc_config;
  std::vector<std::pair<std::string, stdfs::path>> config_files;  // rel path -> source
  std::string root_persistence = "boot";
  std::vector<Volume> volumes;  // sorted: a parent is mounted before what lies inside it
  bool privileged = false;      // run.json "privileged": true
};

bool IsPersistence(const std::string& p) {
  return p == "boot" || p == "revision" || p == "permanent";
}

// A container path as a relative key ("/etc/app.conf" -> "etc/app.conf"), checked.
Expected<std::string> RelPath(const std::string& path, const char* what) {
  std::string rel = path;
  while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  if (rel.empty() || !IsSafeKey(rel))
    return Fail("bad_request", std::string(what) + " path \"" + path + "\" is not a safe path");
  return rel;
}

Expected<Spec> ParseSpec(const json& req) {
  Spec s;
  s.name = req.at("name").get<std::string>();
  s.instance = req.at("instance").get<std::string>();
  if (!IsSafeName(s.name)) return Fail("bad_request", "container name \"" + s.name + "\" is not safe");
  if (!IsSafeName(s.instance))
    return Fail("bad_request", "instance name \"" + s.instance + "\" is not safe");
  s.rootfs_image = req.at("rootfs_image").get<std::string>();
  if (!s.rootfs_image.is_absolute())
    return Fail("bad_request", "rootfs_image must be an absolute path");
  s.lxc_config = req.value("lxc_config", "");
  s.privileged = req.value("privileged", false);
  for (auto& f : req.value("config_files", json::array())) {
    auto rel = RelPath(f.at("path").get<std::string>(), "config file");
    if (!rel) return Unexpected(rel.error());
    s.config_files.emplace_back(*rel, f.at("source").get<std::string>());
  }
  for (auto& v : req.value("storage", json::array())) {
    auto path = v.at("path").get<std::string>();
    auto persistence = v.at("persistence").get<std::string>();
    if (!IsPersistence(persistence))
      return Fail("bad_request", "storage " + path + ": persistence \"" + persistence +
                                     "\" is not boot, revision or permanent");
    if (path == "lxc-overlay" || path == "/") {
      s.root_persistence = persistence;
      continue;
    }
    auto rel = RelPath(path, "storage");
    if (!rel) return Unexpected(rel.error());
    s.volumes.push_back({*rel, persistence});
  }
  std::sort(s.volumes.begin(), s.volumes.end(),
            [](const Volume& a, const Volume& b) { return a.rel < b.rel; });
  return s;
}

std::string StateName(const char* lxc_state) {
  std::string s = lxc_state ? lxc_state : "";
  if (s == "RUNNING" || s == "FROZEN" || s == "FREEZING" || s == "THAWED" || s == "STOPPING")
    return "RUNNING";
  if (s == "STARTING") return "STARTING";
  if (s == "STOPPED") return "STOPPED";
  return "FAILED";  // ABORTING, or a state this liblxc does not name
}

class Helper {
 public:
  explicit Helper(HelperOptions options)
      : options_(std::move(options)), lxcpath_(options_.data_dir / "containers") {
    auto cgroups = OwnCgroups();
    if (cgroups) cgroups_ = std::move(*cgroups);
    else Log(GANTRY_LOG_WARN, cgroups.error().String());
  }

  json Dispatch(const std::string& frame) {
    try {
      auto msg = json::parse(frame);
      auto op = msg.at("op").get<std::string>();
      const json& req = msg.at("req");
      Expected<json> r = Fail("bad_request", "unknown operation \"" + op + "\"");
      if (op == "prepare") r = Prepare(req);
      else if (op == "start") r = Start(req.at("instance").get<std::string>());
      else if (op == "stop") r = Stop(req.at("instance").get<std::string>(), req.value("timeout_s", 5));
      else if (op == "status") r = Status(req.at("instance").get<std::string>());
      else if (op == "exec") r = Exec(req);
      else if (op == "release") r = Release(req.at("instance").get<std::string>());
      else if (op == "list") r = List();
      if (!r) return {{"ok", false}, {"error", {{"code", r.error().code}, {"message", r.error().message}}}};
      (*r)["ok"] = true;
      return *r;
    } catch (const json::exception& e) {
      return {{"ok", false}, {"error", {{"code", "bad_request"}, {"message", e.what()}}}};
    } catch (const std::exception& e) {
      return {{"ok", false}, {"error", {{"code", "internal"}, {"message", e.what()}}}};
    }
  }

 private:
  stdfs::path Dir(const std::string& instance) const { return lxcpath_ / instance; }

  void Log(int level, const std::string& message) const {
    if (options_.host && options_.host->log) options_.host->log(options_.host->ctx, level, message.c_str());
  }

  Expected<ContainerPtr> Open(const std::string& instance) {
    if (!IsSafeName(instance)) return Fail("bad_request", "instance name \"" + instance + "\" is not safe");
    ContainerPtr c(lxc_container_new(instance.c_str(), lxcpath_.c_str()));
    if (!c) return Fail("lxc", "liblxc cannot open container " + instance + " in " + lxcpath_.string());
    return c;
  }

  // What liblxc logged as ERROR for this instance, condensed: the useful part of a failure.
  std::string LogErrors(const std::string& instance) const {
    auto text = fs::ReadFile(Dir(instance) / "lxc.log", 64u << 20);
    if (!text) return "no lxc log";
    std::vector<std::string> errors;
    size_t pos = 0;
    while (pos < text->size()) {
      size_t end = text->find('\n', pos);
      if (end == std::string::npos) end = text->size();
      std::string line = text->substr(pos, end - pos);
      if (line.find(" ERROR ") != std::string::npos) errors.push_back(line);
      pos = end + 1;
    }
    if (errors.empty()) return "see " + (Dir(instance) / "lxc.log").string();
    // The first error is the cause ("Failed to exec ..."); the last says how the call ended.
    std::string out = Message(errors.front());
    if (errors.size() > 1) out += "; ...; " + Message(errors.back());
    return out;
  }

  // "lxc app 2026... ERROR    start - ../src/lxc/start.c:start:2197 - No such file - Failed"
  // -> "No such file - Failed"
  static std::string Message(const std::string& line) {
    auto level = line.find(" ERROR ");
    auto first = line.find(" - ", level);
    auto second = first == std::string::npos ? first : line.find(" - ", first + 3);
    return second == std::string::npos ? line : line.substr(second + 3);
  }

  Expected<Spec> LoadSpec(const std::string& instance) {
    auto text = fs::ReadFile(Dir(instance) / "spec.json");
    if (!text) return Fail("not_found", "instance " + instance + " is not prepared");
    auto j = json::parse(*text, nullptr, false);
    if (j.is_discarded()) return Fail("io", "spec.json of " + instance + " is corrupt");
    return ParseSpec(j);
  }

  Expected<bool> Running(const std::string& instance) {
    if (!stdfs::exists(Dir(instance) / "config")) return false;
    auto c = Open(instance);
    if (!c) return Unexpected(c.error());
    return (*c)->is_running(c->get());
  }

  // The directory a volume's source lives below; Gantry's own, unlike what is inside it.
  stdfs::path VolumeBase(const Spec& s, const Volume& v) const {
    if (v.persistence == "permanent") return options_.data_dir / "storage" / s.name;
    if (v.persistence == "revision") return Dir(s.instance) / "volumes";
    return Dir(s.instance) / "boot" / "volumes";
  }

  // Overlay, volumes and config files on <dir>/rootfs, which must not be mounted. Clears every
  // "boot" layer first: this runs at every start.
  ExpectedVoid MountRootfs(const Spec& s) {
    auto dir = Dir(s.instance);
    if (auto r = ClearDir(dir / "boot"); !r) return r;
    stdfs::path layer = s.root_persistence == "permanent"
                            ? options_.data_dir / "storage" / s.name / "lxc-overlay"
                        : s.root_persistence == "revision" ? dir / "layer"
                                                           : dir / "boot" / "layer";
    for (auto& d : {layer / "upper", layer / "work"}) {
      if (auto r = fs::MakeDirs(d, 0755); !r) return r;
      // The upper layer's root is the container's "/": owned by the container's root.
      if (auto r = OwnByContainerRoot(s, d); !r) return r;
    }
    if (auto r = MountOverlay(dir / "ro", layer / "upper", layer / "work", dir / "rootfs"); !r)
      return r;
    auto result = [&]() -> ExpectedVoid {
      for (auto& v : s.volumes) {
        // A container writes symlinks into its volumes; a later revision's nested volume
        // ("data" and "data/sub") must not follow them out onto the host.
        auto base = VolumeBase(s, v);
        if (auto r = fs::MakeDirs(base, 0755); !r) return r;
        auto source = OpenDirInRoot(base, v.rel);
        if (!source) return Unexpected(source.error());
        if (auto r = OwnByContainerRoot(s, "/proc/self/fd/" + std::to_string(source->get())); !r) return r;
        if (auto r = BindInRoot("/proc/self/fd/" + std::to_string(source->get()), dir / "rootfs", v.rel); !r)
          return r;
      }
      for (auto& [rel, source] : s.config_files)
        // Unprivileged: owned by the container's root, or it would be nobody's inside.
        if (auto r = CopyInRoot(source, dir / "rootfs", rel,
                                s.privileged ? std::nullopt : std::optional<unsigned>(options_.idmap.outside));
            !r)
          return Unexpected(r.error().WithContext("config file /" + rel));
      return {};
    }();
    if (!result) {
      if (auto r = UnmountBelow(dir / "rootfs"); !r) Log(GANTRY_LOG_ERROR, r.error().String());
    }
    return result;
  }

  // Unprivileged: a directory Gantry just created (host root's) becomes the container root's,
  // so that the container can write its own layer and volumes. Anything else is left as is.
  ExpectedVoid OwnByContainerRoot(const Spec& s, const stdfs::path& dir) const {
    if (s.privileged) return {};
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return Fail("io", fs::ErrnoMessage("cannot stat", dir));
    if (st.st_uid != 0 || st.st_gid != 0) return {};
    if (::chown(dir.c_str(), options_.idmap.outside, options_.idmap.outside) != 0)
      return Fail("io", fs::ErrnoMessage("cannot chown", dir));
    return {};
  }

  ExpectedVoid EnsureImageMounted(const Spec& s) {
    auto ro = Dir(s.instance) / "ro";
    auto mounted = IsMountPoint(ro);
    if (!mounted) return Unexpected(mounted.error());
    if (*mounted) return {};
    if (!stdfs::is_regular_file(s.rootfs_image))
      return Fail("not_found", "rootfs image " + s.rootfs_image.string() + " does not exist");
    if (auto r = MountSquashfs(s.rootfs_image, ro); !r) return r;
    if (s.privileged) return {};
    if (auto r = GrantSearch(Dir(s.instance), options_.idmap.outside); !r) return r;
    // Unprivileged: the image's root-owned files must stay root's inside the user namespace.
    auto r = IdmapMount(ro, options_.idmap);
    if (!r) {
      if (auto u = UnmountBelow(ro); !u) Log(GANTRY_LOG_ERROR, u.error().String());
      return Fail("idmap", r.error().message + " (unprivileged containers need idmapped mounts; "
                  "see docs/container-isolation.md)");
    }
    return {};
  }

  Expected<json> Prepare(const json& req) {
    auto spec = ParseSpec(req);
    if (!spec) return Unexpected(spec.error());
    if (spec->privileged && std::find(options_.privileged.begin(), options_.privileged.end(),
                                      spec->name) == options_.privileged.end())
      return Fail("privileged", "container " + spec->name + " asks to run privileged (run.json "
                  "\"privileged\": true) but runtime.privileged does not list " + spec->name);
    auto running = Running(spec->instance);
    if (!running) return Unexpected(running.error());
    if (*running) return json::object();  // adopted or already started: leave it alone
    // A first prepare that fails leaves nothing behind; a repeated one keeps what worked before.
    bool fresh = !stdfs::exists(Dir(spec->instance) / "spec.json");
    auto r = Mount(*spec, req);
    if (!r && fresh) {
      if (auto d = Discard(spec->instance); !d) Log(GANTRY_LOG_ERROR, d.error().String());
    }
    if (!r) return Unexpected(r.error());
    return json::object();
  }

  // Directories, config, spec, image and root file system of a prepared instance.
  ExpectedVoid Mount(const Spec& s, const json& req) {
    auto dir = Dir(s.instance);
    for (auto& d : {dir, dir / "ro", dir / "rootfs"})
      if (auto r = fs::MakeDirs(d, 0755); !r) return r;
    OwnedKeys owned{s.name, (dir / "rootfs").string(), (dir / "lxc.log").string(),
                    options_.log_level, s.privileged, options_.idmap, DevicesControllerIsV1(),
                    AppArmorEnabled()};
    auto config = ComposeConfig(s.lxc_config, owned);
    if (!config) return Unexpected(config.error().WithContext("container " + s.name));
    if (auto r = fs::WriteFileAtomic(dir / "config", *config, 0644); !r) return r;
    if (auto r = fs::WriteFileAtomic(dir / "spec.json", req.dump(2), 0600); !r) return r;
    if (auto r = EnsureImageMounted(s); !r) return r;
    auto mounted = IsMountPoint(dir / "rootfs");
    if (!mounted) return Unexpected(mounted.error());
    if (!*mounted)
      if (auto r = MountRootfs(s); !r) return r;
    // A swap's downtime should not include decompressing the new image's init.
    WarmInRoot(dir / "rootfs", InitCommand(s.lxc_config));
    return {};
  }

  Expected<json> Start(const std::string& instance) {
    auto spec = LoadSpec(instance);
    if (!spec) return Unexpected(spec.error());
    auto running = Running(instance);
    if (!running) return Unexpected(running.error());
    if (*running) return json::object();
    auto dir = Dir(instance);
    if (auto r = EnsureImageMounted(*spec); !r) return Unexpected(r.error());
    if (!spec->privileged)
      if (auto r = GrantSearch(dir, options_.idmap.outside); !r) return Unexpected(r.error());
    // The root file system prepare mounted is used as it is by the first start: remounting
    // it would only lengthen a stop-first swap's downtime. Any later start (a restart, a
    // rollback to this instance) mounts it afresh, clearing what the last run left in "boot".
    auto mounted = IsMountPoint(dir / "rootfs");
    if (!mounted) return Unexpected(mounted.error());
    if (!*mounted || stdfs::exists(dir / "boot" / kUsedMarker)) {
      if (auto r = UnmountBelow(dir / "rootfs"); !r) return Unexpected(r.error());
      if (auto r = MountRootfs(*spec); !r) return Unexpected(r.error());
    }
    // No fsync: after a crash of the host nothing is mounted any more, and a remount follows.
    if (!fs::Fd(::open((dir / "boot" / kUsedMarker).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)))
      return Fail("io", fs::ErrnoMessage("cannot mark the root file system used", dir / "boot" / kUsedMarker));
    SweepMonitorCgroups(cgroups_, instance);
    // One log per start keeps the file small and this start's errors easy to find. Rotated
    // before liblxc loads the config, which opens the log file.
    std::error_code ec;
    stdfs::rename(dir / "lxc.log", dir / "lxc.log.1", ec);
    auto c = Open(instance);
    if (!c) return Unexpected(c.error());
    lxc_container* ct = c->get();
    if (!ct->is_defined(ct)) return Fail("lxc", "liblxc finds no config for " + instance);
    if (!ct->want_daemonize(ct, true)) return Fail("lxc", "liblxc refused to daemonize " + instance);
    // The container's monitor must not inherit the helper's descriptors (the socket to gantryd).
    if (!ct->want_close_all_fds(ct, true))
      return Fail("lxc", "liblxc refused to close inherited descriptors for " + instance);
    bool started = ct->start(ct, 0, nullptr);
    // liblxc leaves its caller in the new container's monitor cgroup: step back out, or the
    // helper pins that cgroup and everything it starts later is accounted to this container.
    if (auto r = EnterCgroups(cgroups_); !r) Log(GANTRY_LOG_WARN, r.error().String());
    if (!started) return Fail("lxc", "cannot start " + instance + ": " + LogErrors(instance));
    Log(GANTRY_LOG_INFO, "started " + instance + " (init pid " + std::to_string(ct->init_pid(ct)) + ")");
    return json::object();
  }

  Expected<json> Stop(const std::string& instance, int timeout_s) {
    if (!stdfs::exists(Dir(instance) / "config")) return json::object();
    auto c = Open(instance);
    if (!c) return Unexpected(c.error());
    lxc_container* ct = c->get();
    if (!ct->is_running(ct)) return json::object();
    // shutdown() sends lxc.signal.halt (SIGPWR by default) and waits; false = still running.
    if (timeout_s > 0 && ct->shutdown(ct, timeout_s) && !ct->is_running(ct)) {
      Log(GANTRY_LOG_INFO, "halted " + instance);
      return json::object();
    }
    if (!ct->is_running(ct)) return json::object();
    if (!ct->stop(ct) && ct->is_running(ct))
      return Fail("lxc", "cannot kill " + instance + ": " + LogErrors(instance));
    if (!ct->wait(ct, "STOPPED", 30))
      return Fail("lxc", instance + " did not stop within 30 s of SIGKILL");
    Log(GANTRY_LOG_WARN, "killed " + instance + " after " + std::to_string(timeout_s) +
                             " s without halting");
    return json::object();
  }

  Expected<json> Status(const std::string& instance) {
    if (!IsSafeName(instance)) return Fail("bad_request", "instance name \"" + instance + "\" is not safe");
    if (!stdfs::exists(Dir(instance) / "spec.json") || !stdfs::exists(Dir(instance) / "config"))
      return json{{"state", "ABSENT"}, {"init_pid", -1}};
    auto c = Open(instance);
    if (!c) return Unexpected(c.error());
    lxc_container* ct = c->get();
    const char* raw = ct->state(ct);
    if (!raw) return Fail("lxc", "liblxc reports no state for " + instance);
    std::string state = StateName(raw);
    int pid = -1;
    if (state == "RUNNING") {
      pid = ct->init_pid(ct);
      if (pid <= 0) state = "STOPPED";  // it exited between the two questions
    }
    return json{{"state", state}, {"init_pid", pid}, {"lxc_state", raw}};
  }

  Expected<json> Exec(const json& req) {
    auto instance = req.at("instance").get<std::string>();
    auto argv = req.at("argv").get<std::vector<std::string>>();
    int timeout_s = req.value("timeout_s", 10);
    if (argv.empty()) return Fail("bad_request", "exec needs a command");
    auto c = Open(instance);
    if (!c) return Unexpected(c.error());
    lxc_container* ct = c->get();
    if (!stdfs::exists(Dir(instance) / "config") || !ct->is_running(ct))
      return Fail("not_running", "instance " + instance + " is not running");

    fs::Fd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    fs::Fd out_fd(::open((Dir(instance) / "exec.log").c_str(),
                         O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!null_fd || !out_fd) return Fail("io", "cannot open exec output for " + instance);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::string path_env = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";
    std::string home_env = "HOME=/root";
    char* env[] = {path_env.data(), home_env.data(), nullptr};
    char cwd[] = "/";
    lxc_attach_options_t options = LXC_ATTACH_OPTIONS_DEFAULT;
    options.env_policy = LXC_ATTACH_CLEAR_ENV;
    options.extra_env_vars = env;
    options.initial_cwd = cwd;
    options.stdin_fd = null_fd.get();
    options.stdout_fd = out_fd.get();
    options.stderr_fd = out_fd.get();
    lxc_attach_command_t command{args[0], args.data()};
    pid_t pid = -1;
    if (ct->attach(ct, lxc_attach_run_command, &command, &options, &pid) != 0 || pid <= 0)
      return Fail("lxc", "cannot attach to " + instance + ": " + LogErrors(instance));

    // liblxc makes the attached process our child, so it can be waited for with a deadline.
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return json{{"exit_code", code}};
      }
      if (r < 0 && errno != EINTR) return Fail("io", fs::ErrnoMessage("waitpid for exec in", instance));
      if (Clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        return Fail("timeout", "command " + argv[0] + " in " + instance + " ran longer than " +
                                   std::to_string(timeout_s) + " s and was killed");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  Expected<json> Release(const std::string& instance) {
    if (!IsSafeName(instance)) return Fail("bad_request", "instance name \"" + instance + "\" is not safe");
    auto dir = Dir(instance);
    if (!stdfs::exists(dir)) return json::object();
    if (stdfs::exists(dir / "config")) {
      auto c = Open(instance);
      if (!c) return Unexpected(c.error());
      lxc_container* ct = c->get();
      if (ct->is_running(ct)) {
        if (!ct->stop(ct) && ct->is_running(ct))
          return Fail("lxc", "cannot kill " + instance + ": " + LogErrors(instance));
        if (!ct->wait(ct, "STOPPED", 30))
          return Fail("lxc", instance + " did not stop within 30 s of SIGKILL");
      }
    }
    if (auto r = Discard(instance); !r) return Unexpected(r.error());
    // The monitor of a container that just stopped takes a moment to leave its cgroup.
    for (int i = 0; i < 40 && SweepMonitorCgroups(cgroups_, instance) > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Log(GANTRY_LOG_INFO, "released " + instance);
    return json::object();
  }

  // Unmounts everything of a stopped instance and deletes its directory.
  ExpectedVoid Discard(const std::string& instance) {
    auto dir = Dir(instance);
    if (auto r = UnmountBelow(dir); !r) return r;
    // Only now, with nothing mounted below (permanent storage is a bind mount), is it safe to
    // delete the tree.
    auto mounts = MountPoints();
    if (!mounts) return Unexpected(mounts.error());
    for (auto& m : *mounts)
      if (m == dir.string() || m.rfind(dir.string() + "/", 0) == 0)
        return Fail("busy", "cannot remove " + dir.string() + ": " + m + " is still mounted");
    std::error_code ec;
    stdfs::remove_all(dir, ec);
    if (ec) return Fail("io", "cannot remove " + dir.string() + ": " + ec.message());
    return {};
  }

  Expected<json> List() {
    json out = json::array();
    std::error_code ec;
    std::vector<std::string> names;
    for (auto& entry : stdfs::directory_iterator(lxcpath_, ec))
      if (stdfs::exists(entry.path() / "spec.json")) names.push_back(entry.path().filename());
    if (ec) return Fail("io", "cannot list " + lxcpath_.string() + ": " + ec.message());
    std::sort(names.begin(), names.end());
    return json{{"instances", names}};
  }

  HelperOptions options_;
  stdfs::path lxcpath_;
  std::vector<CgroupHierarchy> cgroups_;
};

}  // namespace

void RunHelper(int fd, const HelperOptions& options) {
  ::prctl(PR_SET_NAME, "gantry-lxc", 0, 0, 0);
  Helper helper(options);
  const char* version = lxc_get_version();
  if (!WriteFrame(fd, json{{"ok", true}, {"lxc_version", version ? version : "?"}}.dump()))
    ::_exit(1);
  for (;;) {
    auto frame = ReadFrame(fd, -1);
    // EOF: gantryd closed the plugin (or died). Nothing to clean up: containers outlive us.
    if (!frame) ::_exit(frame.error().code == "eof" ? 0 : 1);
    if (!WriteFrame(fd, helper.Dispatch(*frame).dump())) ::_exit(1);
  }
}

}  // namespace gantry::lxc
