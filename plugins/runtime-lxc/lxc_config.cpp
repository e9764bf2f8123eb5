#include "lxc_config.hpp"

#include <string_view>

#include "core/fs.hpp"

namespace gantry::lxc {

namespace {

// The standard character devices a container may use (and create, with autodev): null,
// zero, full, random, urandom, tty, console, ptmx and the pts ptys.
constexpr std::string_view kDevices[] = {"c 1:3 rwm",  "c 1:5 rwm", "c 1:7 rwm",
                                         "c 1:8 rwm",  "c 1:9 rwm", "c 5:0 rwm",
                                         "c 5:1 rwm",  "c 5:2 rwm", "c 136:* rwm"};

bool Has(const std::vector<manifest::LxcPair>& pairs, std::string_view prefix) {
  for (auto& p : pairs)
    if (p.key.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

}  // namespace

bool DevicesControllerIsV1() {
  auto text = fs::ReadFile("/proc/self/cgroup");
  return text && text->find(":devices:") != std::string::npos;
}

bool AppArmorEnabled() {
  auto text = fs::ReadFile("/sys/module/apparmor/parameters/enabled");
  return text && !text->empty() && (*text)[0] == 'Y';
}

Expected<std::string> ComposeConfig(const std::string& revision_config, const OwnedKeys& owned) {
  auto pairs = manifest::ReadLxcConfig(revision_config);
  if (!pairs) return Unexpected(pairs.error());
  for (auto& p : *pairs)
    if (manifest::IsGantryOnlyLxcKey(p.key) || manifest::IsOwnedLxcKey(p.key))
      return Fail("lxc_key", p.key + " is refused: only Gantry sets it");

  std::string out = "# Written by gantry from the revision's checked config; rewritten at every prepare.\n";
  auto line = [&](std::string_view key, std::string_view value) {
    out.append(key).append(" = ").append(value).append("\n");
  };
  // Devices first: "deny = a" clears every rule before it, so a device the operator allowed
  // (runtime.allow_lxc_keys) must come after it.
  std::string devices = owned.cgroup_v1_devices ? "lxc.cgroup.devices." : "lxc.cgroup2.devices.";
  line(devices + "deny", "a");
  for (auto d : kDevices) line(devices + "allow", d);

  out += manifest::WriteLxcConfig(*pairs);

  line("lxc.rootfs.path", "dir:" + owned.rootfs);
  line("lxc.uts.name", owned.uts_name);
  line("lxc.log.file", owned.log_file);
  line("lxc.log.level", owned.log_level);
  if (!owned.privileged) {
    auto range = std::to_string(owned.idmap.inside) + " " + std::to_string(owned.idmap.outside) +
                 " " + std::to_string(owned.idmap.count);
    line("lxc.idmap", "u " + range);
    line("lxc.idmap", "g " + range);
  }
  // LXC refuses cap.keep and cap.drop together: an operator who allowed cap.keep decides.
  if (!Has(*pairs, "lxc.cap.keep")) line("lxc.cap.drop", "mac_admin mac_override sys_module sys_rawio sys_time");
  if (!Has(*pairs, "lxc.seccomp.")) line("lxc.seccomp.profile", "/usr/share/lxc/config/common.seccomp");
  if (owned.apparmor && !Has(*pairs, "lxc.apparmor.")) line("lxc.apparmor.profile", "generated");
  // No network configured is the host's network in some LXC versions: an empty one instead.
  if (!Has(*pairs, "lxc.net.")) line("lxc.net.0.type", "empty");
  if (!Has(*pairs, "lxc.mount.auto")) line("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed");
  if (!Has(*pairs, "lxc.autodev")) line("lxc.autodev", "1");
  if (!Has(*pairs, "lxc.console.path")) line("lxc.console.path", "none");
  if (!Has(*pairs, "lxc.tty.max")) line("lxc.tty.max", "0");
  return out;
}

}  // namespace gantry::lxc
