// systemd integration: gantryd tells a NOTIFY_SOCKET READY=1 once its loop runs, and feeds the
// watchdog from that loop (WATCHDOG=1 at half of WATCHDOG_USEC).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/un.h>

#include "agent_fixture.hpp"

using namespace gantry::test;

TEST(AgentNotify, ReadyAndWatchdogOnTheNotifySocket) {
  TempDir sock_dir;
  auto path = (sock_dir.path() / "notify").string();
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << strerror(errno);

  AgentFixture a(5);
  // The child inherits these, as from systemd with Type=notify and WatchdogSec=1.
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "1000000", 1);
  a.StartAgent();
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");

  std::vector<std::string> got;
  int watchdogs = 0;
  bool ready = false;
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < end && !(ready && watchdogs >= 3)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) continue;
    std::string msg(buf, static_cast<size_t>(n));
    got.push_back(msg);
    if (msg.find("READY=1") != std::string::npos) ready = true;
    if (msg.find("WATCHDOG=1") != std::string::npos) ++watchdogs;
  }
  close(fd);
  std::string all;
  for (auto& m : got) all += "[" + m + "] ";
  EXPECT_TRUE(ready) << all << a.AgentLog();
  EXPECT_GE(watchdogs, 3) << "the loop must keep feeding the watchdog: " << all;
}
