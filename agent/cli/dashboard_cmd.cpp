// gantryctl dashboard: serves the fleet dashboard (docs/dashboard.md) until SIGINT/SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/command.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "dashboard/server.hpp"
#include "rollout/control.hpp"

namespace gantry::cli {
namespace {

// The same default as gantryctl rollout --db, so the buttons reach the running orchestrator.
std::string DefaultRolloutDb() {
  const char* state = std::getenv("XDG_STATE_HOME");
  const char* home = std::getenv("HOME");
  std::string base = state && *state ? state : std::string(home ? home : ".") + "/.local/state";
  return base + "/gantry/rollouts.db";
}

struct DashboardArgs {
  std::string broker, listen = "127.0.0.1:8080", token_file, root = "gantry", db = DefaultRolloutDb();
  int version = 5;
  std::string ca_file, cert_file, key_file, username, password_file;
};

// A secret file's first line, without its line end; a usage error when unreadable or short.
std::string ReadSecret(const std::string& path, const char* what, std::size_t min_size) {
  auto text = fs::ReadFile(path, 4096);
  if (!text) {
    std::cerr << "error: " << what << ": " << text.error().message << "\n";
    throw Exit{kExitUsage};
  }
  std::string s = text->substr(0, text->find('\n'));
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.pop_back();
  if (s.size() < min_size) {
    std::cerr << "error: " << what << " " << path << " holds fewer than " << min_size << " characters\n";
    throw Exit{kExitUsage};
  }
  return s;
}

int Run(const DashboardArgs& a) {
  auto listen = dashboard::ParseListen(a.listen);
  if (!listen) {
    std::cerr << "error: " << listen.error().message << "\n";
    return kExitUsage;
  }
  dashboard::Options o;
  o.host = listen->first;
  o.port = listen->second;
  o.root = a.root;
  bool loopback = dashboard::IsLoopback(o.host);
  if (!loopback && a.token_file.empty()) {
    std::cerr << "error: --listen " << a.listen
              << " is reachable from other machines: give --token-file with a secret (at least 16 characters)\n";
    return kExitUsage;
  }
  if (!a.token_file.empty()) {
    o.view_token = ReadSecret(a.token_file, "--token-file", 16);
    o.action_token = *o.view_token;
  } else {
    auto t = dashboard::RandomToken();
    if (!t) {
      std::cerr << "error: " << t.error().message << "\n";
      return kExitError;
    }
    o.action_token = *t;
  }
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  auto www = dashboard::FindWww(exe);
  if (!www) {
    std::cerr << "error: the dashboard's page files are missing (looked in " << (exe.parent_path() / "share/gantry/dashboard")
              << " and " << (exe.parent_path() / "../share/gantry/dashboard") << "; reinstall the package)\n";
    return kExitError;
  }
  o.www = *www;
  // Pause, resume and abort: the same request gantryctl rollout writes to the rollout db.
  o.act = [db = std::filesystem::path(a.db)](const std::string& name, const std::string& action) -> ExpectedVoid {
    auto kind = action == "pause"    ? rollout::RolloutAction::kPause
                : action == "resume" ? rollout::RolloutAction::kResume
                                     : rollout::RolloutAction::kAbort;
    return rollout::RequestAction(db, name, kind);
  };
  o.mqtt.uri = a.broker;
  o.mqtt.client_id = "gantry-dashboard-" + std::to_string(getpid());
  o.mqtt.version = a.version;
  if (!a.ca_file.empty()) o.mqtt.ca_file = a.ca_file;
  if (!a.cert_file.empty()) o.mqtt.cert_file = a.cert_file;
  if (!a.key_file.empty()) o.mqtt.key_file = a.key_file;
  if (!a.username.empty()) o.mqtt.username = a.username;
  if (!a.password_file.empty()) o.mqtt.password = ReadSecret(a.password_file, "--password-file", 1);

  // Blocked before any thread starts, so every thread inherits the mask and sigwait gets them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  dashboard::Server server(o);
  auto port = server.Start();
  if (!port) {
    std::cerr << "error: " << port.error().message << "\n";
    return kExitError;
  }
  std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::string url = "http://" + host + ":" + std::to_string(*port) + "/";
  // With a token file the operator knows the token; a made-up one travels in the fragment,
  // which the browser never sends to a server.
  std::printf("dashboard: %s%s\n", url.c_str(), a.token_file.empty() ? ("#token=" + o.action_token).c_str() : "");
  std::fflush(stdout);
  log::Info("dashboard", "serving " + o.www.string() + " on " + url + ", broker " + a.broker);
  int sig = 0;
  sigwait(&signals, &sig);
  log::Info("dashboard", "stopping");
  server.Stop();
  return kExitOk;
}

void RegisterDashboardCommand(CLI::App& app) {
  auto* sub = app.add_subcommand("dashboard", "Serve the fleet dashboard: devices, rollouts and progress, live");
  sub->footer(
      "Example:\n  gantryctl dashboard --broker tcp://127.0.0.1:1883\n"
      "  gantryctl dashboard --broker ssl://mqtt:8883 --ca-file ca.pem --listen 0.0.0.0:8080 --token-file token\n"
      "Open the URL it prints. See docs/dashboard.md.");
  auto a = std::make_shared<DashboardArgs>();
  sub->add_option("--broker", a->broker, "broker URI (tcp://host:port, ssl://host:port)")->required();
  sub->add_option("--listen", a->listen, "HOST:PORT to serve on; anything but loopback needs --token-file")
      ->capture_default_str();
  sub->add_option("--token-file", a->token_file, "file holding the secret the page and its actions need");
  sub->add_option("--root", a->root, "topic root")->capture_default_str();
  sub->add_option("--db", a->db, "rollout database (as gantryctl rollout --db): where the buttons write")
      ->capture_default_str();
  sub->add_option("--mqtt-version", a->version, "5 or 4 (3.1.1)")->check(CLI::IsMember({4, 5}))->capture_default_str();
  sub->add_option("--ca-file", a->ca_file, "CA certificate for TLS");
  sub->add_option("--cert-file", a->cert_file, "client certificate for TLS");
  sub->add_option("--key-file", a->key_file, "client key for TLS");
  sub->add_option("--username", a->username, "MQTT username");
  sub->add_option("--password-file", a->password_file, "file holding the MQTT password");
  sub->callback([a] { throw Exit{Run(*a)}; });
}

CommandRegistration registration(RegisterDashboardCommand);

}  // namespace
}  // namespace gantry::cli
