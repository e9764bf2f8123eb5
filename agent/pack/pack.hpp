#pragma once
// gantryctl pack: a source tree of containers → a bundle an operator signs and serves
// (docs/revision-format.md, docs/operator-guide.md). The source-tree format is documented in examples/revisions/README.md.
//
//   SRC/<c>/rootfs/            a directory tree → the squashfs block <c>/root.squashfs
//   SRC/<c>/run.json           inline; pack fills in root-volume and config (and #spec, name,
//                              type when absent)
//   SRC/<c>/lxc.container.conf the LXC config block
//   SRC/_config/<c>/<path>     files overlaid into container <c> (blocks)
//   SRC/_sensors/<m>/firmware.bin, sensor.json
//   SRC/device.json, SRC/groups.json (inline)
//
// The bundle: OUT/state.json, OUT/objects/<sha256>, and OUT/revision.json (the unsigned
// revision document for `gantryctl sign`) when at least one target is given. The same source
// gives the same bytes: images are built with fixed owners, times and normalised modes.
//
// Error codes: "bad_source" (the tree is not in the format; the message names the path),
// "io" (reading or writing failed), "tool" (mksquashfs or busybox missing or failing).
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace gantry::pack {

struct Options {
  std::filesystem::path source;
  std::filesystem::path out;
  std::string rev;  // default: the source directory's name
  std::int64_t seq = 1;
  std::vector<std::string> targets;       // none → no revision.json
  std::optional<std::string> expires;     // RFC 3339
  std::filesystem::path busybox = "/bin/busybox";  // installed where rootfs/.busybox exists
  std::string mksquashfs = "mksquashfs";
};

struct Result {
  nlohmann::json state;
  std::optional<nlohmann::json> revision;      // written when targets were given
  std::map<std::string, std::uint64_t> objects;  // block id → size
  std::map<std::string, std::string> blocks;     // state key → block id
  std::vector<std::string> warnings;           // the state parser's, and LXC keys a device refuses by default
};

Expected<Result> Pack(const Options& options);

}  // namespace gantry::pack
