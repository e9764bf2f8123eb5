#pragma once
// tests/tools/block_server.py for C++ tests: a real HTTP/1.1 server on a free loopback port
// serving a temp dir, with Range support and fault injection (see the .py for the interface).
//
//   test::BlockServer server;                         // started and listening
//   server.Put("objects/" + id, bytes);
//   server.Control("/_fault?path=/objects/" + id + "&cut_after=1000");
//   server.BytesServed("/objects/" + id);             // from /_stats
//   test::BlockServer tls(cert_pem, key_pem);         // HTTPS; url() says https://
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace gantry::test {

class BlockServer {
 public:
  BlockServer() { Start(); }
  BlockServer(std::string cert_pem, std::string key_pem)
      : cert_(std::move(cert_pem)), key_(std::move(key_pem)) {
    Start();
  }
  ~BlockServer() { process_.Stop(); }
  BlockServer(const BlockServer&) = delete;
  BlockServer& operator=(const BlockServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path = "/") const {
    return (cert_.empty() ? "http" : "https") + std::string("://127.0.0.1:") +
           std::to_string(port_) + path;
  }
  std::filesystem::path root() const { return dir_.path() / "root"; }
  void Put(const std::string& rel, const std::string& data) const { Spit(root() / rel, data); }

  // GET on a control endpoint ("/_stats", "/_reset", "/_fault?..."); returns the body.
  // Throws when the server does not answer 200. Plain HTTP servers only.
  std::string Control(const std::string& target) const {
    if (!cert_.empty()) throw std::runtime_error("block server: Control() needs plain HTTP");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd);
      throw std::runtime_error("block server: cannot connect to port " + std::to_string(port_));
    }
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string resp;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<size_t>(n));
    close(fd);
    if (resp.rfind("HTTP/1.1 200", 0) != 0)
      throw std::runtime_error("block server: " + target + " answered: " + resp.substr(0, 200));
    auto body = resp.find("\r\n\r\n");
    return body == std::string::npos ? "" : resp.substr(body + 4);
  }

  // Body bytes sent for a path, or all paths for "" (from /_stats "paths" / "total").
  std::uint64_t BytesServed(const std::string& path = "") const {
    return StatsField("paths", path);
  }
  std::uint64_t Requests(const std::string& path) const { return StatsField("requests", path); }
  std::uint64_t RangeRequests(const std::string& path) const {
    return StatsField("range_requests", path);
  }

 private:
  // A tiny reader for the flat JSON that /_stats returns (sorted keys, no nesting beyond one
  // level), so tests need no JSON library.
  std::uint64_t StatsField(const std::string& object, const std::string& path) const {
    std::string s = Control("/_stats");
    if (path.empty()) {
      auto p = s.find("\"total\": ");
      return p == std::string::npos ? 0 : std::stoull(s.substr(p + 9));
    }
    auto o = s.find("\"" + object + "\": {");
    if (o == std::string::npos) return 0;
    auto end = s.find('}', o);
    auto key = "\"" + path + "\": ";
    auto p = s.find(key, o);
    if (p == std::string::npos || p > end) return 0;
    return std::stoull(s.substr(p + key.size()));
  }

  // Next to this header; GANTRY_SOURCE_DIR is preferred when the environment has it.
  static std::filesystem::path Script() {
    if (const char* d = std::getenv("GANTRY_SOURCE_DIR")) return std::string(d) + "/tests/tools/block_server.py";
    return std::filesystem::path(__FILE__).parent_path() / "block_server.py";
  }

  void Start() {
    std::filesystem::create_directories(root());
    auto port_file = dir_.path() / "port";
    std::vector<std::string> argv = {"/usr/bin/python3", Script().string(), "--root",
                                     root().string(), "--port", "0", "--port-file",
                                     port_file.string()};
    if (!cert_.empty()) argv.insert(argv.end(), {"--cert", cert_, "--key", key_});
    process_.Start(argv, (dir_.path() / "server.log").string());
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < end) {
      if (std::filesystem::exists(port_file)) {
        port_ = std::stoi(Slurp(port_file));
        if (WaitPort(port_)) return;
      }
      if (!process_.Running())
        throw std::runtime_error("block_server.py exited on start; log:\n" +
                                 Slurp(dir_.path() / "server.log"));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("block_server.py did not start within 10 s");
  }

  std::string cert_, key_;
  TempDir dir_;
  int port_ = 0;
  Process process_;
};

}  // namespace gantry::test
