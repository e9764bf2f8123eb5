// Command intake against a real mosquitto and a real gantryd: publish -> QUEUED latency over
// a stream of update commands, alone (N, default 10,000), while an update downloads a large
// block (1,000) and while one sits in TESTING (1,000). The baseline is measured in the same
// run on the same file system: one fsync'd SQLite commit (WAL, synchronous=FULL), which is
// what every accepted command costs at least. Also the idle agent's private memory (RssAnon)
// and its wake-ups per second (context switches of all its threads over 30 s).
// Prints figures and ratios; fails only when a command gets no QUEUED at all.
#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "store/db.hpp"
#include "system/agent/agent_fixture.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// A /proc/<pid>/status field in KiB ("VmRSS", "RssAnon", "RssFile").
long StatusField(const std::string& file, const std::string& field) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

std::string Comm(const std::string& dir) {
  std::ifstream f(dir + "/comm");
  std::string s;
  std::getline(f, s);
  return s;
}

// Context switches (voluntary + involuntary) per thread name, over every thread of pid.
std::map<std::string, long> Switches(pid_t pid) {
  std::map<std::string, long> out;
  std::string base = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(base.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string t = base + "/" + e->d_name;
    out[Comm(t) + "/" + e->d_name] += StatusField(t + "/status", "voluntary_ctxt_switches") +
                                      StatusField(t + "/status", "nonvoluntary_ctxt_switches");
  }
  closedir(d);
  return out;
}

struct Figures {
  double p50, p99, max;
};

Figures Percentiles(std::vector<double> ms) {
  if (ms.empty()) return {0, 0, 0};
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))]; };
  return {pct(0.50), pct(0.99), ms.back()};
}

