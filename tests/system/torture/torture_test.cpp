// Issue 7, crash torture: update cycles of good and bad revisions against a real gantryd with
// real LXC containers, the agent SIGKILLed at seeded random moments in every phase and
// restarted each time. After every restart the test waits for the command's final status and
// checks what an operator relies on:
//   - exactly one revision's containers run, all of them: one instance per container, each
//     with the rootfs (marker file) of the revision the agent reports, never a mix;
//   - the revision is the one the command's outcome implies (DONE → new, otherwise previous);
//   - `gantryctl cache verify` passes and no transaction is left unfinished in SQLite;
//   - every command sent got a reply and a final status upstream, and repeated deliveries of
//     a final status (at-least-once) never disagree. A command the agent died before
//     accepting (no reply) is re-sent with the same id, as docs/protocol.md tells clients to.
// Counts: GANTRY_TORTURE_KILLS (default 30, 300 with ./dev.sh test --long);
// seed: GANTRY_TORTURE_SEED (default: the time), printed first so a failure can be replayed.
#include <gtest/gtest.h>

#include <random>

#include "system/swap/swap_fixture.hpp"
#include "tools/tally.hpp"

using namespace gantry::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Where a kill lands: right after publishing (before the agent may have seen the command),
// on a progress event of a phase (plus jitter), after the final status, or again while the
// restarted agent is still recovering.
enum class KillAt { kSent, kQueued, kDownloading, kStaged, kSwitching, kTesting, kRollingBack, kFinal };
constexpr const char* kKillNames[] = {"sent", "queued", "downloading", "staged", "switching",
                                      "testing", "rolling-back", "final"};

struct Rev {
  std::string rev;
  int seq = 0;
  std::string alpha, beta;  // markers of the two containers' images
  bool bad = false;         // alpha exits at once: TESTING fails and the agent rolls back
  json state;
};

class Torture {
 public:
  Torture() : seed_(Seed()), rng_(seed_) {
    f_.a.config["update"]["commit_window_s"] = 2;
    f_.a.config["update"]["stop_timeout_s"] = 2;
  }

  static unsigned Seed() {
    if (const char* s = std::getenv("GANTRY_TORTURE_SEED")) return static_cast<unsigned>(std::stoul(s));
    return static_cast<unsigned>(std::time(nullptr));
  }

  SwapFixture f_;
  unsigned seed_;
  std::mt19937 rng_;
  Tally tally{"crash-torture"};
  std::map<std::string, int> kills_at;  // kill point → kills
  std::map<std::string, int> outcomes;  // final status (good/bad revision) → cycles
  std::vector<std::string> sent_ids;
  int resends = 0;  // commands re-sent because no reply came (the agent died before accepting)
  Rev current;  // the committed revision the containers must show

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  Rev MakeRev(int n, bool bad) {
    Rev r;
    r.rev = "r" + std::to_string(n);
    r.seq = n;
    r.bad = bad;
    // A small pool of images: most cycles change one container, some both, some none.
    r.alpha = bad ? "alpha-bad" : "a" + std::to_string(Uniform(1, 3));
    r.beta = "b" + std::to_string(Uniform(1, 3));
    std::vector<ContainerDef> defs = {
        {.name = "alpha", .marker = r.alpha, .init = bad ? "exit 1" : kServe},
        {.name = "beta", .marker = r.beta}};
    r.state = f_.State(defs);
    // A fresh firmware block per revision, served slowly, so every cycle has a DOWNLOADING
    // phase to land in (no relay transport is configured: it is only fetched and cached).
    std::string fw(192 * 1024, '\0');
    for (auto& c : fw) c = static_cast<char>(rng_());
    auto fw_id = f_.a.PutBlock(fw);
    fw_blocks_[fw_id] = fw;
    r.state["_sensors/torture/firmware.bin"] = fw_id;
    r.state["_sensors/torture/sensor.json"] = {{"version", "1.0." + std::to_string(n)}, {"seq", n}, {"targets", {"*"}}};
    f_.a.blocks().Control("/_fault?path=/objects/" + fw_id + "&rate_bps=400000");
    return r;
  }

  void Publish(const std::string& id, const Rev& r) {
    std::map<std::string, std::string> blocks;
    for (auto& [k, v] : r.state.items())
      if (v.is_string() && v.get<std::string>().size() == 64) blocks[v] = BlockBytes(v);
    json cmd = {{"id", id}, {"op", "update"}, {"revision", f_.a.Sign(f_.a.Revision(r.rev, r.seq, r.state, blocks))}};
    f_.a.Send(cmd);
    sent_ids.push_back(id);
    sent_[id] = cmd;
  }

  // docs/protocol.md: Paho acknowledges a QoS 1 message before gantryd has committed it, so a kill in
  // between loses a command that was never accepted; a client that saw no reply re-sends the
  // same id, as an operator's tool does.
  void ResendIfUnanswered(const std::string& id) {
    if (f_.a.op().WaitFor([&](auto&) { return !f_.a.Replies(id).empty(); }, 10s)) return;
    f_.a.Send(sent_[id]);
    resends++;
  }

