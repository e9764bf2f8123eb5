#pragma once
// Each gantryctl command group lives in its own *_cmd.cpp and registers itself here, so a
// command can be added without editing a shared list.
#include <CLI/CLI.hpp>
#include <functional>

namespace gantry::cli {

using Registrar = void (*)(CLI::App& app);

struct CommandRegistration {
  explicit CommandRegistration(Registrar r);
};

// Exit codes shared by every command: 0 ok, 1 the check failed (e.g. verify found a bad
// block), 2 usage or bad input, 3 an operational error (I/O, network).
inline constexpr int kExitOk = 0, kExitCheckFailed = 1, kExitUsage = 2, kExitError = 3;

// Commands report their exit code by throwing this from their callback.
struct Exit {
  int code;
};

}  // namespace gantry::cli
