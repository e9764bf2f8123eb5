#pragma once
// The liblxc helper: a process forked by the plugin's create() that performs every liblxc
// call and every mount, one request at a time, so liblxc's forks and global state never meet
// gantryd's threads.
#include <filesystem>
#include <string>
#include <vector>

#include "gantry_plugin.h"
#include "mounts.hpp"

namespace gantry::lxc {

struct HelperOptions {
  std::filesystem::path data_dir;  // containers/ (the lxcpath) and storage/ live here
  std::string log_level = "INFO";  // lxc.log.level of every container
  // runtime.idmap: container root is host uid/gid 100000 unless the container is privileged.
  IdRange idmap{0, 100000, 65536};
  // runtime.privileged: the containers allowed to run privileged when their run.json asks.
  std::vector<std::string> privileged;
  const GantryHostV1* host = nullptr;
};

// Serves requests on fd ({"op", "req"} frames, one reply frame each) until the plugin closes
// the socket, then exits the process. Sends a {"ok": true, "lxc_version"} frame first.
[[noreturn]] void RunHelper(int fd, const HelperOptions& options);

}  // namespace gantry::lxc
