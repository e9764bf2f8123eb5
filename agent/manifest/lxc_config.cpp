#include "manifest/lxc_config.hpp"

#include <optional>
#include <sstream>

namespace gantry::manifest {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

bool Allowed(std::string_view key, const std::vector<std::string>& allow) {
  for (const auto& a : allow) {
    std::string_view entry = a;
    if (entry.size() >= 2 && entry.substr(entry.size() - 2) == ".*") {
      // "lxc.hook.*" allows lxc.hook.<x>; "lxc.rootfs.*" also the legacy bare "lxc.rootfs".
      if (StartsWith(key, entry.substr(0, entry.size() - 1)) ||
          key == entry.substr(0, entry.size() - 2))
        return true;
    } else if (key == entry) {
      return true;
    }
  }
  return false;
}

// lxc.mount.entry = <source> <target> <fstype> <options> ...
bool MountsHostPath(std::string_view value) {
  std::istringstream in{std::string(value)};
  std::string source, target, fstype, options;
  in >> source >> target >> fstype >> options;
  if (!source.empty() && source[0] == '/') return true;
  std::istringstream opts(options);
  for (std::string o; std::getline(opts, o, ',');)
    if (o == "bind" || o == "rbind") return true;  // a relative bind source is still a host path
  return false;
}

// Why key = value is refused, or nullopt when it is harmless. `rule` is what to allow.
struct Refusal {
  std::string rule;
  std::string reason;
};

std::optional<Refusal> Refuse(std::string_view key, std::string_view value) {
  auto is_prefix_key = [&](std::string_view base) {  // "base" itself or "base.<x>"
    return key == base || StartsWith(key, std::string(base) + ".");
  };
  if (is_prefix_key("lxc.rootfs")) return Refusal{"lxc.rootfs.*", "Gantry owns the rootfs"};
  if (StartsWith(key, "lxc.hook.")) return Refusal{"lxc.hook.*", "hooks run on the host"};
  if (key == "lxc.include") return Refusal{"lxc.include", "includes a host file"};
  if (key == "lxc.mount.entry" && MountsHostPath(value))
    return Refusal{"lxc.mount.entry", "mounts a host path into the container"};
  // Not in docs/container-isolation.md's list, but as host-escaping as lxc.include and lxc.mount.entry: a host
  // file of mount entries (a cached block has a predictable path), a host file or device.
  if (key == "lxc.mount.fstab") return Refusal{"lxc.mount.fstab", "mounts the host paths a host file lists"};
  if (key == "lxc.console.logfile") return Refusal{"lxc.console.logfile", "writes a host file"};
  if (key == "lxc.console.path" && value != "none")
    return Refusal{"lxc.console.path", "attaches a host file or device"};
  if (key == "lxc.cap.keep") return Refusal{"lxc.cap.keep", "keeps host capabilities"};
  if (key == "lxc.apparmor.profile" && value == "unconfined")
    return Refusal{"lxc.apparmor.profile", "disables AppArmor confinement"};
  if (is_prefix_key("lxc.seccomp")) return Refusal{"lxc.seccomp.*", "changes the seccomp filter"};
  if (key == "lxc.cgroup.devices.allow" || key == "lxc.cgroup2.devices.allow")
    return Refusal{std::string(key), "grants access to host devices"};
  if (StartsWith(key, "lxc.namespace.")) return Refusal{"lxc.namespace.*", "shares host namespaces"};
  if (StartsWith(key, "lxc.net.") && key.size() > 5 && key.substr(key.size() - 5) == ".type" &&
      (value == "none" || value == "phys"))
    return Refusal{"lxc.net.*", "gives the container the host's network"};
  return std::nullopt;
}

}  // namespace

ExpectedVoid CheckLxcConfig(std::string_view text, const std::vector<std::string>& allow_keys) {
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line.front() == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos)
      return Fail("bad_lxc_config", "line " + std::to_string(line_no) + ": \"" + std::string(line) +
                                        "\" is not \"key = value\"");
    std::string_view key = Trim(line.substr(0, eq)), value = Trim(line.substr(eq + 1));
    auto refusal = Refuse(key, value);
    if (refusal && !Allowed(key, allow_keys))
      return Fail("lxc_key", "line " + std::to_string(line_no) + ": " + std::string(key) + " = " +
                                 std::string(value) + " is refused (" + refusal->reason +
                                 "); allow it with runtime.allow_lxc_keys [\"" + refusal->rule +
                                 "\"]");
  }
  return {};
}

std::string WithoutOwnedKeys(std::string_view config_text) {
  static const char* const kOwned[] = {"lxc.rootfs.path", "lxc.rootfs", "lxc.uts.name", "lxc.utsname",
                                       "lxc.log.file", "lxc.logfile"};
  std::string out;
  size_t start = 0;
  while (start < config_text.size()) {
    size_t end = config_text.find('\n', start);
    if (end == std::string_view::npos) end = config_text.size();
    std::string_view line = config_text.substr(start, end - start);
    auto eq = line.find('=');
    bool owned = false;
    if (eq != std::string_view::npos) {
      auto key = Trim(line.substr(0, eq));
      for (auto* k : kOwned) owned = owned || key == k;
    }
    if (!owned) out.append(line).append("\n");
    start = end + 1;
  }
  return out;
}

}  // namespace gantry::manifest
