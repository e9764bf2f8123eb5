#include "manifest/lxc_config.hpp"

#include <array>
#include <cstdio>
#include <functional>
#include <sstream>

namespace gantry::manifest {
namespace {

bool Blank(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && Blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && Blank(s.back())) s.remove_suffix(1);
  return s;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string ByteName(unsigned char b) {
  char buf[48];
  if (b == 0) return "NUL byte 0x00";
  if (b == '\r') return "CR byte 0x0d";
  std::snprintf(buf, sizeof buf, "%s byte 0x%02x", b < 0x20 || b == 0x7f ? "control" : "non-UTF-8", b);
  return buf;
}

// Length of the valid UTF-8 sequence at s[i], or 0 (overlong forms, surrogates and code points
// above U+10FFFF are invalid).
size_t Utf8Length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char c = b(0);
  size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(k) & 0xc0) != 0x80) return 0;
  if (n == 2 && c < 0xc2) return 0;
  if (n == 3 && ((c == 0xe0 && b(1) < 0xa0) || (c == 0xed && b(1) >= 0xa0))) return 0;
  if (n == 4 && ((c == 0xf0 && b(1) < 0x90) || c > 0xf4 || (c == 0xf4 && b(1) >= 0x90))) return 0;
  return n;
}

ExpectedVoid CheckBytes(std::string_view line, size_t line_no) {
  for (size_t i = 0; i < line.size();) {
    auto c = static_cast<unsigned char>(line[i]);
    bool control = (c < 0x20 && c != '\t') || c == 0x7f;
    size_t n = control ? 0 : Utf8Length(line, i);
    if (n == 0) {
      std::string why = c == 0 ? "liblxc stops reading the file there"
                        : c == '\r' ? "liblxc keeps it as part of the line"
                        : control ? "liblxc and the checker may read it differently"
                                  : "the config is not valid UTF-8";
      return Fail("bad_lxc_config", "line " + std::to_string(line_no) + " column " +
                                        std::to_string(i + 1) + ": " + ByteName(c) + " refused (" +
                                        why + ")");
    }
    i += n;
  }
  return {};
}

// --- the allow-list ---------------------------------------------------------------------

