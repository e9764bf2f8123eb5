// Issue 7, network faults: a series of updates against a real gantryd while
//   - the broker (a real mosquitto) is SIGKILLed or stopped and restarted at seeded random
//     points of each update: before the agent has the command, while it downloads, after it
//     committed;
//   - the block server (tests/tools/block_server.py) cuts connections at seeded random byte
//     offsets of multi-MiB blocks and stalls before bodies.
// What an operator relies on is checked after every update and at the end:
//   - every update ends DONE; every command got a reply (all copies identical) and a final
//     status, and every progress event the agent logged arrived upstream (the operator keeps
//     its session, so what was queued during an outage is delivered);
//   - no block was fetched from byte 0 twice: the block server saw exactly one request without
//     a Range header per block, Range requests after every cut, and served at most the block's
//     size plus the bytes it sent before each cut;
//   - the retained P/state a new subscriber gets names the last revision, and
//     `gantryctl cache verify` passes once the agent stopped.
// Counts: GANTRY_FAULTS_RESTARTS / _CUTS / _STALLS (20 / 20 / 4, or 200 / 200 / 40 with
// GANTRY_LONG=1); seed: GANTRY_FAULTS_SEED (default: the time), printed first.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "system/agent/agent_fixture.hpp"
#include "tools/tally.hpp"

using namespace gantry::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Block {
  std::string id;
  std::string bytes;
  std::vector<std::uint64_t> cuts;  // bytes sent before each cut, in request order
  int stall_ms = 0;
};

struct Update {
  std::string id, rev;
  int seq = 0;
  std::vector<Block> blocks;
};

class NetworkFaults {
 public:
  NetworkFaults() : seed_(Seed()), rng_(seed_) {
    a.config["update"]["commit_window_s"] = 0;
    // No sensors here: the firmware blocks are only fetched and cached.
    a.config["relay"] = {{"transports", json::array()}};
  }

  static unsigned Seed() {
    if (const char* s = std::getenv("GANTRY_FAULTS_SEED")) return static_cast<unsigned>(std::stoul(s));
    return static_cast<unsigned>(std::time(nullptr));
  }