  bool SawEvent(const std::string& id, const std::string& status, const std::string& msg_prefix = "") {
    for (auto& e : f_.a.Progress(id))
      if (e.value("status", "") == status && e.value("msg", "").rfind(msg_prefix, 0) == 0) return true;
    return false;
  }
  bool SawFinal(const std::string& id) {
    for (auto& e : f_.a.Progress(id))
      if (AgentFixture::IsFinal(e.value("status", ""))) return true;
    return false;
  }

  // Waits for the kill point's event (or the final status, whichever comes first). Returns the
  // point the kill really lands at.
  KillAt AwaitKillPoint(const std::string& id, KillAt at) {
    if (at == KillAt::kSent) return at;
    auto reached = [&]() -> bool {
      switch (at) {
        case KillAt::kQueued: return !f_.a.Replies(id).empty();
        case KillAt::kDownloading: return SawEvent(id, "DOWNLOADING");
        case KillAt::kStaged: return SawEvent(id, "INPROGRESS", "staged");
        case KillAt::kSwitching: return SawEvent(id, "INPROGRESS", "switching");
        case KillAt::kTesting: return SawEvent(id, "TESTING");
        case KillAt::kRollingBack: return SawEvent(id, "INPROGRESS", "rolling back");
        default: return false;
      }
    };
    f_.a.op().WaitFor([&](auto&) { return reached() || SawFinal(id); }, 60s);
    return reached() ? at : KillAt::kFinal;
  }

  void KillAndRestart(KillAt at) {
    f_.a.KillAgent();
    tally.kills++;
    kills_at[kKillNames[static_cast<int>(at)]]++;
    f_.a.StartAgent();
  }

  // The invariants after a command's final status. Returns "" or what is wrong.
  std::string Check(const std::string& id, const Rev& expect) {
    std::string why;
    // Only a P/state published after the final status counts: the retained one from before a
    // kill, or the first one of a restarted agent (before it looked at its containers), are not
    // the answer. The state checked is the one the wait saw.
    json st;
    f_.a.op().WaitFor([&](const std::vector<Received>& log) {
      st = StateAfterFinal(log, id);
      return st.is_object() && SwapFixture::AllRunning(st, expect.rev, 2) && st.value("status", "") != "INPROGRESS" &&
             st.value("status", "") != "DOWNLOADING" && st.value("status", "") != "TESTING";
    }, 60s);
    if (!st.is_object() || !SwapFixture::AllRunning(st, expect.rev, 2)) why += "P/state is not all of " + expect.rev + " running: " + st.dump() + "\n";
    // The host: exactly one instance per container, showing the expected revision's image.
    auto running = f_.Running();
    std::map<std::string, std::string> want = {{"alpha", expect.alpha}, {"beta", expect.beta}};
    if (running.size() != 2) why += "running instances: " + Join(running) + "\n";
    for (auto& i : running) {
      auto name = i.substr(0, i.find('-'));
      auto marker = Slurp(f_.lxcpath() / i / "rootfs" / "etc" / "gantry-marker");
      while (!marker.empty() && marker.back() == '\n') marker.pop_back();
      if (!want.count(name) || marker != want[name])
        why += "instance " + i + " shows image '" + marker + "', " + expect.rev + " has '" + want[name] + "'\n";
    }
    auto [vrc, vout] = Sh(BuildDir() + "/gantryctl cache verify --data-dir " + ShQuote(f_.a.data_dir().string()));
    if (vrc != 0) why += "cache verify exit " + std::to_string(vrc) + ": " + vout + "\n";
    auto [src, sout] = Sh("sqlite3 " + ShQuote((f_.a.data_dir() / "gantry.db").string()) +
                          " \"SELECT cmd_id || ' ' || state FROM transactions WHERE state NOT IN "
                          "('COMMITTED','WONTGO','ROLLED_BACK','CANCELLED')\"");
    if (src != 0 || !sout.empty()) why += "unfinished transactions (rc " + std::to_string(src) + "): " + sout + "\n";
    if (!why.empty()) why = "after " + id + ":\n" + why;
    return why;
  }

  // The newest P/state published after the first final status of id (null when none yet).
  json StateAfterFinal(const std::vector<Received>& log, const std::string& id) {
    const auto prefix = f_.a.Prefix();
    bool after = false;
    json st;
    for (auto& r : log) {
      if (!after && r.topic == prefix + "/progress" && r.body.is_object() && r.body.value("id", "") == id &&
          AgentFixture::IsFinal(r.body.value("status", "")))
        after = true;
      else if (after && r.topic == prefix + "/state")
        st = r.body;
    }
    return st;
  }

  // Every command sent has a reply and a final status; repeated finals agree.
  std::string CheckAllFinal() {
    std::string why;
    for (auto& id : sent_ids) {
      if (f_.a.Replies(id).empty()) why += id + ": no reply\n";
      std::set<std::string> finals;
      for (auto& e : f_.a.Progress(id))
        if (AgentFixture::IsFinal(e.value("status", ""))) finals.insert(e.value("status", ""));
      if (finals.size() != 1) why += id + ": final statuses " + Join(finals) + "\n";
    }
    return why;
  }

