// gantry-runtime-lxc.so: the runtime plugin's C entry point. create() forks the liblxc helper
// (helper.cpp); call() forwards each operation to it over a socketpair and returns its reply.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "channel.hpp"
#include "core/fs.hpp"
#include "gantry_plugin.h"
#include "helper.hpp"

namespace gantry::lxc {

namespace {

using nlohmann::json;

// Calls that wait for a container get their own timeout plus this margin before the helper
// is declared hung.
constexpr int kMarginMs = 60'000;
constexpr int kHelloTimeoutMs = 10'000;

struct Instance {
  int fd = -1;
  pid_t pid = -1;
  std::mutex mu;
  std::string dead;  // why the helper is gone; empty while it serves
};

char* Dup(const std::string& s) { return ::strdup(s.c_str()); }

std::string ErrorReply(const std::string& code, const std::string& message) {
  return json{{"ok", false}, {"error", {{"code", code}, {"message", message}}}}.dump();
}

void Reap(pid_t pid) {
  // Give it a moment to see EOF and exit on its own, then make sure.
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// In the forked child: detach from everything of gantryd's, then serve.
[[noreturn]] void BecomeHelper(int sock, pid_t agent, const HelperOptions& options) {
  // Die with gantryd (PR_SET_PDEATHSIG fires when the forking thread exits, which is gantryd's
  // main thread: the plugin is created before any other thread exists).
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != agent) ::_exit(1);
  // gantryd may block signals for a signalfd: the helper, and through it LXC's monitor and the
  // containers' init, must start with a clean mask and default handlers.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  // Keep only stdio and the socket (as fd 3): gantryd's lock file, database and sockets must
  // not be held by the helper.
  if (sock != 3) {
    if (::dup2(sock, 3) < 0) ::_exit(1);
  } else if (::fcntl(3, F_SETFD, 0) != 0) {
    ::_exit(1);
  }
  ::close_range(4, ~0U, 0);
  RunHelper(3, options);
}

void* Create(const GantryHostV1* host, const char* config_json, char** error) {
  auto fail = [&](const std::string& message) -> void* {
    if (error) *error = Dup(message);
    return nullptr;
  };
  HelperOptions options;
  options.host = host;
  try {
    auto config = json::parse(config_json ? config_json : "{}");
    options.data_dir = config.at("data_dir").get<std::string>();
    options.log_level = config.value("log_level", "INFO");
    options.privileged = config.value("privileged", std::vector<std::string>{});
    if (config.contains("idmap")) {
      auto idmap = ParseIdRange(config.at("idmap").get<std::string>());
      if (!idmap) return fail("runtime-lxc: idmap: " + idmap.error().message);
      options.idmap = *idmap;
    }
  } catch (const json::exception& e) {
    return fail(std::string("runtime-lxc: bad config: ") + e.what());
  }
  if (!options.data_dir.is_absolute())
    return fail("runtime-lxc: data_dir must be an absolute path");
  static const std::vector<std::string> kLevels = {"TRACE", "DEBUG", "INFO", "NOTICE", "WARN",
                                                   "ERROR", "CRIT", "ALERT", "FATAL"};
  if (std::find(kLevels.begin(), kLevels.end(), options.log_level) == kLevels.end())
    return fail("runtime-lxc: log_level \"" + options.log_level + "\" is not an LXC log level");
  // Overlay mount options separate paths with ',' and ':'; LXC config values end at a newline.
  if (options.data_dir.string().find_first_of(",:\n") != std::string::npos)
    return fail("runtime-lxc: data_dir " + options.data_dir.string() +
                " must not contain ',', ':' or a newline");
  if (auto r = fs::MakeDirs(options.data_dir / "containers", 0755); !r) return fail(r.error().String());
  if (auto r = fs::MakeDirs(options.data_dir / "storage", 0700); !r) return fail(r.error().String());

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return fail(std::string("runtime-lxc: socketpair: ") + std::strerror(errno));
  pid_t agent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    return fail(std::string("runtime-lxc: fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(sv[0]);
    BecomeHelper(sv[1], agent, options);
  }
  ::close(sv[1]);
  auto hello = ReadFrame(sv[0], kHelloTimeoutMs);
  if (!hello) {
    ::close(sv[0]);
    Reap(pid);
    return fail("runtime-lxc: the liblxc helper did not start: " + hello.error().message);
  }
  auto* inst = new Instance;
  inst->fd = sv[0];
  inst->pid = pid;
  if (host && host->log) {
    auto h = json::parse(*hello, nullptr, false);
    std::string version = h.is_object() ? h.value("lxc_version", "?") : "?";
    host->log(host->ctx, GANTRY_LOG_INFO,
              ("helper pid " + std::to_string(pid) + ", liblxc " + version).c_str());
  }
  return inst;
}

void Destroy(void* instance) {
  auto* inst = static_cast<Instance*>(instance);
  if (!inst) return;
  if (inst->fd >= 0) ::close(inst->fd);
  if (inst->pid > 0) Reap(inst->pid);
  delete inst;
}

char* Call(void* instance, const char* op, const char* request_json) {
  auto* inst = static_cast<Instance*>(instance);
  std::lock_guard lock(inst->mu);
  if (!inst->dead.empty()) return Dup(ErrorReply("helper", inst->dead));
  json request;
  try {
    request = json{{"op", op ? op : ""}, {"req", json::parse(request_json ? request_json : "{}")}};
  } catch (const json::exception& e) {
    return Dup(ErrorReply("bad_request", std::string("request is not JSON: ") + e.what()));
  }
  const json& req = request["req"];
  if (!req.is_object()) return Dup(ErrorReply("bad_request", "request must be a JSON object"));
  auto timeout_s = req.find("timeout_s");
  int timeout_ms = kMarginMs + (timeout_s != req.end() && timeout_s->is_number_integer()
                                    ? 1000 * std::clamp(timeout_s->get<int>(), 0, 86'400)
                                    : 0);
  if (auto r = WriteFrame(inst->fd, request.dump()); !r) {
    inst->dead = "the liblxc helper is gone (" + r.error().message + "); restart gantryd";
    return Dup(ErrorReply("helper", inst->dead));
  }
  auto reply = ReadFrame(inst->fd, timeout_ms);
  if (!reply) {
    // A helper that hangs or died mid-call cannot be trusted with the next call.
    inst->dead = "the liblxc helper failed during " + std::string(op ? op : "") + " (" +
                 reply.error().message + "); restart gantryd";
    ::kill(inst->pid, SIGKILL);
    ::waitpid(inst->pid, nullptr, 0);
    inst->pid = -1;
    return Dup(ErrorReply("helper", inst->dead));
  }
  return Dup(*reply);
}

void FreeString(char* s) { std::free(s); }

const GantryPluginV1 kPlugin = {GANTRY_PLUGIN_ABI_V1, "runtime", "lxc", Create, Destroy, Call,
                                FreeString};

}  // namespace

}  // namespace gantry::lxc

extern "C" __attribute__((visibility("default"))) const GantryPluginV1* gantry_plugin_v1(void) {
  return &gantry::lxc::kPlugin;
}