  AgentFixture a;
  const unsigned seed_;
  std::mt19937 rng_;
  Tally tally{"network-faults"};
  long restarts = 0, kills = 0, cuts = 0, stalls = 0, resends = 0;
  std::uint64_t refetched = 0;  // body bytes served beyond the blocks' sizes
  std::map<std::string, int> restarts_at;  // phase of the update when the broker went → count

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  std::string RandomBytes(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i += 4) {
      auto v = rng_();
      for (size_t k = 0; k < 4 && i + k < n; ++k) s[i + k] = static_cast<char>(v >> (8 * k));
    }
    return s;
  }

  // An update of three fresh multi-MiB firmware blocks; each block gets cuts (at random
  // offsets strictly inside it, so every one of them lands), a stall, or nothing, drawn
  // towards the counts still to inject.
  Update MakeUpdate(int n, long cuts_left, long stalls_left) {
    Update u;
    u.id = "u" + std::to_string(n);
    u.rev = "r" + std::to_string(n);
    u.seq = n;
    std::map<std::string, std::string> models;
    for (int b = 0; b < 3; ++b) {
      Block blk;
      blk.bytes = RandomBytes(static_cast<size_t>(Uniform(1 << 20, 4 << 20)));
      blk.id = a.PutBlock(blk.bytes);
      // A link that takes 1 to 2.5 s for the block, so that broker restarts also land while
      // blocks download.
      auto rate = blk.bytes.size() * 1000 / static_cast<size_t>(Uniform(1000, 2500));
      std::string fault = "/_fault?path=/objects/" + blk.id + "&rate_bps=" + std::to_string(rate);
      int kind = Uniform(0, 5);
      if (cuts_left > 0 && kind <= 3) {
        int c = static_cast<int>(std::min<long>(cuts_left, Uniform(1, 3)));
        std::set<std::uint64_t> at;
        while (static_cast<int>(at.size()) < c)
          at.insert(static_cast<std::uint64_t>(Uniform(1, static_cast<int>(blk.bytes.size()) - 1)));
        std::uint64_t prev = 0;
        std::string list;
        for (auto p : at) {
          blk.cuts.push_back(p - prev);
          list += (list.empty() ? "" : ",") + std::to_string(p - prev);
          prev = p;
        }
        cuts_left -= c;
        fault += "&cut_after=" + list + "&count=" + std::to_string(c);
      } else if (stalls_left > 0 && kind == 4) {
        blk.stall_ms = Uniform(300, 1500);
        --stalls_left;
        fault += "&stall_ms=" + std::to_string(blk.stall_ms);
      }
      a.blocks().Control(fault);
      models["m" + std::to_string(b)] = blk.id;
      u.blocks.push_back(std::move(blk));
    }
    std::map<std::string, std::string> objects;
    for (auto& b : u.blocks) objects[b.id] = b.bytes;
    command_[u.id] = json{{"id", u.id}, {"op", "update"},
                          {"revision", a.Sign(a.Revision(u.rev, u.seq, FirmwareState(models), objects))}};
    return u;
  }

  void Send(const std::string& id) { a.Send(command_.at(id)); }

  // online:true messages forwarded live (not the retained copy a (re)subscription gets): one
  // per agent (re)connect, received only once the operator is connected too.
  size_t OnlineCount() {
    size_t n = 0;
    for (auto& r : a.op().Log())
      if (r.topic == a.Prefix() + "/online" && !r.retained && r.body.is_object() && r.body.value("online", false)) ++n;
    return n;
  }

  bool AwaitBrokerSaved() {
    auto db = a.broker().dir() / "mosquitto.db";
    auto since = std::filesystem::file_time_type::clock::now();
    auto end = std::chrono::steady_clock::now() + 10s;
    std::error_code ec;
    while (std::chrono::steady_clock::now() < end) {
      auto t = std::filesystem::last_write_time(db, ec);
      if (!ec && t > since) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::string Phase(const std::string& id) {
    auto events = a.Progress(id);
    if (!events.empty()) return events.back().value("status", "?");
    return a.Replies(id).empty() ? "unanswered" : "replied";
  }

  // SIGKILL (3 in 4) or a clean stop, an outage of up to 500 ms, and a restart; returns once
  // the agent reconnected and the operator received its online message (so nothing the broker
  // holds only in memory for an absent client is lost by the next kill: that would be the
  // broker's loss, not the agent's).
  void RestartBroker(const std::string& id) {
    ++restarts;
    restarts_at[Phase(id)]++;
    size_t before = OnlineCount();
    if (Uniform(0, 3) != 0) {
      a.broker().Kill();
      ++kills;
    } else {
      a.broker().Stop();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(Uniform(0, 500)));  // the outage
    a.broker().Start();
    if (!a.op().WaitFor([&](auto&) { return OnlineCount() > before; }, 60s))
      throw std::runtime_error("the agent did not come back online after broker restart " +
                               std::to_string(restarts) + "; agent log tail:\n" + Tail(a.AgentLog()));
  }

  // The reply of id; a client that saw none re-sends the same id (docs/protocol.md), at most 3 times.
  // Both ends are connected when this runs, so a reply not there after 5 s was never coming:
  // the command died with a broker killed before it reached the agent or the disk.
  bool AwaitReply(const std::string& id) {
    for (int attempt = 0; attempt < 4; ++attempt) {
      if (a.op().WaitFor([&](auto&) { return !a.Replies(id).empty(); }, 5s)) return true;
      if (attempt == 3) break;
      ++resends;
      Send(id);
    }
    return false;
  }

  std::optional<json> AwaitFinal(const std::string& id) {
    std::optional<json> out;
    a.op().WaitFor([&](auto&) {
      for (auto& e : a.Progress(id))
        if (AgentFixture::IsFinal(e.value("status", ""))) {
          out = e;
          return true;
        }
      return false;
    }, 90s);
    return out;
  }

  // What an operator relies on for one finished update; returns "" or what is wrong, and
  // counts re-fetched bytes beyond the bound into tally.lost.
  std::string Check(const Update& u) {
    std::string why;
    auto replies = a.Replies(u.id);
    for (auto& r : replies)
      if (r != replies.front()) why += "replies differ: " + r.dump() + " vs " + replies.front().dump() + "\n";
    if (!replies.empty() && replies.front().value("ok", false) != true) why += "reply " + replies.front().dump() + "\n";
    std::set<std::string> finals;
    for (auto& e : a.Progress(u.id))
      if (AgentFixture::IsFinal(e.value("status", ""))) finals.insert(e.value("status", ""));
    if (finals != std::set<std::string>{"DONE"}) why += "final statuses are not all DONE\n";
    why += MissingEvents(u.id);

    auto stats = json::parse(a.blocks().Control("/_stats"));
    for (auto& b : u.blocks) {
      auto path = "/objects/" + b.id;
      auto served = stats["paths"].value(path, std::uint64_t{0});
      auto requests = stats["requests"].value(path, std::uint64_t{0});
      auto ranged = stats["range_requests"].value(path, std::uint64_t{0});
      std::uint64_t bound = b.bytes.size();
      for (auto c : b.cuts) bound += c;
      std::string what = "block " + b.id.substr(0, 12) + " (" + std::to_string(b.bytes.size()) + " B, " +
                         std::to_string(b.cuts.size()) + " cuts, stall " + std::to_string(b.stall_ms) + " ms): ";
      if (served > bound) {
        tally.lost += static_cast<long>(served - bound);
        why += what + "served " + std::to_string(served) + " B, more than the bound " + std::to_string(bound) + "\n";
      }
      if (served > b.bytes.size()) refetched += served - b.bytes.size();
      if (requests - ranged != 1)
        why += what + std::to_string(requests - ranged) + " requests from byte 0 (of " + std::to_string(requests) + ")\n";
      if (ranged < b.cuts.size())
        why += what + "only " + std::to_string(ranged) + " Range requests after " + std::to_string(b.cuts.size()) + " cuts\n";
      auto cached = a.data_dir() / "objects" / b.id.substr(0, 2) / b.id;
      if (!std::filesystem::exists(cached)) why += what + "not in the cache\n";
      // The server's copy is no longer needed; long runs keep their temp dir small.
      std::filesystem::remove(a.blocks().root() / "objects" / b.id);
    }
    return why;
  }

  // Every progress event the agent logged for id arrived upstream (QoS 1: duplicates allowed).
  std::string MissingEvents(const std::string& id) {
    std::set<std::string> received;
    for (auto& e : a.Progress(id)) received.insert(e.dump());
    std::string missing;
    std::istringstream log(a.AgentLog());
    int emitted = 0;
    for (std::string line; std::getline(log, line);) {
      auto pos = line.find("dispatch: progress ");
      if (pos == std::string::npos) continue;
      auto e = json::parse(line.substr(pos + 19), nullptr, false);
      if (!e.is_object() || e.value("id", "") != id) continue;
      ++emitted;
      if (!received.count(e.dump())) missing += "  " + e.dump() + "\n";
    }
    if (emitted == 0) return "the agent logged no progress event for " + id + "\n";
    return missing.empty() ? "" : "progress events that never arrived:\n" + missing;
  }

  static std::string Tail(const std::string& s, size_t n = 8000) {
    return s.size() > n ? s.substr(s.size() - n) : s;
  }

 private:
  std::map<std::string, json> command_;
};

}  // namespace

