#pragma once
// The Pantavisor system state (docs/revision-format.md), parsed into what Gantry acts on. Real pvr exports
// parse: keys Gantry does not act on are kept in `raw` and listed in `warnings`, never fatal.
// Everything that becomes a path is checked here. Required, as pvr always writes them: the
// state's "#spec", and "#spec", "name" and "type" in each <c>/run.json. sensor.json (Gantry's
// own) is closed: an unknown field there is an error.
//
// Error codes: "bad_state" (a structural or typed problem, e.g. a type other than lxc, a
// missing config block, an undefined group), "bad_name" (an unsafe key, container, group or
// sensor model name), "bad_block_id" (a string value that is not 64 lowercase hex).
// Messages start with the state key they are about.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace gantry::manifest {

inline constexpr char kStateSpec[] = "pantavisor-service-system@1";
inline constexpr char kRunSpec[] = "service-manifest-run@1";
// Pantavisor's default groups, in start order, when the state defines none. Each waits at
// most this long for its containers to reach their status goal.
inline constexpr int kDefaultGroupTimeoutS = 30;
// A container without "group" (older pvr states) goes here, as in Pantavisor.
inline constexpr char kDefaultGroup[] = "platform";

enum class BspPolicy { kIgnore, kReject };

struct StateOptions {
  BspPolicy bsp = BspPolicy::kIgnore;  // config update.bsp
};

struct Group {
  std::string name;
  int order = 0;  // start order, 0 first
  int timeout_s = kDefaultGroupTimeoutS;
  std::string status_goal;     // default for its containers: MOUNTED|STARTED|READY
  std::string restart_policy;  // default for its containers: system|container
};

struct Health {
  std::vector<std::string> argv;  // run inside the container; exit 0 = healthy
  int interval_s = 5;
  int timeout_s = 10;
};

struct Volume {
  std::string name;   // as written in run.json without "dm:", e.g. "root.squashfs"
  std::string key;    // "<c>/root.squashfs"
  std::string block;  // its block id
  bool dm_verity = false;  // "dm:" prefix; accepted and treated as a plain squashfs
};

// A file overlaid into the container: a block, or (pvr inlines *.json files) inline JSON.
struct ConfigFile {
  std::string block;        // empty when inline
  std::string inline_json;  // the JSON text to write when block is empty
};

struct Container {
  std::string name;
  std::string group;
  std::string type = "lxc";
  std::string config_key;    // "<c>/lxc.container.conf"
  std::string config_block;  // block id of the LXC config
  Volume root_volume;
  std::vector<Volume> volumes;                 // further volumes, in run.json order
  std::map<std::string, std::string> storage;  // name → permanent|revision|boot
  std::string status_goal;                     // MOUNTED|STARTED|READY
  std::string restart_policy;                  // system|container
  std::string update_strategy = "stop-first";  // stop-first|start-first
  bool privileged = false;  // run.json "privileged": true (runs only if runtime.privileged lists it)
  std::optional<Health> health;                // required when status_goal is READY
  // Path inside the container, relative ("etc/app.conf", from "_config/<c>/etc/app.conf").
  std::map<std::string, ConfigFile> config_files;
  // Hex SHA-256 over every state key of this container (<c>/* and _config/<c>/*) with its
  // value: equal across revisions exactly when the container did not change.
  std::string content_key;
};

struct SensorFirmware {
  std::string model;
  std::string key;    // "_sensors/<model>/firmware.bin"
  std::string block;
  std::optional<std::uint64_t> size;  // from the revision's objects, when known
  std::string version;
  std::int64_t seq = 0;
  std::optional<std::string> vid, cid;
  std::vector<std::string> targets;  // sensor ids or "*"; default ["*"]
};

struct State {
  nlohmann::json raw;                     // the state object exactly as received
  std::vector<Container> containers;      // in start order: by group order, then name
  std::vector<Group> groups;              // in start order
  std::vector<SensorFirmware> sensors;    // by model
  std::vector<std::string> ignored;       // keys deliberately not acted on (bsp/*)
  std::vector<std::string> warnings;      // keys or fields not understood, one line each
  std::map<std::string, std::string> blocks;  // every block-valued key → block id

  // The blocks Gantry needs on the device (configs, volumes, config files, firmware),
  // sorted and distinct. Blocks of ignored or unknown keys are not fetched.
  std::vector<std::string> ReferencedBlocks() const;
  const Container* FindContainer(std::string_view name) const;
  const Group* FindGroup(std::string_view name) const;
};

Expected<State> ParseState(const nlohmann::json& state, const StateOptions& options = {});

}  // namespace gantry::manifest
