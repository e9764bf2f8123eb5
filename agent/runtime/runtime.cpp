#include "runtime/runtime.hpp"

#include <atomic>
#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "plugin/loader.hpp"

namespace gantry::runtime {

namespace {

constexpr const char* kPluginFile = "gantry-runtime-lxc.so";

void HostLog(void* /*ctx*/, int level, const char* message) {
  log::Write(static_cast<log::Level>(level < 0 ? 0 : level > 3 ? 3 : level), "runtime-lxc",
             message ? message : "");
}
void HostPostEvent(void* /*ctx*/, const char* /*event_json*/) {}

const GantryHostV1 kHost = {GANTRY_PLUGIN_ABI_V1, nullptr, HostLog, HostPostEvent, nullptr, nullptr};

Expected<State> ParseState(const std::string& s) {
  if (s == "RUNNING") return State::kRunning;
  if (s == "STOPPED") return State::kStopped;
  if (s == "STARTING") return State::kStarting;
  if (s == "FAILED") return State::kFailed;
  if (s == "ABSENT") return State::kAbsent;
  return Fail("plugin", "runtime plugin reported an unknown state \"" + s + "\"");
}

// The Runtime over the plugin's JSON call interface.
class PluginRuntime : public Runtime {
 public:
  PluginRuntime(std::unique_ptr<plugin::Plugin> plugin, HelperLost on_helper_lost)
      : plugin_(std::move(plugin)), on_helper_lost_(std::move(on_helper_lost)) {}

  ExpectedVoid Prepare(const ContainerSpec& spec) override {
    nlohmann::json files = nlohmann::json::array();
    for (auto& [path, source] : spec.config_files)
      files.push_back({{"path", path}, {"source", source.string()}});
    nlohmann::json storage = nlohmann::json::array();
    for (auto& s : spec.storage)
      storage.push_back({{"path", s.path}, {"persistence", s.persistence}});
    auto r = Call("prepare", {{"name", spec.name},
                              {"instance", spec.instance},
                              {"rootfs_image", spec.rootfs_image.string()},
                              {"lxc_config", spec.lxc_config},
                              {"config_files", files},
                              {"storage", storage},
                              {"privileged", spec.privileged}});
    if (!r) return Unexpected(r.error());
    return {};
  }

  ExpectedVoid Start(const std::string& instance) override {
    auto r = Call("start", {{"instance", instance}});
    if (!r) return Unexpected(r.error());
    return {};
  }

  ExpectedVoid Stop(const std::string& instance, int timeout_s) override {
    auto r = Call("stop", {{"instance", instance}, {"timeout_s", timeout_s}});
    if (!r) return Unexpected(r.error());
    return {};
  }

  Expected<Status> GetStatus(const std::string& instance) override {
    auto r = Call("status", {{"instance", instance}});
    if (!r) return Unexpected(r.error());
    try {
      auto state = ParseState(r->at("state").get<std::string>());
      if (!state) return Unexpected(state.error());
      return Status{*state, r->value("init_pid", -1)};
    } catch (const nlohmann::json::exception& e) {
      return Fail("plugin", std::string("bad status reply from runtime plugin: ") + e.what());
    }
  }

  Expected<int> Exec(const std::string& instance, const std::vector<std::string>& argv,
                     int timeout_s) override {
    auto r = Call("exec", {{"instance", instance}, {"argv", argv}, {"timeout_s", timeout_s}});
    if (!r) return Unexpected(r.error());
    try {
      return r->at("exit_code").get<int>();
    } catch (const nlohmann::json::exception& e) {
      return Fail("plugin", std::string("bad exec reply from runtime plugin: ") + e.what());
    }
  }

  ExpectedVoid Release(const std::string& instance) override {
    auto r = Call("release", {{"instance", instance}});
    if (!r) return Unexpected(r.error());
    return {};
  }

  Expected<std::vector<std::string>> List() override {
    auto r = Call("list", nlohmann::json::object());
    if (!r) return Unexpected(r.error());
    try {
      return r->at("instances").get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception& e) {
      return Fail("plugin", std::string("bad list reply from runtime plugin: ") + e.what());
    }
  }

 private:
  Expected<nlohmann::json> Call(const char* op, const nlohmann::json& request) {
    auto reply = plugin_->Call(op, request);
    if (!reply && reply.error().code == "helper" && on_helper_lost_ && !helper_lost_reported_.exchange(true))
      on_helper_lost_(reply.error());
    return reply;
  }

  std::unique_ptr<plugin::Plugin> plugin_;
  HelperLost on_helper_lost_;
  std::atomic<bool> helper_lost_reported_{false};
};

}  // namespace

const char* StateName(State state) {
  switch (state) {
    case State::kRunning: return "RUNNING";
    case State::kStopped: return "STOPPED";
    case State::kStarting: return "STARTING";
    case State::kFailed: return "FAILED";
    case State::kAbsent: return "ABSENT";
  }
  return "ABSENT";
}

Expected<std::unique_ptr<Runtime>> LoadRuntimePlugin(const std::filesystem::path& plugin_dir,
                                                     const std::filesystem::path& data_dir,
                                                     const nlohmann::json& options,
                                                     HelperLost on_helper_lost) {
  nlohmann::json config = options.is_object() ? options : nlohmann::json::object();
  config["data_dir"] = data_dir.string();
  auto plugin = plugin::Load(plugin_dir / kPluginFile, "runtime", &kHost, config);
  if (!plugin) return Unexpected(plugin.error());
  return std::unique_ptr<Runtime>(new PluginRuntime(std::move(*plugin), std::move(on_helper_lost)));
}

}  // namespace gantry::runtime
