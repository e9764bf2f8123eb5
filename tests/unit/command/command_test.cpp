#include <gtest/gtest.h>

#include "command/command.hpp"
#include "command/ledger.hpp"
#include "test_util.hpp"

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

// Command ids are kept for 30 days and at least the last 10,000, then pruned.
TEST(CommandLedger, PrunesOldIdsBeyondTheNewestTenThousand) {
  test::TempDir dir;
  auto db = store::Db::Open(dir.path() / "g.db");
  ASSERT_TRUE(db) << db.error().String();
  command::Ledger ledger(*db);
  const std::int64_t now = 2'000'000'000, old = now - command::Ledger::kKeepSeconds - 1;
  ASSERT_TRUE(db->InTransaction([&]() -> ExpectedVoid {
    for (int i = 0; i < 10'500; ++i)
      if (auto r = db->Run("INSERT INTO commands(id, op, reply, received_at) VALUES (?, 'gc', '{}', ?)",
                           "old" + std::to_string(i), old);
          !r)
        return r;
    return {};
  }));
  auto pruned = ledger.Prune(now);
  ASSERT_TRUE(pruned) << pruned.error().String();
  EXPECT_EQ(*pruned, 500);
  EXPECT_FALSE(ledger.StoredReply("old0"));
  EXPECT_FALSE(ledger.StoredReply("old499"));
  EXPECT_EQ(ledger.StoredReply("old500"), "{}");
  EXPECT_EQ(ledger.StoredReply("old10499"), "{}");
  // Recent ids are kept however many there are; old ones go only beyond the newest 10,000.
  ASSERT_TRUE(db->InTransaction([&]() -> ExpectedVoid {
    for (int i = 0; i < 10'001; ++i)
      if (auto r = ledger.Record("new" + std::to_string(i), "gc", "{}", now); !r) return r;
    return {};
  }));
  ASSERT_TRUE(ledger.Prune(now));
  EXPECT_FALSE(ledger.StoredReply("old10499"));
  EXPECT_EQ(ledger.StoredReply("new0"), "{}");
  auto n = db->Prepare("SELECT count(*) FROM commands");
  ASSERT_TRUE(n && n->Step().value_or(false));
  EXPECT_EQ(n->Int(0), 10'001);
}
