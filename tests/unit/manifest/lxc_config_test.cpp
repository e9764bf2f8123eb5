// The LXC config reader (parses as liblxc does, refuses what liblxc could read differently)
// and the allow-list with its value rules.
#include "manifest/lxc_config.hpp"

#include <gtest/gtest.h>

using gantry::manifest::CheckLxcConfig;
using gantry::manifest::LxcPair;
using gantry::manifest::ReadLxcConfig;
using gantry::manifest::WithoutOwnedKeys;
using gantry::manifest::WriteLxcConfig;

namespace {
using Pairs = std::vector<LxcPair>;
}

TEST(LxcConfigReader, ReadsAsLiblxcDoes) {
  auto r = ReadLxcConfig(
      "# comment\n  \t# indented comment\n\nlxc.a = 1\n\tlxc.b=two words \t\n"
      "lxc.c = \"quoted\"\nlxc.d = 'single'\nlxc.e = \"\"x\"\"\nlxc.f = \"unbalanced\n"
      "lxc.g = \"  blanks kept  \"\nlxc.h =\nlxc.i = a = b\nlxc.j = \"\n");
  ASSERT_TRUE(r) << r.error().String();
  Pairs want = {{"lxc.a", "1"},           {"lxc.b", "two words"},        {"lxc.c", "quoted"},
                {"lxc.d", "single"},      {"lxc.e", "\"x\""},            {"lxc.f", "\"unbalanced"},
                {"lxc.g", "  blanks kept  "}, {"lxc.h", ""},             {"lxc.i", "a = b"},
                {"lxc.j", "\""}};
  EXPECT_EQ(*r, want);
  // The canonical text reads back as the same pairs.
  auto again = ReadLxcConfig(WriteLxcConfig(*r));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, want);
}

