// gantryctl publish / cmd / status: the operator's side of docs/protocol.md.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "core/fs.hpp"
#include "core/time.hpp"
#include "mqtt/client.hpp"

namespace gantry::cli {
namespace {

struct Conn {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string device;
  std::string root = "gantry";
  int version = 5;
  std::string ca_file, cert_file, key_file, username, password_file;
  int timeout_s = 600;

  std::string Prefix() const { return root + "/" + device; }
};

void AddConnOptions(CLI::App* sub, Conn& c) {
  sub->add_option("--broker", c.broker, "broker URI (tcp://host:port, ssl://host:port)")->capture_default_str();
  sub->add_option("--device", c.device, "device id")->required();
  sub->add_option("--root", c.root, "topic root")->capture_default_str();
  sub->add_option("--mqtt-version", c.version, "5 or 4 (3.1.1)")->check(CLI::IsMember({4, 5}))->capture_default_str();
  sub->add_option("--ca-file", c.ca_file, "CA certificate for TLS");
  sub->add_option("--cert-file", c.cert_file, "client certificate for TLS");
  sub->add_option("--key-file", c.key_file, "client key for TLS");
  sub->add_option("--username", c.username, "MQTT username");
  sub->add_option("--password-file", c.password_file, "file holding the MQTT password");
  sub->add_option("--timeout", c.timeout_s, "seconds to wait before giving up")->capture_default_str();
}

// A blocking session for a command line tool: everything arrives on one queue.
class Session {
 public:
  Session(const Conn& c, std::vector<std::string> subscriptions) {
    mqtt::Options o;
    o.uri = c.broker;
    o.client_id = "gantryctl-" + std::to_string(getpid());
    o.version = c.version;
    o.clean_session = true;
    o.subscriptions = std::move(subscriptions);
    if (!c.ca_file.empty()) o.ca_file = c.ca_file;
    if (!c.cert_file.empty()) o.cert_file = c.cert_file;
    if (!c.key_file.empty()) o.key_file = c.key_file;
    if (!c.username.empty()) o.username = c.username;
    if (!c.password_file.empty()) {
      auto p = fs::ReadFile(c.password_file, 4096);
      if (p) {
        while (!p->empty() && (p->back() == '\n')) p->pop_back();
        o.password = *p;
      }
    }
    client_ = mqtt::MakePahoClient(o);
    client_->Start({[this] { Push({"", "", 0, false, "ready", ""}); }, [](const std::string&) {},
                    [this](mqtt::Message m) { Push(std::move(m)); }});
  }
  ~Session() { client_->Stop(); }

  std::optional<mqtt::Message> Next(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_until(lock, deadline, [this] { return !queue_.empty(); })) return std::nullopt;
    auto m = std::move(queue_.front());
    queue_.pop_front();
    return m;
  }
  bool WaitReady(std::chrono::steady_clock::time_point deadline) {
    while (auto m = Next(deadline))
      if (m->topic.empty() && m->response_topic == "ready") return true;
    return false;
  }
  void Publish(const mqtt::Message& m) {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false, ok = false;
    client_->Publish(m, [&](bool acked) {
      std::lock_guard l(mu);
      done = true;
      ok = acked;
      cv.notify_all();
    });
    std::unique_lock l(mu);
    cv.wait_for(l, std::chrono::seconds(30), [&] { return done; });
    if (!ok) {
      std::cerr << "error: the broker did not acknowledge the command\n";
      throw Exit{kExitError};
    }
  }

 private:
  void Push(mqtt::Message m) {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(m));
    cv_.notify_all();
  }
  std::unique_ptr<mqtt::Client> client_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<mqtt::Message> queue_;
};

bool IsFinal(const std::string& s) {
  return s == "DONE" || s == "ERROR" || s == "WONTGO" || s == "CANCELLED";
}

std::string HumanBytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (b >= 1024 && u < 3) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", b, units[u]);
  return buf;
}

