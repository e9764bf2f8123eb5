// The LXC config composition of the runtime-lxc plugin (pure text, no liblxc).
#include <gtest/gtest.h>

#include "lxc_config.hpp"

using gantry::lxc::ComposeConfig;
using gantry::lxc::OwnedKeys;

namespace {

const OwnedKeys kOwned{"app", "/d/containers/app-1/rootfs", "/d/containers/app-1/lxc.log", "INFO"};

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(LxcConfig, OwnedKeysAreReplaced) {
  auto out = ComposeConfig(
      "lxc.init.cmd = /sbin/gantry-init\nlxc.rootfs.path = dir:/host\n lxc.uts.name=evil\n"
      "lxc.log.file = /etc/passwd\n",
      kOwned);
  EXPECT_EQ(Count(out, "\nlxc.rootfs.path = "), 1) << out;
  EXPECT_NE(out.find("lxc.rootfs.path = dir:/d/containers/app-1/rootfs\n"), std::string::npos);
  EXPECT_NE(out.find("lxc.uts.name = app\n"), std::string::npos);
  EXPECT_NE(out.find("lxc.log.file = /d/containers/app-1/lxc.log\n"), std::string::npos);
  EXPECT_NE(out.find("lxc.log.level = INFO\n"), std::string::npos);
  EXPECT_NE(out.find("# overridden by gantry: lxc.rootfs.path = dir:/host\n"), std::string::npos);
  EXPECT_EQ(out.find("\nlxc.log.file = /etc/passwd"), std::string::npos);
  EXPECT_NE(out.find("lxc.init.cmd = /sbin/gantry-init\n"), std::string::npos);
}

TEST(LxcConfig, DefaultsOnlyWhereTheRevisionIsSilent) {
  auto bare = ComposeConfig("", kOwned);
  EXPECT_NE(bare.find("lxc.net.0.type = empty\n"), std::string::npos);
  EXPECT_NE(bare.find("lxc.mount.auto = proc:mixed sys:ro cgroup:mixed\n"), std::string::npos);
  EXPECT_NE(bare.find("lxc.autodev = 1\n"), std::string::npos);
  EXPECT_NE(bare.find("lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time\n"), std::string::npos);
  EXPECT_EQ(Count(ComposeConfig("lxc.cap.drop = sys_admin\n", kOwned), "lxc.cap.drop"), 1);

  auto own = ComposeConfig("lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.mount.auto = proc\n",
                           kOwned);
  EXPECT_EQ(own.find("lxc.net.0.type = empty"), std::string::npos) << own;
  EXPECT_EQ(Count(own, "lxc.mount.auto"), 1) << own;
  EXPECT_NE(own.find("lxc.net.0.type = veth\n"), std::string::npos);
}

TEST(LxcConfig, CommentsAndBlankLinesSurvive) {
  auto out = ComposeConfig("# a comment mentioning lxc.rootfs.path = x\n\nlxc.tty.max = 4\n", kOwned);
  EXPECT_NE(out.find("# a comment mentioning lxc.rootfs.path = x\n"), std::string::npos);
  EXPECT_EQ(Count(out, "lxc.tty.max"), 1) << out;
}
