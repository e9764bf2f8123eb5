#pragma once
// Every Paho user of ours (the agent, gantryctl, the relay plugin, the sensor simulator).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace gantry {

// Paho C 1.3 leaves Nagle's algorithm on and offers no hook to the socket: each frame after the
// first of a window then waits for the broker's delayed ACK (~40 ms). Switch it off on every TCP
// socket of this process that talks to one of the brokers' ports (a cluster's nodes).
inline void DisableNagle(const std::vector<int>& broker_ports) {
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = std::atoi(entry.path().filename().c_str());
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
    int port = peer.ss_family == AF_INET
                   ? ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port)
                   : peer.ss_family == AF_INET6
                         ? ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port)
                         : -1;
    if (std::find(broker_ports.begin(), broker_ports.end(), port) == broker_ports.end()) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

inline void DisableNagle(int broker_port) { DisableNagle(std::vector<int>{broker_port}); }

// The port of tcp://host:port, ssl://[v6]:port ...; the scheme's default when absent.
inline int BrokerPort(const std::string& uri) {
  auto colon = uri.rfind(':');
  auto bracket = uri.rfind(']');
  if (colon != std::string::npos && colon > uri.find("://") + 2 &&
      (bracket == std::string::npos || colon > bracket)) {
    try {
      return std::stoi(uri.substr(colon + 1));
    } catch (const std::exception&) {
      return -1;
    }
  }
  bool tls = uri.rfind("ssl://", 0) == 0 || uri.rfind("mqtts://", 0) == 0;
  return tls ? 8883 : 1883;
}

}  // namespace gantry