// Prints one progress event: a live bar on a terminal, plain lines otherwise.
class Watcher {
 public:
  Watcher() : tty_(isatty(STDOUT_FILENO)), start_(std::chrono::steady_clock::now()) {}
  void Show(const nlohmann::json& e) {
    std::string status = e.value("status", "?");
    std::string msg = e.value("msg", "");
    if (status == "DOWNLOADING" && e.contains("downloads") && e["downloads"].is_object()) {
      double done = e["downloads"].value("done_bytes", 0.0), total = e["downloads"].value("total_bytes", 0.0);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      double rate = secs > 0 ? done / secs : 0;
      double eta = rate > 0 ? (total - done) / rate : 0;
      int pct = e.value("progress", 0);
      if (tty_) {
        int filled = pct * 30 / 100;
        std::printf("\r[%s%s] %3d%% %s / %s  %s/s  ETA %.0fs   ", std::string(filled, '#').c_str(),
                    std::string(30 - filled, '.').c_str(), pct, HumanBytes(done).c_str(),
                    HumanBytes(total).c_str(), HumanBytes(rate).c_str(), eta);
        std::fflush(stdout);
        in_bar_ = true;
        return;
      }
      if (pct == last_pct_) return;
      last_pct_ = pct;
      std::printf("%s DOWNLOADING %d%% %s/%s\n", e.value("rev", "").c_str(), pct,
                  HumanBytes(done).c_str(), HumanBytes(total).c_str());
      std::fflush(stdout);
      return;
    }
    if (in_bar_) std::printf("\n");
    in_bar_ = false;
    std::string rev = e["rev"].is_string() ? e["rev"].get<std::string>() : "-";
    std::printf("%s %-11s %3d%% %s\n", rev.c_str(), status.c_str(), e.value("progress", 0), msg.c_str());
    std::fflush(stdout);
  }

 private:
  bool tty_;
  bool in_bar_ = false;
  int last_pct_ = -1;
  std::chrono::steady_clock::time_point start_;
};

// Sends a command; waits for its reply; with watch, follows its progress to a final status.
// Exit code: 0 ok (DONE), 1 refused or ended WONTGO/ERROR/CANCELLED, 3 no answer.
int Send(const Conn& c, nlohmann::json cmd, bool watch) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(c.timeout_s);
  Session s(c, {c.Prefix() + "/reply", c.Prefix() + "/progress"});
  if (!s.WaitReady(std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(30)))) {
    std::cerr << "error: cannot connect to " << c.broker << " (is the broker running? check --broker)\n";
    return kExitError;
  }
  std::string id = cmd["id"];
  s.Publish({c.Prefix() + "/cmd", cmd.dump(), 1, false, "", ""});
  bool replied = false;
  Watcher w;
  while (auto m = s.Next(deadline)) {
    auto j = nlohmann::json::parse(m->payload, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.value("id", nlohmann::json()) != id) continue;
    if (m->topic == c.Prefix() + "/reply") {
      replied = true;
      if (!j.value("ok", false)) {
        auto err = j.value("error", nlohmann::json::object());
        std::printf("refused: %s: %s\n", err.value("code", "").c_str(), err.value("message", "").c_str());
        return kExitCheckFailed;
      }
      std::printf("accepted: %s\n", id.c_str());
      std::fflush(stdout);
      if (!watch) return kExitOk;
      continue;
    }
    w.Show(j);
    std::string status = j.value("status", "");
    if (IsFinal(status) && replied) return status == "DONE" ? kExitOk : kExitCheckFailed;
  }
  std::cerr << "error: no " << (replied ? "final status" : "reply") << " within " << c.timeout_s << " s\n";
  return kExitError;
}

std::string NewId() {
  return "ctl-" + std::to_string(getpid()) + "-" + std::to_string(NowUnix());
}