TEST(LxcConfigReader, RefusesBytesLiblxcCouldReadDifferently) {
  struct Case {
    std::string text, names;
  };
  std::vector<Case> cases = {
      {std::string("lxc.init.cmd = /x\n#\0\nlxc.rootfs.path = dir:/\n", 40), "NUL byte 0x00"},
      {"lxc.init.cmd = /x\r\n", "CR byte 0x0d"},
      {"lxc.init.cmd = /x\x01\n", "control byte 0x01"},
      {"lxc.init.cmd = /x\x7f\n", "control byte 0x7f"},
      {"lxc.init.cmd = /x\x1b[0m\n", "control byte 0x1b"},
      {"lxc.init.cmd = \xff\n", "byte 0xff"},
      {"lxc.init.cmd = \xc0\xaf\n", "byte 0xc0"},           // overlong '/'
      {"lxc.init.cmd = \xed\xa0\x80\n", "byte 0xed"},       // a surrogate
      {"lxc.init.cmd = \xe2\x82\n", "byte 0xe2"},           // truncated
      {"lxc.init.cmd = /x \\\nlxc.rootfs.path = /\n", "backslash"},
      {"lxc.init.cmd /x\n", "is not \"key = value\""},
      {" = value\n", "no key"},
  };
  for (auto& c : cases) {
    auto r = ReadLxcConfig(c.text);
    ASSERT_FALSE(r) << c.names;
    EXPECT_EQ(r.error().code, "bad_lxc_config");
    EXPECT_NE(r.error().message.find(c.names), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("line "), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(ReadLxcConfig("lxc.environment = GREETING=h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x99\x82\n"));
}

TEST(LxcConfigAllowList, OrdinaryConfigsPass) {
  const char* config = R"(# a typical container
lxc.uts.name = web
lxc.mount.auto = proc:mixed sys:ro cgroup:mixed
lxc.init.cmd = /sbin/init
lxc.init.cwd = /srv
lxc.init.uid = 1000
  lxc.net.0.type = veth
lxc.net.0.link = br0
lxc.net.0.ipv4.address = 10.0.3.2/24
lxc.net.1.type=empty
lxc.net.2.type = macvlan
lxc.net.2.macvlan.mode = bridge
lxc.mount.entry = tmpfs tmp tmpfs defaults,create=dir 0 0
lxc.mount.entry = proc proc proc nodev,noexec,nosuid 0 0
lxc.mount.entry = mqueue dev/mqueue mqueue rw,create=dir,optional 0 0
lxc.cap.drop = sys_module mac_admin
lxc.environment = PATH=/usr/bin:/bin
lxc.tty.max = 4
lxc.pty.max = 1024
lxc.signal.halt = SIGTERM
lxc.prlimit.nofile = 1024:4096
lxc.cgroup2.memory.max = 64M
lxc.cgroup.cpuset.cpus = 0
lxc.cgroup2.pids.max = 100
lxc.sysctl.net.ipv4.ip_forward = 1
lxc.autodev = 1
lxc.console.path = "none"
lxc.arch = linux64
)";
  auto r = CheckLxcConfig(config, {});
  ASSERT_TRUE(r) << r.error().String();
  EXPECT_EQ(r->front().key, "lxc.mount.auto");  // lxc.uts.name is Gantry's: dropped
  EXPECT_TRUE(CheckLxcConfig("", {}));
}

TEST(LxcConfigAllowList, EscapesAreRefusedNamingTheKey) {
  std::vector<std::string> lines = {
      "lxc.apparmor.profile = unconfined",
      "lxc.apparmor.profile = \"unconfined\"",
      "lxc.apparmor.profile = unchanged",
      "lxc.apparmor.raw = change_profile -> **,",
      "lxc.net.0.type = \"none\"",
      "lxc.net.0.type = none",
      "lxc.net.1.type = phys",
      "lxc.net.0.script.up = /bin/true",
      "lxc.net.0.veth.ipv4.route = 0.0.0.0/0",
      "lxc.mount.entry = \"/ host none ro,bind 0 0\"",
      "lxc.mount.entry = / host none ro,bind 0 0",
      "lxc.mount.entry = etc host-etc none rbind,create=dir 0 0",
      "lxc.mount.entry = overlay host overlay lowerdir=/,upperdir=/tmp/u,workdir=/tmp/w 0 0",
      "lxc.mount.entry = tmpfs x tmpfs size=1m,lowerdir=/ 0 0",
      "lxc.mount.entry = tmpfs ../../x tmpfs defaults 0 0",
      "lxc.mount.entry = tmpfs x tmpfs idmap=container 0 0",
      "lxc.mount.entry = /dev/sda d ext4 defaults 0 0",
      "lxc.mount.auto = proc:rw",
      "lxc.mount.auto = proc:mixed sys:rw",
      "lxc.mount.auto = cgroup:rw",
      "lxc.sysctl.kernel.core_pattern = |/tmp/x",
      "lxc.sysctl.vm.overcommit_memory = 1",
      "lxc.cgroup.devices.allow = a",
      "lxc.cgroup2.devices.allow = b 8:* rwm",
      "lxc.cgroup2.devices.deny = ",
      "lxc.cap.keep = sys_admin",
      "lxc.seccomp.profile = /dev/null",
      "lxc.hook.pre-start = /bin/sh",
      "lxc.mount.fstab = /etc/fstab",
      "lxc.console.logfile = /tmp/x",
      "lxc.console.path = /dev/tty1",
      "lxc.namespace.share.net = 1",
      "lxc.namespace.keep = user",
      "lxc.environment = HOME",
      "lxc.init.uid = 0x0",
      "lxc.autodev = 2",
      "lxc.net = ",
      "lxc.unknown.key = 1",
  };
  for (auto& line : lines) {
    auto r = CheckLxcConfig("lxc.init.cmd = /sbin/init\n" + line + "\n", {});
    ASSERT_FALSE(r) << line;
    EXPECT_EQ(r.error().code, "lxc_key") << line;
    auto key = line.substr(0, line.find(' '));
    EXPECT_NE(r.error().message.find(key + " = "), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("refused"), std::string::npos) << r.error().message;
  }
}

TEST(LxcConfigAllowList, OperatorOverridesAreExactOrPrefix) {
  EXPECT_TRUE(CheckLxcConfig("lxc.hook.start = /x", {"lxc.hook.*"}));
  EXPECT_TRUE(CheckLxcConfig("lxc.hook.start = /x", {"lxc.hook.start"}));
  EXPECT_FALSE(CheckLxcConfig("lxc.hook.start = /x", {"lxc.hook"}));
  EXPECT_FALSE(CheckLxcConfig("lxc.hook.start = /x", {"lxc.hook.stop"}));
  EXPECT_TRUE(CheckLxcConfig("lxc.cgroup2.devices.allow = b 8:* rwm", {"lxc.cgroup2.devices.allow"}));
  EXPECT_TRUE(CheckLxcConfig("lxc.apparmor.profile = unconfined", {"lxc.apparmor.profile"}));
  // Allowing one key allows nothing else.
  EXPECT_FALSE(CheckLxcConfig("lxc.hook.start = /x\nlxc.cap.keep = sys_admin", {"lxc.hook.*"}));
  // The keys that would undo isolation cannot be allowed at all.
  for (auto line : {"lxc.rootfs.options = idmap=none", "lxc.rootfs.mount = /", "lxc.idmap = u 0 0 1",
                    "lxc.include = /etc/lxc/x.conf"}) {
    auto r = CheckLxcConfig(line, {"lxc.*", "lxc.rootfs.*", "lxc.idmap", "lxc.include"});
    ASSERT_FALSE(r) << line;
    EXPECT_NE(r.error().message.find("only Gantry sets"), std::string::npos) << r.error().message;
  }
}

TEST(LxcConfigAllowList, OwnedKeysOfPvrConfigsAreDroppedNotRefused) {
  std::string pvr =
      "lxc.uts.name = web\nlxc.rootfs.path = overlayfs:/volumes/web/root.squashfs:/storage/web\n"
      "lxc.log.file = /storage/logs/web.log\nlxc.log.level = 1\nlxc.init.cmd = /sbin/init\n";
  auto r = CheckLxcConfig(pvr, {});
  ASSERT_TRUE(r) << r.error().String();
  EXPECT_EQ(*r, (Pairs{{"lxc.init.cmd", "/sbin/init"}}));
  EXPECT_EQ(WithoutOwnedKeys(pvr), "lxc.init.cmd = \"/sbin/init\"\n");
  // A config that does not read is handed on unchanged, so that the check names the byte.
  std::string bad("lxc.init.cmd = /x\n#\0\n", 20);
  EXPECT_EQ(WithoutOwnedKeys(bad), bad);
}
