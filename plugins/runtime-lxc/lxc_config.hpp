#pragma once
// The LXC config Gantry writes for an instance (docs/container-isolation.md): the device
// cgroup deny-all, then the revision's validated (key, value) pairs written canonically, then
// the keys Gantry owns. The revision's text itself never reaches liblxc.
#include <string>
#include <vector>

#include "core/error.hpp"
#include "manifest/lxc_config.hpp"
#include "mounts.hpp"

namespace gantry::lxc {

struct OwnedKeys {
  std::string uts_name;   // the container name
  std::string rootfs;     // overlay mount point (lxc.rootfs.path = dir:<rootfs>)
  std::string log_file;   // <instance dir>/lxc.log
  std::string log_level;  // e.g. "INFO"
  bool privileged = false;  // no user namespace (run.json and runtime.privileged agree)
  IdRange idmap;            // container root -> host range, for unprivileged containers
  bool cgroup_v1_devices = false;  // the devices controller is a cgroup v1 hierarchy
  bool apparmor = false;           // AppArmor is enabled on the host
};

// Reads the agent's (already allow-list-checked) config once more with the same reader and
// refuses it if it does not read, or sets a key only Gantry writes; else the full config.
Expected<std::string> ComposeConfig(const std::string& revision_config, const OwnedKeys& owned);

// What the host offers: the devices controller's cgroup version, whether AppArmor is on.
bool DevicesControllerIsV1();
bool AppArmorEnabled();

}  // namespace gantry::lxc
