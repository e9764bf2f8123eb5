#pragma once
// The LXC keys a revision may not set (docs/container-isolation.md) unless runtime.allow_lxc_keys lists them:
// lxc.rootfs(.*), lxc.hook.*, lxc.include, lxc.mount.entry with a host source (an absolute
// source, or a bind/rbind mount), lxc.cap.keep, lxc.apparmor.profile = unconfined,
// lxc.seccomp(.*), lxc.cgroup.devices.allow, lxc.cgroup2.devices.allow, lxc.namespace.*,
// lxc.net.<i>.type = none|phys; and, beyond the documented list, the keys whose value is a host path:
// lxc.mount.fstab, lxc.console.logfile, lxc.console.path (unless "none"). Everything else is
// allowed.
//
// An allow entry is a key ("lxc.cap.keep", "lxc.mount.entry") or a prefix ending in ".*"
// ("lxc.hook.*" allows every lxc.hook.<x>; "lxc.rootfs.*" also the bare legacy lxc.rootfs).
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace gantry::manifest {

// Codes: "lxc_key" (a refused key; the message names the line and the allow entry that would
// permit it), "bad_lxc_config" (a line that is not "key = value").
ExpectedVoid CheckLxcConfig(std::string_view config_text, const std::vector<std::string>& allow_keys);

// The config without the lines Gantry sets itself (docs/container-isolation.md: rootfs path, uts name, log
// file): pvr-exported configs carry them, and they are overridden rather than refused.
std::string WithoutOwnedKeys(std::string_view config_text);

}  // namespace gantry::manifest
