#include "runtime/runtime.hpp"

#include <dlfcn.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "plugin/gantry_plugin.h"

namespace gantry::runtime {

namespace {

constexpr const char* kPluginFile = "gantry-runtime-lxc.so";

struct DlCloser {
  void operator()(void* handle) const { dlclose(handle); }
};
using DlHandle = std::unique_ptr<void, DlCloser>;

void HostLog(void* /*ctx*/, int level, const char* message) {
  log::Write(static_cast<log::Level>(level < 0 ? 0 : level > 3 ? 3 : level), "runtime-lxc",
             message ? message : "");
}
void HostPostEvent(void* /*ctx*/, const char* /*event_json*/) {}

const GantryHostV1 kHost = {GANTRY_PLUGIN_ABI_V1, nullptr, HostLog, HostPostEvent, nullptr};

Expected<State> ParseState(const std::string& s) {
  if (s == "RUNNING") return State::kRunning;
  if (s == "STOPPED") return State::kStopped;
  if (s == "STARTING") return State::kStarting;
  if (s == "FAILED") return State::kFailed;
  if (s == "ABSENT") return State::kAbsent;
  return Fail("plugin", "runtime plugin reported an unknown state \"" + s + "\"");
}

// The Runtime over the plugin's JSON call interface. The handle outlives the instance: members
// are destroyed in reverse order, so destroy() runs before dlclose().
class PluginRuntime : public Runtime {
 public:
  PluginRuntime(DlHandle handle, const GantryPluginV1* plugin, void* instance, HelperLost on_helper_lost)
      : handle_(std::move(handle)), plugin_(plugin), instance_(instance), on_helper_lost_(std::move(on_helper_lost)) {}
  ~PluginRuntime() override { plugin_->destroy(instance_); }

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
                              {"storage", storage}});
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
    std::lock_guard lock(mu_);
    char* raw = plugin_->call(instance_, op, request.dump().c_str());
    if (!raw) return Fail("plugin", std::string("runtime plugin returned nothing for ") + op);
    std::string text(raw);
    plugin_->free_string(raw);
    auto reply = nlohmann::json::parse(text, nullptr, false);
    if (reply.is_discarded() || !reply.is_object())
      return Fail("plugin", std::string("runtime plugin sent a malformed reply to ") + op);
    if (!reply.value("ok", false)) {
      auto err = reply.value("error", nlohmann::json::object());
      if (!err.is_object()) err = nlohmann::json::object();
      auto failure = Error{err.value("code", "plugin"), err.value("message", std::string(op) + " failed")};
      if (failure.code == "helper" && on_helper_lost_ && !helper_lost_reported_) {
        helper_lost_reported_ = true;
        on_helper_lost_(failure);
      }
      return Unexpected(std::move(failure));
    }
    return reply;
  }

  DlHandle handle_;
  const GantryPluginV1* plugin_;
  void* instance_;
  HelperLost on_helper_lost_;
  bool helper_lost_reported_ = false;  // guarded by mu_
  std::mutex mu_;
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
  auto file = plugin_dir / kPluginFile;
  DlHandle handle(dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!handle) {
    const char* why = dlerror();
    return Fail("plugin", "cannot load " + file.string() + ": " + (why ? why : "unknown error"));
  }
  auto entry = reinterpret_cast<GantryPluginEntryV1>(dlsym(handle.get(), "gantry_plugin_v1"));
  if (!entry) return Fail("plugin", file.string() + " has no gantry_plugin_v1 entry point");
  const GantryPluginV1* plugin = entry();
  if (!plugin) return Fail("plugin", file.string() + ": gantry_plugin_v1 returned NULL");
  if (plugin->abi_version != GANTRY_PLUGIN_ABI_V1)
    return Fail("plugin", file.string() + " has ABI version " +
                              std::to_string(plugin->abi_version) + ", expected " +
                              std::to_string(GANTRY_PLUGIN_ABI_V1));
  if (!plugin->kind || std::string(plugin->kind) != "runtime")
    return Fail("plugin", file.string() + " is not a runtime plugin (kind \"" +
                              std::string(plugin->kind ? plugin->kind : "") + "\")");
  if (!plugin->create || !plugin->destroy || !plugin->call || !plugin->free_string)
    return Fail("plugin", file.string() + " lacks a required function");

  nlohmann::json config = options.is_object() ? options : nlohmann::json::object();
  config["data_dir"] = data_dir.string();
  char* error = nullptr;
  void* instance = plugin->create(&kHost, config.dump().c_str(), &error);
  if (!instance) {
    std::string why = error ? error : "unknown error";
    if (error) plugin->free_string(error);
    return Fail("plugin", "runtime plugin failed to start: " + why);
  }
  return std::unique_ptr<Runtime>(new PluginRuntime(std::move(handle), plugin, instance, std::move(on_helper_lost)));
}

}  // namespace gantry::runtime
