// Issue "Transactional container swap on LXC, with automatic rollback": a real gantryd, a real
// mosquitto, a real block server and real LXC containers from busybox squashfs images. The
// test acts as the operator over MQTT and checks the host with lxc-ls and lxc-info.
#include <gtest/gtest.h>

#include "swap_fixture.hpp"

using namespace gantry::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string Msg(const json& e) { return e.value("msg", ""); }

bool HasEvent(AgentFixture& a, const std::string& id, const std::string& status, const std::string& msg_part = "") {
  for (auto& e : a.Progress(id))
    if (e.value("status", "") == status && Msg(e).find(msg_part) != std::string::npos) return true;
  return false;
}

}  // namespace

// rev 1 (two containers) → DONE; rev 2 changes one → only it restarts; rev 3 whose container
// exits two seconds after start → ERROR, rolled back to rev 2 with its containers running.
TEST(Swap, OnlyChangedContainersRestartAndAFailingRevisionRollsBack) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  // The failing container exits 2 s after start: the commit window must outlast that.
  f.a.config["update"]["commit_window_s"] = 4;
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();

  auto r1 = f.State({{.name = "alpha", .marker = "a1"}, {.name = "beta", .marker = "b1"}});
  auto e1 = f.Update("u1", "r1", 1, r1);
  ASSERT_EQ(e1["status"], "DONE") << e1.dump() << f.a.AgentLog();
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 2); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r1", 2)) << st.dump();
  auto alpha1 = f.RunningInstance("alpha"), beta1 = f.RunningInstance("beta");
  ASSERT_NE(alpha1, "");
  ASSERT_NE(beta1, "");
  EXPECT_EQ(f.Running(), (std::set<std::string>{alpha1, beta1}));
  int alpha_pid = f.InitPid(alpha1), beta_pid = f.InitPid(beta1);
  ASSERT_GT(alpha_pid, 0);
  ASSERT_GT(beta_pid, 0);

  auto r2 = f.State({{.name = "alpha", .marker = "a1"}, {.name = "beta", .marker = "b2"}});
  auto e2 = f.Update("u2", "r2", 2, r2);
  ASSERT_EQ(e2["status"], "DONE") << e2.dump() << f.a.AgentLog();
  EXPECT_TRUE(HasEvent(f.a, "u2", "INPROGRESS", "switching 1 container(s)"));
  st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r2", 2); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r2", 2)) << st.dump();
  auto beta2 = f.RunningInstance("beta");
  EXPECT_NE(beta2, beta1);
  EXPECT_EQ(f.RunningInstance("alpha"), alpha1) << "unchanged alpha got a new instance";
  EXPECT_EQ(f.InitPid(alpha1), alpha_pid) << "unchanged alpha was restarted";
  EXPECT_EQ(f.Running(), (std::set<std::string>{alpha1, beta2}));
  int beta2_pid = f.InitPid(beta2);

  auto r3 = f.State({{.name = "alpha", .marker = "a3", .init = kExitAfter2s}, {.name = "beta", .marker = "b2"}});
  auto e3 = f.Update("u3", "r3", 3, r3);
  ASSERT_EQ(e3["status"], "ERROR") << e3.dump() << f.a.AgentLog();
  EXPECT_NE(Msg(e3).find("rolled back to r2"), std::string::npos) << e3.dump();
  EXPECT_NE(Msg(e3).find("alpha"), std::string::npos) << e3.dump();
  st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r2", 2); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r2", 2)) << st.dump();
  EXPECT_EQ(st["seq"], 2);
  EXPECT_EQ(f.Running(), (std::set<std::string>{alpha1, beta2}));
  EXPECT_EQ(f.InitPid(beta2), beta2_pid) << "beta did not change in r3 and must not restart";
  // Only the kept revisions' instances stay prepared (mounted): r2's and r1's.
  auto [rc, all] = Sh("lxc-ls -1 -P " + ShQuote(f.lxcpath().string()));
  std::istringstream lines(all);
  int alphas = 0;
  for (std::string l; std::getline(lines, l);) alphas += l.rfind("alpha-", 0) == 0;
  EXPECT_EQ(alphas, 1) << "r3's alpha was not released:\n" << all << f.a.AgentLog();
}

// A READY goal whose health check never passes: rollback once the group timeout is over.
TEST(Swap, ReadyGoalThatNeverPassesRollsBackAfterTheGroupTimeout) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  json groups = json::array({{{"name", "app"}, {"timeout", 3}}});
  auto e1 = f.Update("u1", "r1", 1, f.State({{.name = "web", .marker = "w1"}}, groups));
  ASSERT_EQ(e1["status"], "DONE") << e1.dump() << f.a.AgentLog();
  auto web1 = f.RunningInstance("web");

  json never = {{"exec", {"/bin/false"}}, {"interval_s", 1}, {"timeout_s", 1}};
  auto t0 = std::chrono::steady_clock::now();
  auto e2 = f.Update("u2", "r2", 2, f.State({{.name = "web", .marker = "w2", .goal = "READY", .health = never}}, groups));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(e2["status"], "ERROR") << e2.dump() << f.a.AgentLog();
  EXPECT_NE(Msg(e2).find("did not reach READY within 3 s"), std::string::npos) << e2.dump();
  EXPECT_NE(Msg(e2).find("rolled back to r1"), std::string::npos) << e2.dump();
  EXPECT_GE(took, 3s);
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 1); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r1", 1)) << st.dump();
  EXPECT_EQ(f.Running(), (std::set<std::string>{web1}));

  // The same container with a health check that passes reaches READY and commits.
  json ok = {{"exec", {"/bin/true"}}, {"interval_s", 1}, {"timeout_s", 1}};
  auto e3 = f.Update("u3", "r3", 3, f.State({{.name = "web", .marker = "w3", .goal = "READY", .health = ok}}, groups));
  ASSERT_EQ(e3["status"], "DONE") << e3.dump() << f.a.AgentLog();
}

