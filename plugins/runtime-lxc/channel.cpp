#include "channel.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace gantry::lxc {

namespace {

using Clock = std::chrono::steady_clock;

ExpectedVoid WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Fail("helper", std::string("cannot write to the runtime helper: ") + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

ExpectedVoid ReadAll(int fd, char* p, size_t n, Clock::time_point deadline, bool forever,
                     bool at_start) {
  while (n > 0) {
    int wait_ms = -1;
    if (!forever) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return Fail("timeout", "the runtime helper did not answer in time");
      wait_ms = static_cast<int>(left.count());
    }
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Fail("helper", std::string("poll: ") + std::strerror(errno));
    }
    if (r == 0) continue;  // the deadline check above ends the loop
    ssize_t got = ::read(fd, p, n);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Fail("helper", std::string("cannot read from the runtime helper: ") + std::strerror(errno));
    }
    if (got == 0)
      return at_start ? Fail("eof", "the peer closed the connection")
                      : Fail("helper", "the connection closed in the middle of a message");
    p += got;
    n -= static_cast<size_t>(got);
    at_start = false;
  }
  return {};
}

}  // namespace

ExpectedVoid WriteFrame(int fd, const std::string& text) {
  if (text.size() > kMaxFrame) return Fail("too_large", "message exceeds 16 MiB");
  auto n = static_cast<uint32_t>(text.size());
  char header[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                    static_cast<char>(n >> 8), static_cast<char>(n)};
  if (auto r = WriteAll(fd, header, 4); !r) return r;
  return WriteAll(fd, text.data(), text.size());
}

Expected<std::string> ReadFrame(int fd, int timeout_ms) {
  bool forever = timeout_ms < 0;
  auto deadline = Clock::now() + std::chrono::milliseconds(forever ? 0 : timeout_ms);
  unsigned char header[4];
  if (auto r = ReadAll(fd, reinterpret_cast<char*>(header), 4, deadline, forever, true); !r)
    return Unexpected(r.error());
  uint32_t n = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) |
               (uint32_t{header[2]} << 8) | uint32_t{header[3]};
  if (n > kMaxFrame) return Fail("helper", "message of " + std::to_string(n) + " bytes exceeds 16 MiB");
  std::string text(n, '\0');
  if (auto r = ReadAll(fd, text.data(), n, deadline, forever, false); !r) return Unexpected(r.error());
  return text;
}

}  // namespace gantry::lxc
