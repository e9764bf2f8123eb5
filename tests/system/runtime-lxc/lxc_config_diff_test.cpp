// Differential test of the LXC config reader against liblxc itself: for generated configs
// (random lines of allowed keys, decorated with blanks, tabs, quotes, comments, and fuzzed with
// NUL, CR, control bytes, invalid UTF-8 and trailing backslashes), every config Gantry accepts
// is read by liblxc to exactly the pairs Gantry validated: the revision's raw text, the
// canonical text Gantry writes, and the pairs set one by one through liblxc's own setter give
// the same value for every key (get_config_item).
#include <gtest/gtest.h>
#include <lxc/lxccontainer.h>

#include <random>
#include <set>

#include "manifest/lxc_config.hpp"
#include "test_util.hpp"

using gantry::manifest::CheckLxcConfig;
using gantry::manifest::LxcPair;
using gantry::manifest::WriteLxcConfig;

namespace {

const std::vector<LxcPair> kPool = {
    {"lxc.init.cmd", "/sbin/init --verbose"},  {"lxc.init.cwd", "/srv/app"},
    {"lxc.environment", "A=b c"},              {"lxc.environment", "QUOTE=\"x\""},
    {"lxc.mount.auto", "proc:mixed sys:ro"},   {"lxc.mount.auto", "cgroup:mixed"},
    {"lxc.mount.entry", "tmpfs tmp tmpfs defaults,create=dir 0 0"},
    {"lxc.cap.drop", "sys_admin net_raw"},     {"lxc.tty.max", "4"},
    {"lxc.pty.max", "1024"},                   {"lxc.signal.halt", "SIGTERM"},
    {"lxc.prlimit.nofile", "1024:4096"},       {"lxc.cgroup2.memory.max", "64M"},
    {"lxc.sysctl.net.ipv4.ip_forward", "1"},   {"lxc.autodev", "1"},
    {"lxc.console.path", "none"},              {"lxc.net.0.type", "veth"},
    {"lxc.net.0.name", "eth0"},                {"lxc.init.cmd", "'/bin/sh' -c 'x'"},
};

std::string Decorate(const LxcPair& p, std::mt19937& rng) {
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  static const char* kBlanks[] = {"", " ", "\t", "  \t "};
  std::string value = p.value;
  switch (pick(4)) {
    case 0: value = "\"" + value + "\""; break;
    case 1: value = "'" + value + "'"; break;
    case 2: value = "\"" + value; break;  // unbalanced: kept as is by both
    default: break;
  }
  return std::string(kBlanks[pick(4)]) + p.key + kBlanks[pick(4)] + "=" + kBlanks[pick(4)] + value +
         kBlanks[pick(4)];
}

std::string Fuzz(std::string text, std::mt19937& rng) {
  static const std::string kBytes[] = {std::string(1, '\0'), "\r", "\x01", "\x1b", "\x7f",
                                       "\xff", "\xc0\xaf", "\\", "#", "\"", "'", "=", "\n"};
  int edits = static_cast<int>(rng() % 3);
  for (int i = 0; i < edits && !text.empty(); ++i)
    text.insert(rng() % text.size(), kBytes[rng() % (sizeof kBytes / sizeof kBytes[0])]);
  return text;
}

struct Container {
  lxc_container* c;
  explicit Container(const std::string& dir) : c(lxc_container_new("diff", dir.c_str())) {}
  ~Container() { if (c) lxc_container_put(c); }
  std::string Get(const std::string& key) {
    int n = c->get_config_item(c, key.c_str(), nullptr, 0);
    if (n < 0) return "<error>";
    std::string buf(static_cast<size_t>(n) + 1, '\0');
    c->get_config_item(c, key.c_str(), buf.data(), n + 1);
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
};

}  // namespace

TEST(LxcConfigDifferential, GantryAndLiblxcReadTheSamePairs) {
  gantry::test::TempDir dir;
  std::mt19937 rng(12);
  int accepted = 0, refused = 0, compared_keys = 0;
  const int kConfigs = 600;
  for (int n = 0; n < kConfigs; ++n) {
    std::string text;
    int lines = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < lines; ++i) {
      if (rng() % 6 == 0) text += (rng() % 2 ? "# a comment = x\n" : "\n");
      text += Decorate(kPool[rng() % kPool.size()], rng) + "\n";
    }
    if (n % 2) text = Fuzz(text, rng);
    auto pairs = CheckLxcConfig(text, {});
    if (!pairs) {
      ++refused;
      continue;
    }
    ++accepted;
    auto raw = dir.path() / "raw.conf", written = dir.path() / "written.conf";
    gantry::test::Spit(raw, text);
    gantry::test::Spit(written, WriteLxcConfig(*pairs));
    Container a(dir.path()), b(dir.path()), c(dir.path());
    ASSERT_TRUE(a.c && b.c && c.c);
    bool la = a.c->load_config(a.c, raw.c_str());
    bool lb = b.c->load_config(b.c, written.c_str());
    bool lc = true;
    for (auto& p : *pairs) lc = c.c->set_config_item(c.c, p.key.c_str(), p.value.c_str()) && lc;
    ASSERT_EQ(la, lc) << "liblxc reads the raw text differently:\n" << text;
    ASSERT_EQ(lb, lc) << "liblxc reads Gantry's text differently:\n" << WriteLxcConfig(*pairs);
    std::set<std::string> keys;
    for (auto& p : *pairs) keys.insert(p.key);
    for (auto& k : keys) {
      ++compared_keys;
      EXPECT_EQ(a.Get(k), c.Get(k)) << k << " in raw text:\n" << text;
      EXPECT_EQ(b.Get(k), c.Get(k)) << k << " in written text:\n" << WriteLxcConfig(*pairs);
    }
  }
  std::printf("[differential] %d configs: %d accepted (%d keys compared with liblxc), %d refused\n",
              kConfigs, accepted, compared_keys, refused);
  EXPECT_GT(accepted, kConfigs / 4);
  EXPECT_GT(refused, 0);
}