// start-first: the containers themselves log to their shared permanent /data when they come
// up and when they get the halt signal. stop-first is the control: there the order flips.
// READY (the new one has logged "up") is what makes the order certain: STARTED only means
// LXC runs the init, which may not have logged yet when the old one gets its halt signal.
TEST(Swap, StartFirstRunsTheNewContainerBeforeTheOldOneStops) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  auto def = [](const std::string& marker, const std::string& strategy) {
    json logged_up = {{"exec", {"/bin/sh", "-c", "grep -q up-$(cat /etc/gantry-marker) /data/events"}},
                      {"interval_s", 1}};
    return ContainerDef{.name = "svc", .marker = marker, .goal = "READY", .strategy = strategy,
                        .health = logged_up, .permanent_data = true};
  };
  ASSERT_EQ(f.Update("u1", "r1", 1, f.State({def("m1", "start-first")}))["status"], "DONE") << f.a.AgentLog();
  auto e2 = f.Update("u2", "r2", 2, f.State({def("m2", "start-first")}));
  ASSERT_EQ(e2["status"], "DONE") << e2.dump() << f.a.AgentLog();
  EXPECT_EQ(f.Events("svc"), (std::vector<std::string>{"up-m1", "up-m2", "down-m1"}));

  auto e3 = f.Update("u3", "r3", 3, f.State({def("m3", "stop-first")}));
  ASSERT_EQ(e3["status"], "DONE") << e3.dump() << f.a.AgentLog();
  EXPECT_EQ(f.Events("svc"), (std::vector<std::string>{"up-m1", "up-m2", "down-m1", "down-m2", "up-m3"}));
  EXPECT_EQ(f.Running().size(), 1u);
}

// SIGKILL while the new container waits for its goal (SWITCHING): the restarted agent rolls
// back, and the final ERROR carries the id of the update that began it.
TEST(Swap, KilledDuringSwitchingRollsBackOnRestart) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  ASSERT_EQ(f.Update("u1", "r1", 1, f.State({{.name = "svc", .marker = "k1"}}))["status"], "DONE") << f.a.AgentLog();
  auto svc1 = f.RunningInstance("svc");

  json never = {{"exec", {"/bin/false"}}, {"interval_s", 1}, {"timeout_s", 1}};
  ASSERT_EQ(f.Send("u2", "r2", 2, f.State({{.name = "svc", .marker = "k2", .goal = "READY", .health = never}}))["ok"], true);
  // SWITCHING has begun once the new instance runs (and the old one was stopped).
  ASSERT_TRUE(f.a.op().WaitFor([&](auto&) {
    auto i = f.RunningInstance("svc");
    return !i.empty() && i != svc1;
  }, 30s)) << f.a.AgentLog();
  f.a.KillAgent();
  EXPECT_TRUE(f.a.Progress("u2").empty() || !AgentFixture::IsFinal(f.a.Progress("u2").back().value("status", "")));
  f.a.StartAgent();
  auto e2 = f.a.WaitFinal("u2", 60s);
  EXPECT_EQ(e2["status"], "ERROR") << e2.dump();
  EXPECT_NE(Msg(e2).find("SWITCHING"), std::string::npos) << e2.dump();
  EXPECT_NE(Msg(e2).find("rolled back to r1"), std::string::npos) << e2.dump();
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 1); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r1", 1)) << st.dump() << f.a.AgentLog();
  EXPECT_EQ(f.Running(), (std::set<std::string>{svc1}));
}

