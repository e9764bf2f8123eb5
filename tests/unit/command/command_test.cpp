#include <gtest/gtest.h>

#include "command/command.hpp"

using namespace gantry;

namespace {
std::string Code(std::string_view payload) {
  auto r = command::Parse(payload);
  return r ? "ok" : r.error().error.code;
}
}  // namespace

TEST(Command, ParsesEveryOp) {
  for (auto op : {"rollback", "cancel", "gc", "get-state"}) {
    auto r = command::Parse(std::string(R"({"id":"c1","op":")") + op + "\"}");
    ASSERT_TRUE(r) << op << ": " << r.error().error.String();
    EXPECT_EQ(r->op_name, op);
  }
  auto u = command::Parse(R"({"id":"u1","op":"update","revision":{"payload":"x","signatures":[]},"objects_base":"http://h/o"})");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->op, command::Op::kUpdate);
  EXPECT_EQ(u->objects_base, "http://h/o");
  EXPECT_EQ(u->revision["payload"], "x");
}

TEST(Command, RefusesMalformedInputPrecisely) {
  EXPECT_EQ(Code("{not json"), "bad_json");
  EXPECT_EQ(Code("[1,2]"), "bad_command");
  EXPECT_EQ(Code(R"({"op":"gc"})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":7,"op":"gc"})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":"","op":"gc"})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":")" + std::string(65, 'x') + R"(","op":"gc"})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":"a","op":"reboot"})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":"a","op":"gc","extra":1})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":"a","op":"update"})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":"a","op":"update","revision":"x"})"), "bad_command");
  EXPECT_EQ(Code(R"({"id":"a","op":"update","revision":{},"objects_base":5})"), "bad_command");
}

TEST(Command, KeepsTheIdWhenReadable) {
  auto r = command::Parse(R"({"id":"keep-me","op":"nope"})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().id, "keep-me");
  auto r2 = command::Parse("garbage");
  ASSERT_FALSE(r2);
  EXPECT_FALSE(r2.error().id.has_value());
  EXPECT_EQ(command::Reply(std::nullopt, Unexpected(r2.error().error)).substr(0, 10), R"({"error":{)");
}

TEST(Command, CapsSizeBeforeParsing) {
  std::string big = R"({"id":"a","op":"update","revision":{"payload":")" + std::string(2u << 20, 'a') + "\"}}";
  EXPECT_EQ(Code(big), "too_large");
}

TEST(Command, CapsDepthWhileParsing) {
  std::string deep = R"({"id":"a","op":"update","revision":)";
  for (int i = 0; i < 100000; ++i) deep += "[";
  EXPECT_EQ(Code(deep), "too_deep");
  std::string ok = "";
  for (int i = 0; i < 60; ++i) ok += "[";
  for (int i = 0; i < 60; ++i) ok += "]";
  EXPECT_TRUE(command::ParseCapped(ok));
}

TEST(Command, ReplyShape) {
  auto ok = nlohmann::json::parse(command::Reply("x", {}));
  EXPECT_EQ(ok, (nlohmann::json{{"id", "x"}, {"ok", true}}));
  auto bad = nlohmann::json::parse(command::Reply("x", Fail("bad_signature", "nope")));
  EXPECT_EQ(bad["ok"], false);
  EXPECT_EQ(bad["error"]["code"], "bad_signature");
  EXPECT_EQ(bad["error"]["message"], "nope");
}
