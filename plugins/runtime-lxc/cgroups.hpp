#pragma once
// The helper's own cgroups. liblxc 5 moves the process that starts a daemonized container into
// that container's monitor cgroup and leaves it there; the helper moves itself back after every
// start, and sweeps the empty monitor cgroups liblxc leaves behind (cgroup v1).
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace gantry::lxc {

struct CgroupHierarchy {
  std::filesystem::path mount;  // e.g. /sys/fs/cgroup/memory
  std::string own;              // the helper's cgroup in it, relative to the mount ("" = root)
};

// Every mounted cgroup hierarchy with the calling process's place in it.
Expected<std::vector<CgroupHierarchy>> OwnCgroups();
// Moves the calling process back into `own` of every hierarchy.
ExpectedVoid EnterCgroups(const std::vector<CgroupHierarchy>& hierarchies);
// Removes the empty lxc.monitor.<instance>[-N] cgroups (rmdir refuses populated ones).
// Returns how many are still there.
int SweepMonitorCgroups(const std::vector<CgroupHierarchy>& hierarchies, const std::string& instance);

}  // namespace gantry::lxc
