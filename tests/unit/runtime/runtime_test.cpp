#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fake_runtime.hpp"
#include "runtime/runtime.hpp"
#include "test_util.hpp"

using namespace gantry;
using namespace gantry::runtime;

TEST(RuntimeLoader, MissingPluginIsAPreciseError) {
  test::TempDir dir;
  auto rt = LoadRuntimePlugin(dir.path(), dir.path() / "data", nlohmann::json::object());
  ASSERT_FALSE(rt);
  EXPECT_EQ(rt.error().code, "plugin");
  EXPECT_NE(rt.error().message.find("gantry-runtime-lxc.so"), std::string::npos)
      << rt.error().message;
}

TEST(RuntimeLoader, StateNames) {
  EXPECT_STREQ(StateName(State::kRunning), "RUNNING");
  EXPECT_STREQ(StateName(State::kStopped), "STOPPED");
  EXPECT_STREQ(StateName(State::kStarting), "STARTING");
  EXPECT_STREQ(StateName(State::kFailed), "FAILED");
  EXPECT_STREQ(StateName(State::kAbsent), "ABSENT");
}

TEST(FakeRuntime, RecordsCallsAndModelsLifecycle) {
  FakeRuntime rt;
  ContainerSpec spec{.name = "app", .instance = "app-0123456789ab"};
  ASSERT_TRUE(rt.Prepare(spec));
  EXPECT_EQ(rt.GetStatus("app-0123456789ab")->state, State::kStopped);
  ASSERT_TRUE(rt.Start("app-0123456789ab"));
  auto st = rt.GetStatus("app-0123456789ab");
  EXPECT_EQ(st->state, State::kRunning);
  EXPECT_GT(st->init_pid, 0);
  rt.SetExecResult("app-0123456789ab", 3);
  EXPECT_EQ(*rt.Exec("app-0123456789ab", {"true"}, 5), 3);
  rt.Exit("app-0123456789ab");
  EXPECT_EQ(rt.GetStatus("app-0123456789ab")->state, State::kStopped);
  ASSERT_TRUE(rt.Stop("app-0123456789ab", 7));
  EXPECT_EQ(rt.LastStopTimeout("app-0123456789ab"), 7);
  ASSERT_TRUE(rt.Release("app-0123456789ab"));
  EXPECT_EQ(rt.GetStatus("app-0123456789ab")->state, State::kAbsent);
  EXPECT_EQ(rt.Calls(), (std::vector<std::string>{
                            "prepare app-0123456789ab", "start app-0123456789ab",
                            "exec app-0123456789ab", "stop app-0123456789ab",
                            "release app-0123456789ab"}));
}

TEST(FakeRuntime, InjectedFailures) {
  FakeRuntime rt;
  ASSERT_TRUE(rt.Prepare({.name = "a", .instance = "a-1"}));
  rt.FailNext("start", "a-1", "lxc", "boom");
  auto r = rt.Start("a-1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "lxc");
  EXPECT_EQ(r.error().message, "boom");
  EXPECT_TRUE(rt.Start("a-1"));  // one-shot
  rt.FailAlways("stop", "");
  EXPECT_FALSE(rt.Stop("a-1", 1));
  EXPECT_FALSE(rt.Stop("a-1", 1));
  rt.ClearFailures();
  EXPECT_TRUE(rt.Stop("a-1", 1));
}

TEST(FakeRuntime, AdoptedAndNeverReadyContainers) {
  FakeRuntime rt;
  rt.AddRunning({.name = "old", .instance = "old-1"});
  EXPECT_EQ(*rt.List(), std::vector<std::string>{"old-1"});
  EXPECT_EQ(rt.GetStatus("old-1")->state, State::kRunning);
  ASSERT_TRUE(rt.Prepare({.name = "new", .instance = "new-1"}));
  rt.SetStartState("new-1", State::kStarting);
  ASSERT_TRUE(rt.Start("new-1"));
  EXPECT_EQ(rt.GetStatus("new-1")->state, State::kStarting);
  EXPECT_TRUE(rt.Calls().size() == 2);
}
