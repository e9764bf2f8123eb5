// The LXC config the runtime-lxc plugin writes (pure text, no liblxc).
#include <gtest/gtest.h>

#include "lxc_config.hpp"

using gantry::lxc::ComposeConfig;
using gantry::lxc::OwnedKeys;

namespace {

OwnedKeys Owned(bool privileged = false) {
  OwnedKeys o{"app", "/d/containers/app-1/rootfs", "/d/containers/app-1/lxc.log", "INFO"};
  o.privileged = privileged;
  o.idmap = {0, 100000, 65536};
  o.cgroup_v1_devices = true;
  return o;
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(LxcComposeConfig, GantryWritesEveryLine) {
  auto out = ComposeConfig("lxc.init.cmd = \"/sbin/gantry-init\"\nlxc.cap.drop = \"net_raw\"\n", Owned());
  ASSERT_TRUE(out) << out.error().String();
  EXPECT_NE(out->find("lxc.init.cmd = \"/sbin/gantry-init\"\n"), std::string::npos) << *out;
  EXPECT_NE(out->find("lxc.rootfs.path = dir:/d/containers/app-1/rootfs\n"), std::string::npos);
  EXPECT_NE(out->find("lxc.uts.name = app\n"), std::string::npos);
  EXPECT_NE(out->find("lxc.log.file = /d/containers/app-1/lxc.log\n"), std::string::npos);
  EXPECT_NE(out->find("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n"), std::string::npos);
  EXPECT_NE(out->find("lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time\n"), std::string::npos);
  EXPECT_NE(out->find("lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp\n"), std::string::npos);
  EXPECT_NE(out->find("lxc.net.0.type = empty\n"), std::string::npos);
  // Device deny-all comes before anything of the revision's, and the standard devices after it.
  auto deny = out->find("lxc.cgroup.devices.deny = a\n");
  ASSERT_NE(deny, std::string::npos);
  EXPECT_LT(deny, out->find("lxc.init.cmd"));
  EXPECT_EQ(Count(*out, "lxc.cgroup.devices.allow = c "), 9);
  EXPECT_EQ(Count(*out, "lxc.cgroup2.devices"), 0);
  EXPECT_EQ(out->find("apparmor"), std::string::npos);  // not enabled in Owned()
}

TEST(LxcComposeConfig, PrivilegedHasNoIdmapAndAppArmorWhereEnabled) {
  auto o = Owned(true);
  o.apparmor = true;
  o.cgroup_v1_devices = false;
  auto out = ComposeConfig("", o);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->find("lxc.idmap"), std::string::npos);
  EXPECT_NE(out->find("lxc.apparmor.profile = generated\n"), std::string::npos);
  EXPECT_NE(out->find("lxc.cgroup2.devices.deny = a\n"), std::string::npos);
}

TEST(LxcComposeConfig, DefaultsOnlyWhereTheRevisionIsSilent) {
  auto own = ComposeConfig("lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.mount.auto = proc\n", Owned());
  ASSERT_TRUE(own);
  EXPECT_EQ(own->find("lxc.net.0.type = empty"), std::string::npos) << *own;
  EXPECT_EQ(Count(*own, "lxc.mount.auto"), 1) << *own;
}

TEST(LxcComposeConfig, RefusesWhatOnlyGantrySetsAndWhatDoesNotRead) {
  for (const std::string& bad : std::vector<std::string>{"lxc.rootfs.path = dir:/", "lxc.uts.name = x", "lxc.idmap = u 0 0 65536",
                          "lxc.include = /etc/x", "lxc.rootfs.options = idmap=none",
                          std::string("lxc.init.cmd = /x\n#\0\n", 20)}) {
    auto out = ComposeConfig(bad, Owned());
    EXPECT_FALSE(out) << bad;
  }
}