std::vector<std::string> Words(std::string_view value) {
  std::istringstream in{std::string(value)};
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool AllOf(std::string_view s, std::string_view chars) {
  for (char c : s)
    if (chars.find(c) == std::string_view::npos) return false;
  return true;
}
constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kName = "abcdefghijklmnopqrstuvwxyz0123456789_-";
constexpr std::string_view kSignal = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+";

bool IsNumber(std::string_view v) { return !v.empty() && v.size() <= 10 && AllOf(v, kDigits); }
bool IsName(std::string_view v) { return !v.empty() && AllOf(v, kName); }

// A value rule: empty string when the value is acceptable, else why not.
using Rule = std::function<std::string(std::string_view key, std::string_view value)>;

std::string AnyValue(std::string_view, std::string_view) { return ""; }

std::string Number(std::string_view, std::string_view v) {
  return IsNumber(v) ? "" : "must be a decimal number";
}

// lxc.mount.auto: proc and sys only read-only or mixed (a writable /proc/sys or /sys reaches
// host-wide kernel settings such as kernel.core_pattern); cgroup views read-only or mixed.
std::string MountAuto(std::string_view, std::string_view v) {
  static const std::array<std::string_view, 10> kOk = {
      "proc", "proc:mixed", "sys", "sys:ro", "sys:mixed", "cgroup", "cgroup:ro", "cgroup:mixed",
      "cgroup-full:ro", "cgroup-full:mixed"};
  for (auto& w : Words(v)) {
    bool ok = false;
    for (auto k : kOk) ok = ok || w == k;
    if (!ok) return "\"" + w + "\" is not one of proc, proc:mixed, sys, sys:ro, sys:mixed, "
                               "cgroup[-full]:ro|mixed (nothing writable into the host kernel)";
  }
  return "";
}

// lxc.mount.entry = <source> <target> <fstype> <options> [dump pass]: only pseudo file
// systems (their source is a label, not a host path), never a bind or move of a host tree,
// options naming no path (overlay's lowerdir=/, idmap=/proc/..).
std::string MountEntry(std::string_view, std::string_view v) {
  static const std::array<std::string_view, 8> kPseudo = {"proc", "sysfs", "tmpfs", "devpts",
                                                          "mqueue", "cgroup", "cgroup2", "ramfs"};
  auto w = Words(v);
  if (w.size() < 3 || w.size() > 6) return "is not \"source target fstype [options [dump pass]]\"";
  const std::string &source = w[0], &target = w[1], &fstype = w[2];
  bool pseudo = false;
  for (auto p : kPseudo) pseudo = pseudo || fstype == p;
  if (!pseudo) return "file system type \"" + fstype + "\" is not a pseudo file system (" +
                      "proc, sysfs, tmpfs, devpts, mqueue, cgroup, cgroup2, ramfs)";
  if (source.find('/') != std::string::npos) return "source \"" + source + "\" is a path";
  if (("/" + target + "/").find("/../") != std::string::npos)
    return "target \"" + target + "\" leaves the container's root";
  if (w.size() >= 4) {
    std::istringstream opts(w[3]);
    for (std::string o; std::getline(opts, o, ',');) {
      if (o == "bind" || o == "rbind" || o == "move" || o == "rmove")
        return "option \"" + o + "\" mounts a host tree";
      if (o.find('/') != std::string::npos) return "option \"" + o + "\" names a path";
      if (StartsWith(o, "idmap")) return "option \"" + o + "\" changes the id mapping";
    }
  }
  for (size_t i = 4; i < w.size(); ++i)
    if (!IsNumber(w[i])) return "dump and pass must be numbers";
  return "";
}

// lxc.net.<N>.<sub>: a network of the container's own (empty, veth, macvlan), never the host's
// (none) or a host device moved in (phys, vlan's parent), and no hook scripts run on the host.
std::string Net(std::string_view key, std::string_view v) {
  auto rest = key.substr(std::string_view("lxc.net.").size());
  auto dot = rest.find('.');
  if (dot == std::string_view::npos || !IsNumber(rest.substr(0, dot))) return "is not lxc.net.<N>.<key>";
  auto sub = rest.substr(dot + 1);
  if (sub == "type") {
    if (v == "empty" || v == "veth" || v == "macvlan") return "";
    return "network type must be empty, veth or macvlan (none shares the host's network, phys "
           "moves a host device in)";
  }
  static const std::array<std::string_view, 13> kSubs = {
      "flags", "link", "name", "hwaddr", "mtu", "ipv4.address", "ipv4.gateway", "ipv6.address",
      "ipv6.gateway", "veth.pair", "veth.mode", "macvlan.mode", "l2proxy"};
  for (auto s : kSubs)
    if (sub == s) return "";
  return "lxc.net.<N>." + std::string(sub) +
         " is not allowed (scripts and host routes act on the host)";
}

std::string CapDrop(std::string_view, std::string_view v) {
  for (auto& w : Words(v))
    if (!IsName(w)) return "\"" + w + "\" is not a capability name";
  return "";
}

std::string Signal(std::string_view, std::string_view v) {
  return !v.empty() && AllOf(v, kSignal) ? "" : "must be a signal name or number";
}

// lxc.prlimit.<resource> = <limit>[:<limit>], a limit a number or "unlimited".
std::string Prlimit(std::string_view key, std::string_view v) {
  if (!IsName(key.substr(std::string_view("lxc.prlimit.").size()))) return "bad resource name";
  auto limit = [](std::string_view l) {
    return l == "unlimited" || (!l.empty() && l.size() <= 20 && AllOf(l, kDigits));
  };
  auto colon = v.find(':');
  if (colon == std::string_view::npos) return limit(v) ? "" : "must be <limit>[:<limit>]";
  return limit(v.substr(0, colon)) && limit(v.substr(colon + 1)) ? "" : "must be <limit>[:<limit>]";
}

std::string Autodev(std::string_view, std::string_view v) {
  return v == "0" || v == "1" ? "" : "must be 0 or 1";
}

std::string ConsolePath(std::string_view, std::string_view v) {
  return v == "none" ? "" : "must be none (any other value is a host file or device)";
}

std::string PlainName(std::string_view, std::string_view v) {
  return IsName(v) ? "" : "must be a plain name ([a-z0-9_-]+)";
}

// lxc.environment = NAME=VALUE; a bare NAME copies the variable from the host's environment.
std::string Environment(std::string_view, std::string_view v) {
  auto eq = v.find('=');
  return eq != std::string_view::npos && eq > 0 ? "" : "must be NAME=VALUE (a bare NAME copies a host variable)";
}

// lxc.cgroup[2].<controller>.<file>: resource limits only (the devices controller is Gantry's).
std::string CgroupLimit(std::string_view key, std::string_view) {
  auto rest = key.substr(key.find('.', 4) + 1);
  static const std::array<std::string_view, 6> kControllers = {"memory", "cpu", "cpuset",
                                                                "pids", "io", "blkio"};
  for (auto c : kControllers)
    if (StartsWith(rest, std::string(c) + ".") && rest.size() > c.size() + 1) return "";
  return "only memory, cpu, cpuset, pids, io and blkio limits may be set";
}

struct AllowRule {
  std::string_view pattern;  // a key, or a prefix ending in '.' (every key below it)
  Rule rule;
};

const std::vector<AllowRule>& AllowList() {
  static const std::vector<AllowRule> kList = {
      // What runs inside the container, as whom and where: the container's own business.
      {"lxc.init.cmd", AnyValue},
      {"lxc.init.cwd", AnyValue},
      {"lxc.init.uid", Number},
      {"lxc.init.gid", Number},
      {"lxc.init.groups", AnyValue},
      {"lxc.execute.cmd", AnyValue},
      {"lxc.environment", Environment},
      {"lxc.arch", PlainName},
      // Mounts: pseudo file systems only, nothing writable into the host kernel.
      {"lxc.mount.auto", MountAuto},
      {"lxc.mount.entry", MountEntry},
      // A network namespace of its own.
      {"lxc.net.", Net},
      // Dropping more capabilities only ever narrows the container.
      {"lxc.cap.drop", CapDrop},
      {"lxc.tty.max", Number},
      {"lxc.tty.dir", PlainName},
      {"lxc.pty.max", Number},
      {"lxc.signal.halt", Signal},
      {"lxc.signal.reboot", Signal},
      {"lxc.signal.stop", Signal},
      {"lxc.prlimit.", Prlimit},
      {"lxc.cgroup.", CgroupLimit},
      {"lxc.cgroup2.", CgroupLimit},
      // Network sysctls are per network namespace; every other sysctl is host-wide.
      {"lxc.sysctl.net.", AnyValue},
      {"lxc.autodev", Autodev},
      {"lxc.console.path", ConsolePath},
  };
  return kList;
}

bool AllowedByOperator(std::string_view key, const std::vector<std::string>& allow) {
  for (const auto& a : allow) {
    std::string_view entry = a;
    if (entry.size() >= 2 && entry.substr(entry.size() - 2) == ".*") {
      // "lxc.hook.*" allows lxc.hook.<x>; "lxc.rootfs.*" also the bare "lxc.rootfs".
      if (StartsWith(key, entry.substr(0, entry.size() - 1)) || key == entry.substr(0, entry.size() - 2))
        return true;
    } else if (key == entry) {
      return true;
    }
  }
  return false;
}

}  // namespace

