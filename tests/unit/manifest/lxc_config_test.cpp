#include "manifest/lxc_config.hpp"

#include <gtest/gtest.h>

using gantry::manifest::CheckLxcConfig;
using gantry::manifest::WithoutOwnedKeys;

TEST(LxcConfig, OrdinaryConfigsPass) {
  const char* config = R"(# a typical container
lxc.uts.name = web
lxc.mount.auto = proc:mixed sys:ro cgroup:mixed
lxc.init.cmd = /sbin/init
  lxc.net.0.type = veth
lxc.net.1.type=empty
lxc.apparmor.profile = generated
lxc.mount.entry = tmpfs tmp tmpfs defaults,create=dir 0 0
lxc.mount.entry = proc proc proc nodev,noexec,nosuid 0 0
lxc.cap.drop = sys_module mac_admin
lxc.environment = PATH=/usr/bin:/bin

lxc.tty.max = 4
)";
  auto r = CheckLxcConfig(config, {});
  EXPECT_TRUE(r) << r.error().String();
  EXPECT_TRUE(CheckLxcConfig("", {}));
}

TEST(LxcConfig, HostEscapingKeysAreRefusedUnlessAllowed) {
  struct Case {
    std::string line;
    std::vector<std::string> allow;  // an allow list that permits it
  };
  std::vector<Case> cases = {
      {"lxc.rootfs.path = dir:/", {"lxc.rootfs.*"}},
      {"lxc.rootfs.mount = /mnt", {"lxc.rootfs.*"}},
      {"lxc.rootfs = /", {"lxc.rootfs.*"}},
      {"lxc.hook.pre-start = /bin/sh -c 'rm -rf /'", {"lxc.hook.*"}},
      {"lxc.hook.mount = /x", {"lxc.hook.mount"}},
      {"lxc.include = /usr/share/lxc/config/common.conf", {"lxc.include"}},
      {"lxc.mount.entry = /dev/dri dev/dri none bind,optional,create=dir", {"lxc.mount.entry"}},
      {"lxc.mount.entry = etc etc none rbind 0 0", {"lxc.mount.entry"}},
      {"lxc.cap.keep = sys_admin", {"lxc.cap.keep"}},
      {"lxc.apparmor.profile = unconfined", {"lxc.apparmor.profile"}},
      {"lxc.seccomp.profile = ", {"lxc.seccomp.*"}},
      {"lxc.cgroup.devices.allow = a", {"lxc.cgroup.devices.allow"}},
      {"lxc.cgroup2.devices.allow = c 1:3 rwm", {"lxc.cgroup2.devices.allow"}},
      {"lxc.namespace.keep = net ipc", {"lxc.namespace.*"}},
      {"lxc.namespace.share.net = 1", {"lxc.namespace.*"}},
      {"lxc.net.0.type = none", {"lxc.net.*"}},
      {"lxc.net.3.type = phys", {"lxc.net.0.type", "lxc.net.*"}},
  };
  for (const auto& c : cases) {
    std::string config = "lxc.uts.name = a\n" + c.line + "\n";
    auto refused = CheckLxcConfig(config, {"lxc.mount.auto", "lxc.other.*"});
    ASSERT_FALSE(refused) << c.line;
    EXPECT_EQ(refused.error().code, "lxc_key") << c.line;
    EXPECT_NE(refused.error().message.find("line 2"), std::string::npos) << refused.error().message;
    auto allowed = CheckLxcConfig(config, c.allow);
    EXPECT_TRUE(allowed) << c.line << ": " << allowed.error().String();
  }
}

TEST(LxcConfig, AllowEntriesAreExactOrPrefix) {
  EXPECT_FALSE(CheckLxcConfig("lxc.hook.start = /x", {"lxc.hook"}));
  EXPECT_FALSE(CheckLxcConfig("lxc.hook.start = /x", {"lxc.hook.stop"}));
  EXPECT_FALSE(CheckLxcConfig("lxc.cap.keep = x", {"lxc.cap"}));
  EXPECT_TRUE(CheckLxcConfig("lxc.rootfs = /", {"lxc.rootfs.*"}));
  EXPECT_TRUE(CheckLxcConfig("lxc.hook.start = /x", {"lxc.*"}));
}

TEST(LxcConfig, LinesThatAreNotKeyValueAreRefused) {
  auto r = CheckLxcConfig("lxc.uts.name = a\nthis is not a key\n", {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "bad_lxc_config");
  EXPECT_NE(r.error().message.find("line 2"), std::string::npos);
}

TEST(LxcConfig, OwnedKeysOfPvrConfigsAreDroppedNotRefused) {
  std::string pvr =
      "lxc.uts.name = web\nlxc.rootfs.path = overlayfs:/volumes/web/root.squashfs:/storage/web\n"
      "lxc.log.file = /storage/logs/web.log\nlxc.init.cmd = /sbin/init\nlxc.rootfs.options = ro\n";
  EXPECT_FALSE(CheckLxcConfig(pvr, {}));
  auto kept = WithoutOwnedKeys(pvr);
  EXPECT_EQ(kept, "lxc.init.cmd = /sbin/init\nlxc.rootfs.options = ro\n");
  // What Gantry does not own is still checked: lxc.rootfs.options stays refused.
  auto r = CheckLxcConfig(kept, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "lxc_key");
  EXPECT_TRUE(CheckLxcConfig(WithoutOwnedKeys("lxc.uts.name = a\nlxc.rootfs.path = dir:/x\nlxc.init.cmd = /x\n"), {}));
}
