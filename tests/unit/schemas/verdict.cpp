// Prints a C++ parser's verdict on each file named on the command line, one line each, for
// check_schemas.py to compare with the matching schema's verdict:
//   verdict config FILE...   "ok" or "error<TAB>message"       (config::Load)
//   verdict command FILE...  "ok<TAB>reply" or "error<TAB>reply" (command::Parse; the reply
//                            the agent would send, which must match reply.schema.json)
#include <cstring>
#include <iostream>
#include <string>

#include "command/command.hpp"
#include "config/config.hpp"
#include "core/fs.hpp"

namespace {

std::string OneLine(std::string s) {
  for (auto& ch : s)
    if (ch == '\n' || ch == '\t') ch = ' ';
  return s;
}

void Config(const char* file) {
  auto c = gantry::config::Load(file);
  std::cout << (c ? "ok" : "error\t" + OneLine(c.error().message)) << "\n";
}

void Command(const char* file) {
  auto text = gantry::fs::ReadFile(file);
  if (!text) {
    std::cout << "error\tunreadable: " << OneLine(text.error().message) << "\n";
    return;
  }
  auto c = gantry::command::Parse(*text);
  if (c)
    std::cout << "ok\t" << gantry::command::Reply(c->id, {}) << "\n";
  else
    std::cout << "error\t" << gantry::command::Reply(c.error().id, gantry::Unexpected(c.error().error))
              << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || (std::strcmp(argv[1], "config") != 0 && std::strcmp(argv[1], "command") != 0)) {
    std::cerr << "usage: verdict config|command FILE...\n";
    return 2;
  }
  bool config = std::strcmp(argv[1], "config") == 0;
  for (int i = 2; i < argc; ++i) config ? Config(argv[i]) : Command(argv[i]);
  return 0;
}
