#pragma once
// Small valid states and revisions for manifest tests, mutated by each test.
#include <string>

#include <nlohmann/json.hpp>

#include "digest/sha256.hpp"

namespace gantry::test {

// A block id that is a real SHA-256 (of a label), so tests can tell blocks apart.
inline std::string Block(const std::string& label) { return digest::Sha256Hex(label); }

// One lxc container `c` in group `group` with its config and rootfs blocks.
inline void AddContainer(nlohmann::json& state, const std::string& c,
                         const std::string& group = "app") {
  state[c + "/run.json"] = {{"#spec", "service-manifest-run@1"},
                            {"name", c},
                            {"type", "lxc"},
                            {"config", "lxc.container.conf"},
                            {"root-volume", "root.squashfs"},
                            {"group", group}};
  state[c + "/lxc.container.conf"] = Block(c + "-conf");
  state[c + "/root.squashfs"] = Block(c + "-root");
}

inline nlohmann::json OneContainerState(const std::string& c = "web") {
  nlohmann::json s = {{"#spec", "pantavisor-service-system@1"}};
  AddContainer(s, c);
  return s;
}

// A revision listing every block of state in objects.
inline nlohmann::json RevisionFor(const nlohmann::json& state, const std::string& rev = "42",
                                  long seq = 42) {
  nlohmann::json objects = nlohmann::json::object();
  std::uint64_t size = 100;
  for (const auto& [k, v] : state.items())
    if (v.is_string() && k != "#spec") objects[v.get<std::string>()] = {{"size", size++}};
  return {{"rev", rev},
          {"seq", seq},
          {"targets", {"gw-0001", "group:lab"}},
          {"objects", objects},
          {"state", state}};
}

}  // namespace gantry::test