Expected<std::vector<LxcPair>> ReadLxcConfig(std::string_view text) {
  std::vector<LxcPair> pairs;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (auto r = CheckBytes(raw, line_no); !r) return Unexpected(r.error());
    std::string_view line = TrimBlanks(raw);
    if (line.empty() || line.front() == '#') continue;
    auto where = "line " + std::to_string(line_no) + ": ";
    if (line.back() == '\\')
      return Fail("bad_lxc_config", where + "ends in a backslash (liblxc has no continuation lines)");
    auto eq = line.find('=');
    if (eq == std::string_view::npos)
      return Fail("bad_lxc_config", where + "\"" + std::string(line) + "\" is not \"key = value\"");
    std::string_view key = TrimBlanks(line.substr(0, eq)), value = TrimBlanks(line.substr(eq + 1));
    if (key.empty()) return Fail("bad_lxc_config", where + "has no key before '='");
    if (value.size() > 1 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front())
      value = value.substr(1, value.size() - 2);
    pairs.push_back({std::string(key), std::string(value)});
  }
  return pairs;
}

bool IsOwnedLxcKey(std::string_view key) {
  static const std::array<std::string_view, 8> kOwned = {
      "lxc.rootfs.path", "lxc.rootfs", "lxc.uts.name", "lxc.utsname",
      "lxc.log.file",    "lxc.logfile", "lxc.log.level", "lxc.loglevel"};
  for (auto k : kOwned)
    if (key == k) return true;
  return false;
}

bool IsGantryOnlyLxcKey(std::string_view key) {
  return !IsOwnedLxcKey(key) && (key == "lxc.idmap" || key == "lxc.include" || key == "lxc.rootfs" ||
                                 StartsWith(key, "lxc.rootfs."));
}

Expected<std::vector<LxcPair>> CheckLxcConfig(std::string_view text,
                                              const std::vector<std::string>& allow_keys) {
  auto pairs = ReadLxcConfig(text);
  if (!pairs) return pairs;
  std::vector<LxcPair> out;
  for (auto& p : *pairs) {
    if (IsOwnedLxcKey(p.key)) continue;
    if (IsGantryOnlyLxcKey(p.key))
      return Fail("lxc_key", p.key + " = \"" + p.value + "\" is refused: only Gantry sets " + p.key +
                                 " (runtime.allow_lxc_keys cannot admit it)");
    if (AllowedByOperator(p.key, allow_keys)) {
      out.push_back(std::move(p));
      continue;
    }
    std::string why = "is not on the allow-list";
    for (const auto& rule : AllowList()) {
      bool match = rule.pattern.back() == '.' ? StartsWith(p.key, rule.pattern) && p.key.size() > rule.pattern.size()
                                              : p.key == rule.pattern;
      if (!match) continue;
      why = rule.rule(p.key, p.value);
      break;
    }
    if (!why.empty())
      return Fail("lxc_key", p.key + " = \"" + p.value + "\" is refused: " + why +
                                 "; allow it with runtime.allow_lxc_keys [\"" + p.key + "\"]");
    out.push_back(std::move(p));
  }
  return out;
}

std::string WriteLxcConfig(const std::vector<LxcPair>& pairs) {
  std::string out;
  for (const auto& p : pairs) out += p.key + " = \"" + p.value + "\"\n";
  return out;
}

std::string WithoutOwnedKeys(std::string_view config_text) {
  auto pairs = ReadLxcConfig(config_text);
  if (!pairs) return std::string(config_text);
  std::vector<LxcPair> kept;
  for (auto& p : *pairs)
    if (!IsOwnedLxcKey(p.key)) kept.push_back(std::move(p));
  return WriteLxcConfig(kept);
}

}  // namespace gantry::manifest
