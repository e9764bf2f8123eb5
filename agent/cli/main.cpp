#include <cstdio>
#include <vector>

#include "cli/command.hpp"

namespace gantry::cli {
namespace {
std::vector<Registrar>& Registry() {
  static std::vector<Registrar> r;
  return r;
}
}  // namespace
CommandRegistration::CommandRegistration(Registrar r) { Registry().push_back(r); }
}  // namespace gantry::cli

int main(int argc, char** argv) {
  CLI::App app{"gantryctl: the Gantry operator and device tool"};
  app.require_subcommand(1);
  for (auto r : gantry::cli::Registry()) r(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : gantry::cli::kExitUsage;
  } catch (const gantry::cli::Exit& e) {
    return e.code;
  }
  return 0;
}
