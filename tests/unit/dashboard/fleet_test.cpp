// The dashboard's fleet model: what a device's messages make of its row, and hostile input.
#include "dashboard/fleet.hpp"

#include <gtest/gtest.h>

namespace gantry::dashboard {
namespace {

using json = nlohmann::json;

json DeviceIn(const json& snapshot_or_changes, const std::string& id) {
  for (auto& d : snapshot_or_changes["devices"])
    if (d["id"] == id) return d;
  return json();
}

const char* kState = R"({"rev":"r1","seq":3,"status":"DONE","ts":"2026-12-02T03:00:00Z","groups":["lab"],
  "containers":[{"name":"a","state":"RUNNING"},{"name":"b","state":"FAILED"}],
  "sensors":[{"id":"s1","job":{"state":"SUCCEEDED"}},{"id":"s2","job":null},{"id":"s3"}]})";

TEST(Fleet, StateOnlineAndProgressMakeOneRow) {
  Fleet f("gantry");
  f.Apply("gantry/gw-1/state", kState, 1000);
  f.Apply("gantry/gw-1/online", R"({"online":true,"ts":"2026-12-02T03:00:01Z"})", 1000);
  auto d = DeviceIn(f.Snapshot(), "gw-1");
  EXPECT_EQ(d["rev"], "r1");
  EXPECT_EQ(d["seq"], 3);
  EXPECT_EQ(d["online"], true);
  EXPECT_EQ(d["status"], "DONE");
  EXPECT_EQ(d["containers"], json({1, 2}));
  EXPECT_EQ(d["sensors"], json({1, 3}));
  EXPECT_EQ(d["groups"], json({"lab"}));
  EXPECT_EQ(d["last"]["text"], "online");
  EXPECT_EQ(d["last"]["ts_ms"], 1796180401000LL);

  // A progress event after the state says what the device does now.
  f.TakeChanges();
  f.Apply("gantry/gw-1/progress", R"({"id":"u2","status":"DOWNLOADING","progress":40,"msg":"x"})", 5000);
  auto ch = f.TakeChanges();
  ASSERT_TRUE(ch);
  d = DeviceIn(*ch, "gw-1");
  EXPECT_EQ(d["status"], "DOWNLOADING");
  EXPECT_EQ(d["progress"], 40);
  EXPECT_EQ(d["last"]["text"], "DOWNLOADING 40%: x");
  EXPECT_EQ(d["last"]["ts_ms"], 5000);  // no ts in the payload: the dashboard's clock
  EXPECT_FALSE(f.TakeChanges());        // nothing new since

  // A newer state wins again.
  f.Apply("gantry/gw-1/state", kState, 6000);
  EXPECT_EQ(DeviceIn(*f.TakeChanges(), "gw-1")["status"], "DONE");
  EXPECT_EQ((*f.DeviceDetails("gw-1"))["events"].size(), 1u);
}

TEST(Fleet, RolloutSummaryIsNamedByItsTopicAndClearedByAnEmptyPayload) {
  Fleet f("gantry");
  f.Apply("gantry/rollouts/r9/status", R"({"name":"other","state":"RUNNING","waves":[]})", 0);
  auto snap = f.Snapshot();
  ASSERT_EQ(snap["rollouts"].size(), 1u);
  EXPECT_EQ(snap["rollouts"][0]["name"], "r9");
  f.TakeChanges();
  f.Apply("gantry/rollouts/r9/status", "", 0);
  auto ch = f.TakeChanges();
  EXPECT_EQ((*ch)["removed"]["rollouts"], json({"r9"}));
  EXPECT_TRUE(f.Snapshot()["rollouts"].empty());
}

TEST(Fleet, ClearedRetainedTopicsForgetTheDevice) {
  Fleet f("gantry");
  f.Apply("gantry/gw-1/state", kState, 0);
  f.Apply("gantry/gw-1/online", R"({"online":false})", 0);
  f.TakeChanges();
  f.Apply("gantry/gw-1/state", "", 0);
  EXPECT_EQ(f.DeviceCount(), 1u);
  f.Apply("gantry/gw-1/online", "", 0);
  EXPECT_EQ(f.DeviceCount(), 0u);
  EXPECT_EQ((*f.TakeChanges())["removed"]["devices"], json({"gw-1"}));
}

TEST(Fleet, HostileInputIsDroppedAndCounted) {
  Fleet f("gantry");
  f.Apply("gantry/gw-1/state", "not json", 0);
  f.Apply("gantry/gw-1/state", "[1,2]", 0);
  f.Apply("gantry/gw-1/online", R"({"online":"yes"})", 0);
  f.Apply("gantry/gw-1/progress", R"({"progress":1})", 0);
  f.Apply("gantry/gw-1/state", std::string(kMaxPayloadBytes + 1, ' '), 0);
  f.Apply("gantry/" + std::string(kMaxIdBytes + 1, 'x') + "/state", kState, 0);
  f.Apply("elsewhere/gw-1/state", kState, 0);
  EXPECT_EQ(f.Dropped(), 7u);
  EXPECT_EQ(f.DeviceCount(), 0u);
  // Fields of the wrong type do not break the row.
  f.Apply("gantry/gw-2/state", R"({"rev":5,"seq":"x","status":[],"containers":{},"sensors":[1,"a"],"groups":[1,"g"]})", 0);
  auto d = DeviceIn(f.Snapshot(), "gw-2");
  EXPECT_TRUE(d["rev"].is_null());
  EXPECT_TRUE(d["seq"].is_null());
  EXPECT_EQ(d["status"], "");
  EXPECT_EQ(d["containers"], json({0, 0}));
  EXPECT_EQ(d["sensors"], json({0, 2}));
  EXPECT_EQ(d["groups"], json({"g"}));
}

TEST(Fleet, MarkupAndInvalidUtf8TravelAsJsonText) {
  Fleet f("gantry");
  std::string id = "<script>alert(1)<\\script>";
  f.Apply("gantry/" + id + "/progress", R"({"status":"ERROR","msg":"</script><b>x</b>"})", 0);
  f.Apply("gantry/bad\xff-id/online", R"({"online":true})", 0);
  std::string out = Dump(f.Snapshot());  // must not throw on the invalid byte
  auto back = json::parse(out);
  ASSERT_EQ(back["devices"].size(), 2u);
  EXPECT_EQ(back["devices"][0]["id"], id);
  EXPECT_EQ(back["devices"][0]["last"]["text"], "ERROR: </script><b>x</b>");
  EXPECT_EQ(back["devices"][1]["id"], "bad\xEF\xBF\xBD-id");
}

}  // namespace
}  // namespace gantry::dashboard