void RegisterMqttCommands(CLI::App& app) {
  {
    auto* sub = app.add_subcommand("publish", "Send a signed revision to a device as an update command");
    sub->footer(
        "Example:\n  gantryctl publish --device gw-0001 --broker tcp://127.0.0.1:1883 \\\n"
        "      --envelope rev42.jws.json --objects-base http://10.0.0.5/objects/ --watch");
    auto c = std::make_shared<Conn>();
    auto envelope = std::make_shared<std::string>();
    auto base = std::make_shared<std::string>();
    auto id = std::make_shared<std::string>();
    auto watch = std::make_shared<bool>(false);
    AddConnOptions(sub, *c);
    sub->add_option("--envelope", *envelope, "signed envelope (gantryctl sign)")->required()->check(CLI::ExistingFile);
    sub->add_option("--objects-base", *base, "where the device fetches blocks (http, https, file URL)");
    sub->add_option("--id", *id, "command id (default: generated); re-send the same id to retry safely");
    sub->add_flag("--watch", *watch, "follow progress until a final status");
    sub->callback([=] {
      auto text = fs::ReadFile(*envelope, 1u << 20);
      if (!text) {
        std::cerr << "error: " << text.error().message << "\n";
        throw Exit{kExitUsage};
      }
      auto env = nlohmann::json::parse(*text, nullptr, false);
      if (env.is_discarded() || !env.is_object()) {
        std::cerr << "error: " << *envelope << " is not a JSON envelope (make one with gantryctl sign)\n";
        throw Exit{kExitUsage};
      }
      nlohmann::json cmd = {{"id", id->empty() ? NewId() : *id}, {"op", "update"}, {"revision", env}};
      if (!base->empty()) cmd["objects_base"] = *base;
      throw Exit{Send(*c, cmd, *watch)};
    });
  }
  {
    auto* sub = app.add_subcommand("cmd", "Send rollback, cancel, gc or get-state to a device");
    sub->footer("Example:\n  gantryctl cmd rollback --device gw-0001 --watch");
    auto c = std::make_shared<Conn>();
    auto op = std::make_shared<std::string>();
    auto id = std::make_shared<std::string>();
    auto watch = std::make_shared<bool>(false);
    sub->add_option("op", *op, "rollback | cancel | gc | get-state")
        ->required()
        ->check(CLI::IsMember({"rollback", "cancel", "gc", "get-state"}));
    AddConnOptions(sub, *c);
    sub->add_option("--id", *id, "command id (default: generated)");
    sub->add_flag("--watch", *watch, "for rollback: follow progress until a final status");
    sub->callback([=] {
      nlohmann::json cmd = {{"id", id->empty() ? NewId() : *id}, {"op", *op}};
      throw Exit{Send(*c, cmd, *watch && *op == "rollback")};
    });
  }
  {
    auto* sub = app.add_subcommand("status", "Show a device's retained state (containers, sensors, cache)");
    sub->footer("Example:\n  gantryctl status --device gw-0001\n  gantryctl status --device gw-0001 --json | jq .containers");
    auto c = std::make_shared<Conn>();
    auto json = std::make_shared<bool>(false);
    AddConnOptions(sub, *c);
    sub->add_flag("--json", *json, "print the state as JSON");
    sub->callback([=] {
      Conn cc = *c;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::min(cc.timeout_s, 10));
      Session s(cc, {cc.Prefix() + "/state", cc.Prefix() + "/online"});
      nlohmann::json state, online;
      while (auto m = s.Next(deadline)) {
        if (m->topic == cc.Prefix() + "/state") state = nlohmann::json::parse(m->payload, nullptr, false);
        if (m->topic == cc.Prefix() + "/online") online = nlohmann::json::parse(m->payload, nullptr, false);
        if (!state.is_null() && !online.is_null()) break;
      }
      if (!state.is_object()) {
        std::cerr << "error: no retained state for " << cc.device << " on " << cc.broker
                  << " (has the device ever connected? check --device and --root)\n";
        throw Exit{kExitError};
      }
      if (*json) {
        std::printf("%s\n", state.dump(2).c_str());
        throw Exit{kExitOk};
      }
      auto str = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.is_null() ? "-" : v.dump(); };
      std::printf("device   %s (%s)\n", cc.device.c_str(),
                  online.is_object() && online.value("online", false) ? "online" : "offline");
      std::printf("revision %s  seq %s  status %s  at %s\n", str(state["rev"]).c_str(), str(state["seq"]).c_str(),
                  str(state["status"]).c_str(), str(state["ts"]).c_str());
      std::printf("\n%-20s %-10s %-9s %-12s %s\n", "CONTAINER", "GROUP", "STATE", "REV", "RESTARTS");
      for (auto& ct : state.value("containers", nlohmann::json::array()))
        std::printf("%-20s %-10s %-9s %-12s %s\n", str(ct["name"]).c_str(), str(ct["group"]).c_str(),
                    str(ct["state"]).c_str(), str(ct["rev"]).c_str(), str(ct["restarts"]).c_str());
      auto sensors = state.value("sensors", nlohmann::json::array());
      if (!sensors.empty()) {
        std::printf("\n%-16s %-12s %-10s %-5s %s\n", "SENSOR", "MODEL", "VERSION", "SEQ", "JOB");
        // The latest job in a line: state, share of the image the sensor has, and why.
        auto job_line = [](const nlohmann::json& j) -> std::string {
          if (!j.is_object()) return "-";
          auto size = j.value("size", 0.0), offset = j.value("offset", 0.0);
          int pct = size > 0 ? static_cast<int>(100 * offset / size) : 0;
          std::string line = j.value("state", "?") + " " + std::to_string(pct) + "%";
          if (!j.value("reason", "").empty()) line += " " + j.value("reason", "");
          return line;
        };
        for (auto& s : sensors)
          std::printf("%-16s %-12s %-10s %-5s %s\n", str(s["id"]).c_str(), str(s["model"]).c_str(),
                      str(s["version"]).c_str(), str(s["seq"]).c_str(),
                      job_line(s.value("job", nlohmann::json())).c_str());
      }
      auto cache = state.value("cache", nlohmann::json::object());
      std::printf("\ncache    %s in %s blocks, quota %s\n", HumanBytes(cache.value("bytes", 0.0)).c_str(),
                  str(cache.value("blocks", nlohmann::json(0))).c_str(),
                  cache.value("quota_bytes", 0) == 0 ? "none" : HumanBytes(cache.value("quota_bytes", 0.0)).c_str());
      throw Exit{kExitOk};
    });
  }
}

CommandRegistration registration(RegisterMqttCommands);

}  // namespace
}  // namespace gantry::cli
