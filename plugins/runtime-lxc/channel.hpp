#pragma once
// Length-prefixed JSON frames over a stream socket (4-byte big-endian length, then the text)
// between the plugin in gantryd and its liblxc helper process.
#include <string>

#include "core/error.hpp"

namespace gantry::lxc {

constexpr unsigned kMaxFrame = 16u << 20;

ExpectedVoid WriteFrame(int fd, const std::string& text);
// timeout_ms < 0 waits forever. Error "eof" when the peer closed the socket cleanly,
// "timeout" when nothing complete arrived in time.
Expected<std::string> ReadFrame(int fd, int timeout_ms);

}  // namespace gantry::lxc
