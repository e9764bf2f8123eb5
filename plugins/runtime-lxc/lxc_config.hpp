#pragma once
// The LXC config Gantry writes for an instance: the revision's text with the keys Gantry owns
// removed, then Gantry's values, then defaults for what the revision leaves unset.
#include <string>

namespace gantry::lxc {

struct OwnedKeys {
  std::string uts_name;   // the container name
  std::string rootfs;     // overlay mount point (lxc.rootfs.path = dir:<rootfs>)
  std::string log_file;   // <instance dir>/lxc.log
  std::string log_level;  // e.g. "INFO"
};

std::string ComposeConfig(const std::string& revision_config, const OwnedKeys& owned);

}  // namespace gantry::lxc