// SIGKILL in the commit window (TESTING): the restarted agent rolls back.
TEST(Swap, KilledDuringTestingRollsBackOnRestart) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  auto e1 = f.Update("u1", "r1", 1, f.State({{.name = "svc", .marker = "t1"}}));
  ASSERT_EQ(e1["status"], "DONE") << f.a.AgentLog();
  auto svc1 = f.RunningInstance("svc");
  int pid1 = f.InitPid(svc1);
  f.a.StopAgent();
  f.a.config["update"]["commit_window_s"] = 30;  // the kill lands inside it
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  EXPECT_EQ(f.InitPid(svc1), pid1) << "a restarted agent adopts the running container";

  ASSERT_EQ(f.Send("u2", "r2", 2, f.State({{.name = "svc", .marker = "t2"}}))["ok"], true);
  ASSERT_TRUE(f.a.op().WaitFor([&](auto&) { return HasEvent(f.a, "u2", "TESTING"); }, 30s)) << f.a.AgentLog();
  f.a.KillAgent();
  EXPECT_NE(f.RunningInstance("svc"), svc1);
  f.a.StartAgent();
  auto e2 = f.a.WaitFinal("u2", 60s);
  EXPECT_EQ(e2["status"], "ERROR") << e2.dump();
  EXPECT_NE(Msg(e2).find("TESTING"), std::string::npos) << e2.dump();
  EXPECT_NE(Msg(e2).find("rolled back to r1"), std::string::npos) << e2.dump();
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 1); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r1", 1)) << st.dump() << f.a.AgentLog();
  EXPECT_EQ(f.Running(), (std::set<std::string>{svc1}));
}

// SIGKILL while downloading (FETCHING): the restarted agent resumes and completes.
TEST(Swap, KilledDuringFetchingResumesAndCompletes) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  auto state = f.State({{.name = "svc", .marker = "f1"}});
  std::string root = state["svc/root.squashfs"];
  f.a.blocks().Control("/_fault?path=/objects/" + root + "&rate_bps=50000");
  ASSERT_EQ(f.Send("u1", "r1", 1, state)["ok"], true);
  ASSERT_TRUE(f.a.op().WaitFor([&](auto&) {
    for (auto& e : f.a.Progress("u1"))
      if (e.value("status", "") == "DOWNLOADING" && e["progress"].get<int>() > 0) return true;
    return false;
  }, 30s)) << f.a.AgentLog();
  f.a.KillAgent();
  EXPECT_TRUE(f.Running().empty());
  f.a.blocks().Control("/_reset");
  f.a.StartAgent();
  auto e1 = f.a.WaitFinal("u1", 60s);
  EXPECT_EQ(e1["status"], "DONE") << e1.dump() << f.a.AgentLog();
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 1); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r1", 1)) << st.dump();
  EXPECT_EQ(f.Running().size(), 1u);
}

// The rollback command returns to the previous committed revision.
TEST(Swap, RollbackCommandReturnsToThePreviousRevision) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  ASSERT_EQ(f.Update("u1", "r1", 1, f.State({{.name = "alpha", .marker = "a1"}, {.name = "beta", .marker = "b1"}}))["status"],
            "DONE") << f.a.AgentLog();
  auto before = f.Running();
  ASSERT_EQ(f.Update("u2", "r2", 2, f.State({{.name = "alpha", .marker = "a2"}, {.name = "beta", .marker = "b1"}}))["status"],
            "DONE") << f.a.AgentLog();
  EXPECT_NE(f.Running(), before);

  f.a.Send({{"id", "rb"}, {"op", "rollback"}});
  EXPECT_EQ(f.a.WaitReply("rb")["ok"], true);
  auto e = f.a.WaitFinal("rb", 60s);
  EXPECT_EQ(e["status"], "DONE") << e.dump() << f.a.AgentLog();
  EXPECT_EQ(e["rev"], "r1");
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 2); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r1", 2)) << st.dump();
  EXPECT_EQ(f.Running(), before);
}

// The liblxc helper dies (here: SIGKILL) while gantryd runs: gantryd cannot fork a new one
// safely, so it exits 3 for its service manager to restart it; the containers keep running,
// and the restarted agent adopts them and takes the next update.
TEST(Swap, LostRuntimeHelperMakesTheAgentExitForARestartAndContainersKeepRunning) {
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  ASSERT_EQ(f.Update("u1", "r1", 1, f.State({{.name = "svc", .marker = "h1"}}))["status"], "DONE") << f.a.AgentLog();
  auto svc1 = f.RunningInstance("svc");
  int pid1 = f.InitPid(svc1);
  ASSERT_GT(pid1, 0);

  auto [rc, helpers] = Sh("pgrep -P " + std::to_string(f.a.agent().pid()));
  ASSERT_EQ(rc, 0) << "gantryd has no child process (the liblxc helper)";
  ASSERT_EQ(helpers.find('\n'), helpers.size() - 1) << "more than one child: " << helpers;
  ASSERT_EQ(::kill(std::stoi(helpers), SIGKILL), 0);
  // The engine's container monitor (every 2 s) is the first to meet the dead helper.
  EXPECT_EQ(f.a.agent().Wait(20s), 3) << f.a.AgentLog();
  EXPECT_NE(f.a.AgentLog().find("exiting so that gantryd is restarted"), std::string::npos) << f.a.AgentLog();
  EXPECT_EQ(f.InitPid(svc1), pid1) << "the container did not outlive its agent";

  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 1); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r1", 1)) << st.dump();
  EXPECT_EQ(f.InitPid(svc1), pid1) << "the restarted agent restarted the container instead of adopting it";
  auto e2 = f.Update("u2", "r2", 2, f.State({{.name = "svc", .marker = "h2"}}));
  EXPECT_EQ(e2["status"], "DONE") << e2.dump() << f.a.AgentLog();
}
