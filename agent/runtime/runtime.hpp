#pragma once
// The container runtime as the agent sees it (docs/revision-format.md storage, docs/architecture.md STAGED/SWITCHING/stop,
// docs/architecture.md plugins, docs/operator-guide.md layout). The only implementation is the gantry-runtime-lxc.so plugin; this
// header and its loader know nothing of liblxc.
//
// Threading: LoadRuntimePlugin() forks the plugin's liblxc helper process. Call it in gantryd's
// main thread BEFORE any other thread exists (before Paho, curl or worker threads start): the
// fork copies only the calling thread, liblxc keeps global state, and the helper is killed
// when the thread that forked it exits (PR_SET_PDEATHSIG). Every method blocks until the
// helper answers (Stop up to its timeout, Exec up to its timeout); calls from several threads
// are serialised. Never call it from the event loop thread. If the helper dies, every later
// call fails with code "helper" and gantryd must be restarted (containers keep running): the
// loader's on_helper_lost is called once, from the calling thread, when that first happens.
//
// Lifecycle of an instance: Prepare (mount + config, idempotent) → Start → [Exec]* → Stop →
// Release. Containers outlive the agent: a new agent loading the plugin again sees them in
// List() and GetStatus() (adoption) without restarting them.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/error.hpp"

namespace gantry::runtime {

// One writable area of a container (run.json "storage"). path is a directory inside the
// container, with or without the leading "/" ("data" = "/data"), or "lxc-overlay" (also "/")
// for the root file system's own writable layer, which is "boot" unless the revision says
// otherwise. persistence:
//   "boot"      cleared at every Start
//   "revision"  kept in the instance directory (dies with Release)
//   "permanent" <data_dir>/storage/<name>/<path>, bind-mounted; survives Release and is shared
//               by every instance of the same container name
struct StorageSpec {
  std::string path;
  std::string persistence;
};

struct ContainerSpec {
  std::string name;      // container name from the revision (a safe name), the uts name
  std::string instance;  // LXC container name, unique per content: <name>-<12 hex of content key>
  std::filesystem::path rootfs_image;  // squashfs block in the cache (read-only file)
  std::string lxc_config;  // the revision's LXC config text, already policy-checked by the agent
  // container path -> source file (the revision's _config/<c>/<path> blocks)
  std::vector<std::pair<std::string, std::filesystem::path>> config_files;
  std::vector<StorageSpec> storage;
  // run.json "privileged": true. The runtime refuses it unless its options list the name
  // (runtime.privileged); otherwise the container runs in a user namespace (runtime.idmap).
  bool privileged = false;
};

// kAbsent: no such prepared instance. kStopped: prepared, not running (never started, stopped,
// or its init exited). kStarting: LXC is still starting it. kFailed: LXC reports it broken.
enum class State { kRunning, kStopped, kStarting, kFailed, kAbsent };

struct Status {
  State state = State::kAbsent;
  int init_pid = -1;  // host pid of the container's init while running, else -1
};

// "RUNNING", "STOPPED", "STARTING", "FAILED", "ABSENT" (the P/state vocabulary).
const char* StateName(State state);

class Runtime {
 public:
  virtual ~Runtime() = default;
  // Mounts the rootfs image read-only (loop), the overlay writable layer and the storage,
  // copies the config files in and writes the LXC config. Idempotent: preparing an instance
  // that is already prepared (or running) succeeds without touching it.
  virtual ExpectedVoid Prepare(const ContainerSpec& spec) = 0;
  // Starts a prepared instance daemonized (it outlives the agent); returns once LXC reports
  // it RUNNING. Starting a running instance succeeds. "boot" storage is cleared here.
  virtual ExpectedVoid Start(const std::string& instance) = 0;
  // Sends the container's halt signal and waits up to timeout_s, then SIGKILLs it (timeout_s
  // <= 0: SIGKILL at once). Stopping a stopped or absent instance succeeds.
  virtual ExpectedVoid Stop(const std::string& instance, int timeout_s) = 0;
  virtual Expected<Status> GetStatus(const std::string& instance) = 0;
  // Runs argv inside the running container and returns its exit code (128+signal when killed
  // by a signal). Error "timeout" when it runs longer than timeout_s (it is then killed).
  virtual Expected<int> Exec(const std::string& instance, const std::vector<std::string>& argv,
                             int timeout_s) = 0;
  // SIGKILLs it if still running (Stop it first for a clean halt), unmounts everything,
  // detaches the loop device and removes the instance directory; permanent storage
  // (<data_dir>/storage/<name>/) is kept. Releasing an absent instance succeeds.
  virtual ExpectedVoid Release(const std::string& instance) = 0;
  // Every prepared instance (running or not).
  virtual Expected<std::vector<std::string>> List() = 0;
};

// Loads <plugin_dir>/gantry-runtime-lxc.so with dlopen, resolves gantry_plugin_v1 and checks
// abi_version == GANTRY_PLUGIN_ABI_V1 and kind == "runtime"; then creates the instance, which
// forks the liblxc helper (see "Threading" above). options: the plugin settings (may be an
// empty object); data_dir is added as "data_dir". Layout under data_dir: containers/ (the
// lxcpath) and storage/ (permanent volumes).
using HelperLost = std::function<void(const Error&)>;
Expected<std::unique_ptr<Runtime>> LoadRuntimePlugin(const std::filesystem::path& plugin_dir,
                                                     const std::filesystem::path& data_dir,
                                                     const nlohmann::json& options,
                                                     HelperLost on_helper_lost = {});

}  // namespace gantry::runtime
