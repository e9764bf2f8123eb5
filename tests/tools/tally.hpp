#pragma once
// The last line a reliability test prints (issue 7): what it survived, in one grep-able form.
// ./dev.sh test collects every "[tally]" line from the ctest log and prints them at the end.
//
//   Tally t{"crash-torture"};
//   t.kills++; ... t.lost++;   // lost: data lost or corrupted, which a passing run keeps at 0
//   t.Print();                 // [tally] crash-torture: kills survived 30, faults injected 0, ...
//
// LongMode(): ./dev.sh test --long (GANTRY_LONG=1) asks for the long counts (300+ kills).
#include <cstdio>
#include <cstdlib>
#include <string>

namespace gantry::test {

inline bool LongMode() {
  const char* v = std::getenv("GANTRY_LONG");
  return v && std::string(v) == "1";
}

// A count from the environment (e.g. GANTRY_TORTURE_KILLS), else the long or the short default.
inline int CountFromEnv(const char* name, int short_count, int long_count) {
  if (const char* v = std::getenv(name)) return std::atoi(v);
  return LongMode() ? long_count : short_count;
}

struct Tally {
  std::string name;
  long kills = 0;   // agent processes killed and restarted
  long faults = 0;  // faults injected (broker restarts, cut connections, stalls, disk full, ...)
  long inputs = 0;  // hostile inputs or update cycles tried
  long lost = 0;    // data lost or corrupted: must be 0
  std::string extra;

  void Print() const {
    std::printf("[tally] %s: kills survived %ld, faults injected %ld, inputs tried %ld, data lost or corrupted %ld%s%s\n",
                name.c_str(), kills, faults, inputs, lost, extra.empty() ? "" : "; ", extra.c_str());
    std::fflush(stdout);
  }
};

}  // namespace gantry::test