  static std::string Join(const std::set<std::string>& s) {
    std::string out = "{";
    for (auto& x : s) out += (out.size() > 1 ? ", " : "") + x;
    return out + "}";
  }

 private:
  std::string BlockBytes(const std::string& id) {
    if (fw_blocks_.count(id)) return fw_blocks_[id];
    return Slurp(f_.a.blocks().root() / "objects" / id);
  }
  std::map<std::string, std::string> fw_blocks_;
  std::map<std::string, json> sent_;
};

}  // namespace

TEST(CrashTorture, SeededKillsInEveryPhaseLeaveOneWholeRevisionRunning) {
  Torture t;
  ASSERT_EQ(t.f_.reason(), "") << "LXC cannot run here: " << t.f_.reason();
  const int kills = CountFromEnv("GANTRY_TORTURE_KILLS", 30, 300);
  std::printf("crash torture: seed %u (GANTRY_TORTURE_SEED=%u replays it), %d kills\n", t.seed_, t.seed_, kills);
  std::fflush(stdout);

  t.f_.a.StartAgent();
  ASSERT_TRUE(t.f_.a.WaitOnline()) << t.f_.a.AgentLog();
  t.current = t.MakeRev(1, false);
  t.Publish("c1", t.current);
  ASSERT_EQ(t.f_.a.WaitFinal("c1")["status"], "DONE") << t.f_.a.AgentLog();
  ASSERT_EQ(t.Check("c1", t.current), "") << t.f_.a.AgentLog();

  for (int n = 2; t.tally.kills < kills; ++n) {
    bool bad = t.Uniform(0, 3) == 0;
    Rev next = t.MakeRev(n, bad);
    std::string id = "c" + std::to_string(n);
    // Any point of the cycle; rolling back only happens in bad ones.
    std::vector<KillAt> points = {KillAt::kSent, KillAt::kQueued, KillAt::kDownloading, KillAt::kStaged,
                                  KillAt::kSwitching, KillAt::kTesting, KillAt::kFinal};
    if (bad) points.push_back(KillAt::kRollingBack);
    auto at = points[static_cast<size_t>(t.Uniform(0, static_cast<int>(points.size()) - 1))];
    t.Publish(id, next);
    at = t.AwaitKillPoint(id, at);
    std::this_thread::sleep_for(std::chrono::milliseconds(t.Uniform(0, 300)));
    t.KillAndRestart(at);
    // Sometimes kill the restarted agent again while it recovers.
    if (t.tally.kills < kills && t.Uniform(0, 4) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(t.Uniform(100, 1500)));
      t.f_.a.KillAgent();
      t.tally.kills++;
      t.kills_at["recovering"]++;
      t.f_.a.StartAgent();
    }
    t.tally.inputs++;
    t.ResendIfUnanswered(id);

    json final_event;
    try {
      final_event = t.f_.a.WaitFinal(id, 120s);
    } catch (const std::exception& e) {
      t.tally.lost++;
      ADD_FAILURE() << "cycle " << n << " (kill at " << kKillNames[static_cast<int>(at)] << ", seed " << t.seed_
                    << "): " << e.what();
      break;
    }
    auto status = final_event.value("status", "");
    t.outcomes[status + (bad ? " (bad)" : " (good)")]++;
    if (status == "DONE") {
      if (bad) {
        t.tally.lost++;
        ADD_FAILURE() << id << " committed a revision whose container exits: " << final_event.dump();
      }
      t.current = next;
    } else if (!bad && !(status == "ERROR" && final_event.value("msg", "").find("agent restarted during") != std::string::npos)) {
      // A good revision fails only when power was lost while it touched the containers.
      t.tally.lost++;
      ADD_FAILURE() << id << " (kill at " << kKillNames[static_cast<int>(at)] << ") ended " << final_event.dump();
    }
    auto why = t.Check(id, t.current);
    if (!why.empty()) {
      t.tally.lost++;
      ADD_FAILURE() << "cycle " << n << " (kill at " << kKillNames[static_cast<int>(at)] << ", seed " << t.seed_
                    << "): " << why << t.f_.a.AgentLog().substr(std::max<long>(0, static_cast<long>(t.f_.a.AgentLog().size()) - 6000));
      break;
    }
  }
  auto why = t.CheckAllFinal();
  if (!why.empty()) {
    t.tally.lost++;
    ADD_FAILURE() << why;
  }
  EXPECT_EQ(t.tally.lost, 0);
  std::string per_point;
  for (auto& [k, v] : t.kills_at) per_point += (per_point.empty() ? "" : ", ") + k + " " + std::to_string(v);
  std::string per_outcome;
  for (auto& [k, v] : t.outcomes) per_outcome += (per_outcome.empty() ? "" : ", ") + k + " " + std::to_string(v);
  t.tally.extra = "kills by point: " + per_point + "; outcomes: " + per_outcome + "; re-sent unanswered " + std::to_string(t.resends) + "; seed " + std::to_string(t.seed_);
  t.tally.Print();
}
