#pragma once
// gantryd's composition root: config → concrete objects → wiring. The only place that knows
// every concrete type.
#include <string>
#include <vector>

namespace gantry::app {

// Parses the command line, runs the agent until SIGTERM/SIGINT. Returns the exit code:
// 0 clean stop, 2 bad config or usage, 3 could not start.
int Main(int argc, char** argv);

}  // namespace gantry::app
