// Prints the config parser's verdict on each file named on the command line, one line each:
// "ok" or "error<TAB>message". check_schemas.py compares it with config.schema.json's.
#include <iostream>
#include <string>

#include "config/config.hpp"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    auto c = gantry::config::Load(argv[i]);
    if (c) {
      std::cout << "ok\n";
      continue;
    }
    std::string msg = c.error().message;
    for (auto& ch : msg)
      if (ch == '\n' || ch == '\t') ch = ' ';
    std::cout << "error\t" << msg << "\n";
  }
  return 0;
}
