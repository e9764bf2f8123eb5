#pragma once
// The fleet dashboard's web server (docs/dashboard.md): static page files, a server-sent
// event stream fed from an MQTT subscription (a snapshot, then batched changes), one device's
// details on demand, and the rollout actions. No HTTP library type crosses this header.
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "core/error.hpp"
#include "mqtt/client.hpp"

namespace gantry::dashboard {

// Pauses, resumes or aborts a rollout by name; action is "pause", "resume" or "abort".
using ActionHandler = std::function<ExpectedVoid(const std::string& rollout, const std::string& action)>;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (Start() returns it)
  std::string root = "gantry";
  // From --token-file: when set, every /api request needs it (the page asks for it once).
  std::optional<std::string> view_token;
  // Rollout actions always need a token: the file's, else one made at start.
  std::string action_token;
  std::filesystem::path www;
  mqtt::Options mqtt;  // uri, client id, TLS, credentials; subscriptions are set by the server
  ActionHandler act;   // empty: the action endpoints answer 501
  std::chrono::milliseconds batch_interval{200};
};

// "HOST:PORT" or "[IPV6]:PORT"; HOST is an IP address or "localhost".
Expected<std::pair<std::string, int>> ParseListen(const std::string& text);
// 127.0.0.0/8 and ::1.
bool IsLoopback(const std::string& host);
// The page files: <exe dir>/share/gantry/dashboard (build tree) or
// <exe dir>/../share/gantry/dashboard (installed); nullopt when neither has index.html.
std::optional<std::filesystem::path> FindWww(const std::filesystem::path& exe);
// 32 random bytes as hex.
Expected<std::string> RandomToken();

class Server {
 public:
  explicit Server(Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, connects to the broker in the background and starts serving; returns the port.
  Expected<int> Start();
  // Stops serving and disconnects; idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gantry::dashboard
