// Swap downtime on real LXC through a real gantryd (see bench.sh). The container's init logs
// "up-<marker> <t>" when it starts and "down-<marker> <t>" when the halt signal reaches it,
// with t in microseconds from the kernel clock (busybox adjtimex), to a permanent /data that
// every instance of the container shares. So gantryd's swaps and the lxc-stop + lxc-start
// baseline are measured the same way, by the containers themselves.
//   stop-first downtime = up(new) - down(old)      baseline: lxc-stop old; lxc-start new
//   start-first gap     = up(new) - down(old)      negative = overlap (no downtime); its goal is
//                       READY (the new init has logged), as STARTED only means LXC runs the init
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "system/swap/swap_fixture.hpp"

using namespace gantry::test;
using nlohmann::json;

namespace {

const char* kTimedServe =
    "M=$(cat /etc/gantry-marker); "
    "T() { busybox adjtimex | busybox awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{printf \"%d%06d\", s, u}'; }; "
    "echo up-$M $(T) >> /data/events; "
    "trap 'echo down-$M $(T) >> /data/events; exit 0' PWR; while :; do sleep 1 & wait $!; done";

struct Ev {
  std::string what;
  long long us;
};

std::vector<Ev> Parse(const std::vector<std::string>& lines, size_t from) {
  std::vector<Ev> out;
  for (size_t i = from; i < lines.size(); ++i) {
    auto sp = lines[i].find(' ');
    if (sp == std::string::npos) continue;
    out.push_back({lines[i].substr(0, sp), std::stoll(lines[i].substr(sp + 1))});
  }
  return out;
}

// up(new) - down(old) in ms over the events after `from`.
double Gap(const std::vector<std::string>& lines, size_t from, const std::string& old_m, const std::string& new_m) {
  long long down = -1, up = -1;
  for (auto& e : Parse(lines, from)) {
    if (e.what == "down-" + old_m) down = e.us;
    if (e.what == "up-" + new_m) up = e.us;
  }
  if (down < 0 || up < 0) throw std::runtime_error("missing events for " + old_m + " -> " + new_m);
  return (up - down) / 1000.0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string Join(const std::vector<double>& v) {
  std::string s;
  char buf[32];
  for (double x : v) {
    std::snprintf(buf, sizeof buf, "%s%.1f", s.empty() ? "" : " ", x);
    s += buf;
  }
  return s;
}

}  // namespace

TEST(SwapBench, Downtime) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.config["update"]["commit_window_s"] = 1;
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  int rounds = std::getenv("GANTRY_BENCH_ROUNDS") ? std::atoi(std::getenv("GANTRY_BENCH_ROUNDS")) : 5;
  auto def = [&](const std::string& marker, const std::string& strategy) {
    // start-first waits for READY = the new init has logged "up" (STARTED only means LXC runs
    // the init). restart_policy system: the agent must not restart what the baseline stops.
    json logged_up = {{"exec", {"/bin/sh", "-c", "grep -q up-$(cat /etc/gantry-marker) /data/events"}},
                      {"interval_s", 1}};
    bool ready = strategy == "start-first";
    return ContainerDef{.name = "svc", .marker = marker, .init = kTimedServe, .goal = ready ? "READY" : "STARTED",
                        .strategy = strategy, .health = ready ? logged_up : json(), .permanent_data = true,
                        .restart_policy = "system"};
  };
  int seq = 1;
  ASSERT_EQ(f.Update("u1", "r1", seq, f.State({def("m1", "stop-first")}))["status"], "DONE") << f.a.AgentLog();
  auto lxc = [&](const std::string& args) {
    auto [rc, out] = Sh(args + " -P " + ShQuote(f.lxcpath().string()));
    if (rc != 0) throw std::runtime_error(args + ": " + out);
  };
  // lxc-start returns before the init has logged: wait for the lines.
  auto wait_lines = [&](size_t from, size_t n) {
    for (int k = 0; k < 500 && Parse(f.Events("svc"), from).size() < n; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  };
  std::vector<double> stop_first, baseline, start_first;
  std::string prev_m = "m1";
  for (int i = 0; i < rounds; ++i) {
    for (std::string strategy : {"stop-first", "start-first"}) {
      ++seq;
      std::string m = "m" + std::to_string(seq);
      std::string old_inst = f.RunningInstance("svc");
      size_t from = f.Events("svc").size();
      auto e = f.Update("u" + std::to_string(seq), "r" + std::to_string(seq), seq, f.State({def(m, strategy)}));
      ASSERT_EQ(e["status"], "DONE") << e.dump() << f.a.AgentLog();
      (strategy == "stop-first" ? stop_first : start_first).push_back(Gap(f.Events("svc"), from, prev_m, m));
      // Baseline on the same two instances: lxc-stop the new one, lxc-start the old one, and back.
      std::string new_inst = f.RunningInstance("svc");
      if (strategy == "stop-first") {
        from = f.Events("svc").size();
        lxc("lxc-stop -n " + new_inst);
        lxc("lxc-start -d -n " + old_inst);
        lxc("lxc-wait -s RUNNING -t 10 -n " + old_inst);
        wait_lines(from, 2);
        baseline.push_back(Gap(f.Events("svc"), from, m, prev_m));
        from = f.Events("svc").size();
        lxc("lxc-stop -n " + old_inst);
        lxc("lxc-start -d -n " + new_inst);
        lxc("lxc-wait -s RUNNING -t 10 -n " + new_inst);
        wait_lines(from, 2);
        baseline.push_back(Gap(f.Events("svc"), from, prev_m, m));
      }
      prev_m = m;
    }
  }
  double sf = Median(stop_first), bl = Median(baseline), st = Median(start_first);
  std::printf("swap: stop-first downtime ms (old halted -> new init up): median %.1f  [%s]\n", sf, Join(stop_first).c_str());
  std::printf("swap: baseline lxc-stop + lxc-start ms (same measure):     median %.1f  [%s]\n", bl, Join(baseline).c_str());
  std::printf("swap: stop-first / baseline: %.2fx (target <= 1.2x and < 100 ms; containers unprivileged)\n", bl > 0 ? sf / bl : 0.0);
  std::printf("swap: start-first gap ms (negative = overlap, no downtime): median %.1f  [%s]\n", st,
              Join(start_first).c_str());
}
