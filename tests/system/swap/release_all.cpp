// swap_release_all PLUGIN_DIR DATA_DIR: stops and releases every instance gantryd left in
// DATA_DIR through the runtime plugin itself (containers outlive the agent by design), so a
// test ends with no container, mount or loop device of its own. Exit 1 if any release failed.
#include <iostream>
#include <nlohmann/json.hpp>

#include "runtime/runtime.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: swap_release_all PLUGIN_DIR DATA_DIR\n";
    return 2;
  }
  auto rt = gantry::runtime::LoadRuntimePlugin(argv[1], argv[2], nlohmann::json::object());
  if (!rt) {
    std::cerr << rt.error().String() << "\n";
    return 1;
  }
  auto list = (*rt)->List();
  if (!list) {
    std::cerr << list.error().String() << "\n";
    return 1;
  }
  int rc = 0;
  for (const auto& inst : *list) {
    (void)(*rt)->Stop(inst, 2);
    if (auto r = (*rt)->Release(inst); !r) {
      std::cerr << "release " << inst << ": " << r.error().String() << "\n";
      rc = 1;
    }
  }
  return rc;
}
