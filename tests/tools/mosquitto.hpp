#pragma once
// A real mosquitto broker for tests: its own temp dir, a free loopback port, persistence on
// (retained messages and persistent sessions survive Stop()/Start()), stopped by pid.
//
//   test::Mosquitto broker;                      // started and listening
//   client.connect(broker.uri());                // tcp://127.0.0.1:PORT
//   broker.Stop(); broker.Start();               // same port, same persistence file
//
// Extra config lines (e.g. TLS: "cafile ...\ncertfile ...\nkeyfile ...\nrequire_certificate
// true") are appended after the listener line, so listener options apply to it; pass the
// matching scheme to uri("ssl").
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "test_util.hpp"

namespace gantry::test {

class Mosquitto {
 public:
  explicit Mosquitto(std::string extra_config = "")
      : port_(FreePort()), extra_config_(std::move(extra_config)) {
    WriteConfig();
    Start();
  }
  ~Mosquitto() { Stop(); }
  Mosquitto(const Mosquitto&) = delete;
  Mosquitto& operator=(const Mosquitto&) = delete;

  int port() const { return port_; }
  std::string uri(const std::string& scheme = "tcp") const {
    return scheme + "://127.0.0.1:" + std::to_string(port_);
  }
  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path conf_path() const { return dir_.path() / "mosquitto.conf"; }
  // The broker's log so far (every start appends), for failure messages.
  std::string log() const { return Slurp(dir_.path() / "mosquitto.log"); }
  bool running() { return process_.Running(); }

  // Starts the broker on the same port as before and waits until it accepts connections.
  // Throws (so the test fails loudly) when mosquitto is missing or does not come up.
  void Start() {
    if (process_.Running()) return;
    process_.Start({"mosquitto", "-c", conf_path().string()},
                   (dir_.path() / "mosquitto.log").string());
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < end) {
      if (!process_.Running()) {
        throw std::runtime_error("mosquitto exited on start (is it installed?); log:\n" + log());
      }
      if (PortOpen(port_)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("mosquitto did not listen on port " + std::to_string(port_) +
                             " within 10 s; log:\n" + log());
  }

  // SIGTERM (mosquitto writes its persistence file on the way out), SIGKILL after 5 s.
  void Stop() { process_.Stop(); }
  // A crash: nothing is saved beyond the last autosave.
  void Kill() { process_.Kill(SIGKILL); }

 private:
  void WriteConfig() {
    // "user root": as root, mosquitto otherwise drops to user mosquitto, which cannot write
    // the persistence file into our 0700 temp dir.
    std::string conf = "per_listener_settings false\n"
                       "allow_anonymous true\n"
                       "user root\n"
                       "persistence true\n"
                       "persistence_location " + (dir_.path() / "").string() + "\n"
                       "persistence_file mosquitto.db\n"
                       "autosave_interval 1\n"
                       "max_queued_messages 100000\n"
                       "set_tcp_nodelay true\n"
                       "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                       "log_dest stdout\n"
                       "listener " + std::to_string(port_) + " 127.0.0.1\n" +
                       extra_config_ + "\n";
    Spit(conf_path(), conf);
  }

  TempDir dir_;
  int port_;
  std::string extra_config_;
  Process process_;
};

}  // namespace gantry::test
