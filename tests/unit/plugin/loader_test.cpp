#include "plugin/loader.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace gantry;

namespace {
const std::filesystem::path kScripted = GANTRY_SCRIPTED_PLUGIN;
}

TEST(PluginLoader, MissingFileAndWrongKindArePreciseErrors) {
  test::TempDir dir;
  auto missing = plugin::Load(dir.path() / "gantry-relay-x.so", "relay", nullptr, nlohmann::json::object());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "plugin");
  EXPECT_NE(missing.error().message.find("gantry-relay-x.so"), std::string::npos) << missing.error().message;

  auto wrong = plugin::Load(kScripted, "runtime", nullptr, nlohmann::json::object());
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("is not a runtime plugin (kind \"scripted\")"), std::string::npos)
      << wrong.error().message;
}

TEST(PluginLoader, CallsAnswerWithTheReplyOrThePluginsError) {
  auto p = plugin::Load(kScripted, "scripted", nullptr, {{"x", 1}});
  ASSERT_TRUE(p) << p.error().String();
  auto echo = (*p)->Call("echo", {{"a", 1}});
  ASSERT_TRUE(echo) << echo.error().String();
  EXPECT_EQ((*echo)["request"]["a"], 1);

  auto fail = (*p)->Call("fail", nlohmann::json::object());
  ASSERT_FALSE(fail);
  EXPECT_EQ(fail.error().code, "helper");
  EXPECT_EQ(fail.error().message, "gone");

  auto garbage = (*p)->Call("garbage", nlohmann::json::object());
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code, "plugin");
  EXPECT_NE(garbage.error().message.find("malformed reply to garbage"), std::string::npos);

  auto nothing = (*p)->Call("unknown-op", nlohmann::json::object());
  ASSERT_FALSE(nothing);
  EXPECT_NE(nothing.error().message.find("returned nothing for unknown-op"), std::string::npos);
}

TEST(PluginLoader, CreateFailureIsReportedAndDestroyRunsOnRelease) {
  auto failed = plugin::Load(kScripted, "scripted", nullptr, {{"fail", true}});
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("failed to start: asked to fail"), std::string::npos)
      << failed.error().message;

  auto a = plugin::Load(kScripted, "scripted", nullptr, nlohmann::json::object());
  ASSERT_TRUE(a);
  {
    auto b = plugin::Load(kScripted, "scripted", nullptr, nlohmann::json::object());
    ASSERT_TRUE(b);
    EXPECT_EQ((*(*a)->Call("count", nlohmann::json::object()))["instances"], 2);
  }
  EXPECT_EQ((*(*a)->Call("count", nlohmann::json::object()))["instances"], 1) << "destroy() did not run";
}