TEST(NetworkFaults, UpdatesCompleteThroughBrokerRestartsCutAndStalledDownloads) {
  auto began = std::chrono::steady_clock::now();
  NetworkFaults t;
  const long want_restarts = CountFromEnv("GANTRY_FAULTS_RESTARTS", 20, 200);
  const long want_cuts = CountFromEnv("GANTRY_FAULTS_CUTS", 20, 200);
  const long want_stalls = CountFromEnv("GANTRY_FAULTS_STALLS", 4, 40);
  std::printf("network faults: seed %u (GANTRY_FAULTS_SEED=%u replays it), %ld broker restarts, %ld cuts, %ld stalls\n",
              t.seed_, t.seed_, want_restarts, want_cuts, want_stalls);
  std::fflush(stdout);

  t.a.StartAgent();
  ASSERT_TRUE(t.a.WaitOnline()) << t.a.AgentLog();
  // A broker killed before it first saved its database forgets both clients' sessions, and
  // with them whatever the agent publishes before the operator has subscribed again: the
  // broker's loss, not the agent's. Let it save once (autosave_interval 1) before any kill.
  ASSERT_TRUE(t.AwaitBrokerSaved()) << t.a.broker().log();

  std::string last_rev;
  int last_seq = 0;
  for (int n = 1; t.restarts < want_restarts || t.cuts < want_cuts || t.stalls < want_stalls; ++n) {
    auto u = t.MakeUpdate(n, want_cuts - t.cuts, want_stalls - t.stalls);
    for (auto& b : u.blocks) {
      t.cuts += static_cast<long>(b.cuts.size());
      t.stalls += b.stall_ms > 0;
    }
    // Broker restarts at random points of this update: the first at once or within 600 ms of
    // the command's publication (before the agent has it, queued, or downloading), the others
    // within 800 ms of the previous one's end (downloading, or done).
    long r = std::min<long>(want_restarts - t.restarts, t.Uniform(1, 3));
    std::vector<int> delays;
    for (long i = 0; i < r; ++i) delays.push_back(t.Uniform(0, i == 0 ? 600 : 800));
    // At once: the agent may not have the command yet. (None left once the restarts are spent
    // while cuts or stalls remain.)
    if (t.Uniform(0, 3) == 0 && !delays.empty()) delays[0] = 0;

    t.Send(u.id);
    t.tally.inputs++;
    std::string why;
    try {
      for (int d : delays) {
        std::this_thread::sleep_for(std::chrono::milliseconds(d));
        t.RestartBroker(u.id);
      }
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (why.empty() && !t.AwaitReply(u.id)) why = "no reply after 3 re-sends\n";
    std::optional<json> final_event;
    if (why.empty()) final_event = t.AwaitFinal(u.id);
    if (why.empty() && !final_event) why = "no final status\n";
    if (why.empty() && final_event->value("status", "") != "DONE") why = "ended " + final_event->dump() + "\n";
    if (!why.empty()) {
      t.tally.lost++;
      ADD_FAILURE() << u.id << " (seed " << t.seed_ << "): " << why << "agent log tail:\n" << NetworkFaults::Tail(t.a.AgentLog());
      break;
    }
    why = t.Check(u);
    if (!why.empty()) {
      t.tally.lost++;
      ADD_FAILURE() << u.id << " (seed " << t.seed_ << "): " << why << "agent log tail:\n"
                    << NetworkFaults::Tail(t.a.AgentLog());
    }
    last_rev = u.rev;
    last_seq = u.seq;
  }
  t.tally.faults = t.restarts + t.cuts + t.stalls;

  // A subscriber that arrives now gets the broker's retained state: the last revision.
  Operator late(t.a.broker().uri(), t.a.device, 5, "late-observer");
  json retained;
  EXPECT_TRUE(late.WaitFor([&](const std::vector<Received>& log) {
    for (auto& m : log)
      if (m.topic == t.a.Prefix() + "/state" && m.retained) retained = m.body;
    return !retained.is_null();
  }, 20s)) << "no retained P/state";
  EXPECT_EQ(retained.value("rev", json()), last_rev) << retained.dump();
  EXPECT_EQ(retained.value("seq", 0), last_seq) << retained.dump();
  EXPECT_EQ(t.a.SchemaProblems(), "");

  t.a.StopAgent();
  auto [rc, out] = Sh(BuildDir() + "/gantryctl cache verify --data-dir " + t.a.data_dir().string());
  if (rc != 0) {
    t.tally.lost++;
    ADD_FAILURE() << "cache verify exit " << rc << ": " << out;
  }
  EXPECT_EQ(t.tally.lost, 0);

  std::string phases;
  for (auto& [k, v] : t.restarts_at) phases += (phases.empty() ? "" : ", ") + k + " " + std::to_string(v);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began).count();
  t.tally.extra = "broker restarts " + std::to_string(t.restarts) + " (" + std::to_string(t.kills) +
                  " SIGKILL; by phase: " + phases + "), cut connections " + std::to_string(t.cuts) + ", stalls " +
                  std::to_string(t.stalls) + ", command re-sends " + std::to_string(t.resends) +
                  ", bytes re-fetched " + std::to_string(t.refetched) + ", " + std::to_string(secs) + " s; seed " +
                  std::to_string(t.seed_);
  t.tally.Print();
}