// p50 of one-row commits to a SQLite database as gantryd opens its own.
double FsyncCommitP50(const std::filesystem::path& dir) {
  auto db = store::Db::Open(dir / "fsync-baseline.db");
  if (!db) {
    std::fprintf(stderr, "baseline db: %s\n", db.error().String().c_str());
    std::exit(1);
  }
  (void)db->Exec("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)");
  std::vector<double> ms;
  for (int i = 0; i < 300; ++i) {
    auto start = Clock::now();
    (void)db->Run("INSERT INTO t(v) VALUES (?)", std::string(200, 'x'));
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  return Percentiles(ms).p50;
}

// Sends the commands one after another, each when the previous one's answer arrived: a
// message from the agent on <prefix>/<topic> with its id and, when status is not empty, that
// status. (The operator also hears its own command on <prefix>/cmd: never an answer.)
std::vector<double> Latencies(AgentFixture& a, const std::vector<json>& commands, const std::string& topic,
                              const std::string& status) {
  const std::string answer_topic = a.Prefix() + "/" + topic;
  std::vector<double> ms;
  ms.reserve(commands.size());
  for (auto& cmd : commands) {
    std::string id = cmd["id"];
    size_t from = a.op().LogSize();
    auto start = Clock::now();
    a.Send(cmd);
    bool ok = a.op().WaitFor(
        [&](const std::vector<Received>& log) {
          for (size_t i = from; i < log.size(); ++i)
            if (log[i].topic == answer_topic && log[i].body.is_object() && log[i].body.value("id", "") == id &&
                (status.empty() || log[i].body.value("status", "") == status))
              return true;
          return false;
        },
        std::chrono::seconds(10));
    if (!ok) {
      std::fprintf(stderr, "no %s for %s\n%s\n", status.empty() ? "answer" : status.c_str(), id.c_str(),
                   a.AgentLog().c_str());
      std::exit(1);
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (ms.back() >= 200) std::fprintf(stderr, "slow: %s answered after %.1f ms\n", id.c_str(), ms.back());
  }
  return ms;
}

std::vector<double> QueueLatencies(AgentFixture& a, const std::vector<json>& commands) {
  return Latencies(a, commands, "progress", "QUEUED");
}

std::vector<json> Updates(AgentFixture& a, const std::string& prefix, int n, int first_seq, const json& state,
                          const std::map<std::string, std::string>& blocks) {
  std::vector<json> out;
  for (int i = 0; i < n; ++i) {
    std::string rev = prefix + std::to_string(i);
    out.push_back({{"id", rev}, {"op", "update"}, {"revision", a.Sign(a.Revision(rev, first_seq + i, state, blocks))}});
  }
  return out;
}

void Report(const char* what, int n, const std::vector<double>& ms, double fsync_p50) {
  if (ms.empty()) return;  // a run asked for none of these
  auto f = Percentiles(ms);
  std::printf("%-34s %6d cmds  p50 %6.2f ms  p99 %7.2f ms  max %7.2f ms   p99 = %.1fx fsync p50 (target <= 5x), max %s 200 ms\n",
              what, n, f.p50, f.p99, f.max, f.p99 / fsync_p50, f.max < 200 ? "<" : ">=");
}

// The agent's own share: the dispatcher logs (debug) how long it held each command, from the
// message's arrival to its reply handed to the client; the rest is the broker both ways.
void ReportHandling(const std::string& agent_log, std::size_t from_line) {
  std::vector<double> ms;
  std::istringstream in(agent_log);
  std::string line;
  const std::string key = "command handled in ";
  for (std::size_t n = 0; std::getline(in, line); ++n) {
    auto at = line.find(key);
    if (n >= from_line && at != std::string::npos) ms.push_back(std::atof(line.c_str() + at + key.size()) / 1000.0);
  }
  if (ms.empty()) return;
  auto f = Percentiles(ms);
  std::printf("  of which inside gantryd (message in -> reply out), %zu cmds: p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
              ms.size(), f.p50, f.p99, f.max);
}

std::size_t LineCount(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

bool SawStatusAfter(AgentFixture& a, const std::string& id, const std::string& status) {
  for (auto& r : a.op().Log())
    if (r.body.is_object() && r.body.value("id", "") == id && r.body.value("status", "") == status) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 10000;
  int n_busy = argc > 2 ? std::atoi(argv[2]) : 1000;
  int idle_s = argc > 3 ? std::atoi(argv[3]) : 30;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // figures appear as they are measured
  AgentFixture a(5);
  a.config["update"]["commit_window_s"] = 0;
  a.StartAgent();
  if (!a.WaitOnline()) {
    std::fprintf(stderr, "agent did not come online:\n%s\n", a.AgentLog().c_str());
    return 1;
  }
  double fsync_p50 = FsyncCommitP50(a.dir());
  std::printf("baseline: one fsync'd SQLite commit (WAL, synchronous=FULL) p50 %.2f ms\n", fsync_p50);

  // Idle: nothing to do, connected. Settle first (the online/state publishes).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  pid_t pid = a.agent().pid();
  std::string status = "/proc/" + std::to_string(pid) + "/status";
  long idle_anon = StatusField(status, "RssAnon"), idle_file = StatusField(status, "RssFile");
  auto before = Switches(pid);
  std::this_thread::sleep_for(std::chrono::seconds(idle_s));
  auto after = Switches(pid);
  long total = 0, paho = 0;
  std::string per_thread;
  for (auto& [t, v] : after) {
    long d = v - (before.count(t) ? before[t] : 0);
    total += d;
    // Paho C's own send/receive threads poll once a second whatever the agent does.
    if (t.rfind("MQTTAsync", 0) == 0) paho += d;
    if (d > 0) per_thread += " " + t + "=" + std::to_string(d);
  }
  std::printf("idle gantryd: RssAnon %.2f MiB (target <= 4 MiB), RssFile %.2f MiB; wake-ups %.2f/s over %d s, "
              "%.2f/s outside Paho's threads (target <= 0.5/s); per thread:%s\n",
              idle_anon / 1024.0, idle_file / 1024.0, static_cast<double>(total) / idle_s, idle_s,
              static_cast<double>(total - paho) / idle_s, per_thread.c_str());

  // 1. A stream of update commands (empty revisions: the agent's intake and engine only).
  json empty = {{"#spec", "pantavisor-service-system@1"}};
  std::vector<double> ms;
  if (n > 0) {  // 0 skips the stream
    auto stream = Updates(a, "b", n, 1, empty, {});
    auto log_from = LineCount(a.AgentLog());
    ms = QueueLatencies(a, stream);
    Report("update stream", n, ms, fsync_p50);
    ReportHandling(a.AgentLog(), log_from);
    if (!a.op().WaitFor([&](auto&) { return SawStatusAfter(a, stream.back()["id"], "DONE"); },
                        std::chrono::seconds(60))) {
      std::fprintf(stderr, "the last update of the stream did not end DONE\n%s\n", a.AgentLog().c_str());
      return 1;
    }
  }

  // 2. While an update downloads a large block: every command names the same block, so each
  // newer one supersedes the download and resumes it (Range) -- a download runs throughout.
  std::string big(64 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  auto big_id = a.PutBlock(big);
  a.blocks().Control("/_fault?path=/objects/" + big_id + "&rate_bps=4000000");
  json big_state = FirmwareState({{"m1", big_id}});
  auto downloads = Updates(a, "d", n_busy, n + 2, big_state, {{big_id, big}});
  auto starter = a.Sign(a.Revision("d-start", n + 1, big_state, {{big_id, big}}));
  a.Send({{"id", "d-start"}, {"op", "update"}, {"revision", starter}});
  if (!a.op().WaitFor([&](auto&) { return SawStatusAfter(a, "d-start", "DOWNLOADING"); }, std::chrono::seconds(30))) {
    std::fprintf(stderr, "no download started\n%s\n", a.AgentLog().c_str());
    return 1;
  }
  ms = QueueLatencies(a, downloads);
  Report("while a 64 MiB block downloads", n_busy, ms, fsync_p50);
  a.blocks().Control("/_reset");

  // 3. While an update sits in TESTING: a restarted agent with a long commit window.
  a.StopAgent();
  a.config["update"]["commit_window_s"] = 600;
  size_t restart_at = a.op().LogSize();
  a.StartAgent();
  if (!a.WaitOnline()) {
    std::fprintf(stderr, "agent did not come online again:\n%s\n", a.AgentLog().c_str());
    return 1;
  }
  int seq = n + n_busy + 10;
  a.Send({{"id", "t-start"}, {"op", "update"}, {"revision", a.Sign(a.Revision("t-start", seq, empty, {}))}});
  // The download the stop interrupted resumes first and may be the one that sits in TESTING
  // (t-start then waits QUEUED behind it); either way an update is TESTING.
  auto testing_seen = [&](const std::vector<Received>& log) {
    for (size_t i = restart_at; i < log.size(); ++i)
      if (log[i].body.is_object() && log[i].body.value("status", "") == "TESTING") return true;
    return false;
  };
  if (!a.op().WaitFor(testing_seen, std::chrono::seconds(120))) {
    std::fprintf(stderr, "no TESTING\n%s\n", a.AgentLog().c_str());
    return 1;
  }
  auto testing = Updates(a, "t", n_busy, seq + 1, empty, {});
  ms = QueueLatencies(a, testing);
  Report("while an update is TESTING", n_busy, ms, fsync_p50);
  // 4. The transport's share: get-state round trips (broker both ways, the command's ledger
  // row and the reply's outbox commit), the cheapest command there is.
  std::vector<json> pings;
  for (int i = 0; i < std::max(n_busy, 100); ++i) pings.push_back({{"id", "ping-" + std::to_string(i)}, {"op", "get-state"}});
  Report("get-state round trip (baseline)", static_cast<int>(pings.size()), Latencies(a, pings, "reply", ""), fsync_p50);
  long busy_anon = StatusField("/proc/" + std::to_string(a.agent().pid()) + "/status", "RssAnon");
  std::printf("gantryd RssAnon after the runs: %.2f MiB\n", busy_anon / 1024.0);
  a.StopAgent();
  return 0;
}
