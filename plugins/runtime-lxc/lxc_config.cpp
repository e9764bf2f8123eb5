#include "lxc_config.hpp"

#include <array>
#include <sstream>
#include <string_view>
#include <vector>

namespace gantry::lxc {

namespace {

// Keys (and their pre-LXC-2.1 spellings) whose value Gantry decides: the rootfs must be the
// overlay Gantry mounted, the log must land in the instance directory.
constexpr std::array<std::string_view, 9> kOwned = {
    "lxc.rootfs.path", "lxc.rootfs", "lxc.uts.name", "lxc.utsname", "lxc.log.file",
    "lxc.logfile",     "lxc.log.level", "lxc.loglevel", "lxc.rootfs.backend"};

// What a busybox container needs to run and be attachable, when the revision does not say:
// no network of its own beyond loopback, /proc, /sys and the cgroup tree, a populated /dev,
// and no console (nobody reads it; the agent uses attach). Containers are privileged, so
// the capabilities that reach past the container (kernel modules, raw I/O, the clock, the
// MAC policy) are dropped as LXC's own common.conf does, unless the revision says otherwise.
struct Default {
  std::string_view prefix;  // any key starting with this counts as "set by the revision"
  std::string_view line;
};
constexpr std::array<Default, 6> kDefaults = {{
    {"lxc.net.", "lxc.net.0.type = empty"},
    {"lxc.mount.auto", "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed"},
    {"lxc.autodev", "lxc.autodev = 1"},
    {"lxc.console.path", "lxc.console.path = none"},
    {"lxc.tty.max", "lxc.tty.max = 0"},
    {"lxc.cap.", "lxc.cap.drop = mac_admin mac_override sys_module sys_rawio sys_time"},
}};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The key of a "key = value" line, or "" for comments and blank lines.
std::string_view KeyOf(std::string_view line) {
  line = Trim(line);
  if (line.empty() || line.front() == '#') return {};
  auto eq = line.find('=');
  return Trim(line.substr(0, eq));
}

}  // namespace

std::string ComposeConfig(const std::string& revision_config, const OwnedKeys& owned) {
  std::ostringstream out;
  std::istringstream in(revision_config);
  std::string line;
  std::vector<std::string> keys;
  while (std::getline(in, line)) {
    auto key = KeyOf(line);
    bool is_owned = false;
    for (auto k : kOwned) is_owned = is_owned || key == k;
    if (is_owned) {
      out << "# overridden by gantry: " << Trim(line) << "\n";
      continue;
    }
    if (!key.empty()) keys.emplace_back(key);
    out << line << "\n";
  }
  out << "\n# --- set by gantry ---\n"
      << "lxc.rootfs.path = dir:" << owned.rootfs << "\n"
      << "lxc.uts.name = " << owned.uts_name << "\n"
      << "lxc.log.file = " << owned.log_file << "\n"
      << "lxc.log.level = " << owned.log_level << "\n";
  for (auto& d : kDefaults) {
    bool set = false;
    for (auto& k : keys) set = set || std::string_view(k).substr(0, d.prefix.size()) == d.prefix;
    if (!set) out << d.line << "\n";
  }
  return out.str();
}

}  // namespace gantry::lxc
