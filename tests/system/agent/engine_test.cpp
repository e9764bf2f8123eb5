// Issue "The engine by construction": a real gantryd (real mosquitto, real block server, real
// SQLite) holding the engine's rules where they must hold: intake answers while an update
// downloads and the cache collects, a replayed old revision cannot commit over a newer one,
// short blocks are never committed, hostile config bytes and names are refused without harm,
// and SIGTERM stops cleanly without publishing anything twice after the restart.
#include <gtest/gtest.h>
#include <signal.h>

#include <set>

#include "agent_fixture.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string Firmware(size_t bytes, char seed) {
  std::string s(bytes, seed);
  for (size_t i = 0; i < s.size(); i += 4096) s[i] = static_cast<char>(i / 4096 + seed);
  return s;
}

bool SawStatus(AgentFixture& a, const std::string& id, const std::string& status) {
  for (auto& e : a.Progress(id))
    if (e.value("status", "") == status) return true;
  return false;
}

// Every payload the agent published on a topic, counted byte for byte.
std::map<std::string, int> PayloadCounts(AgentFixture& a, const std::string& topic) {
  std::map<std::string, int> n;
  for (auto& r : a.op().Log())
    if (r.topic == a.Prefix() + topic && !r.retained) ++n[r.body.dump()];
  return n;
}

}  // namespace

// Before: the gc command collected through the cache's own connection while the dispatcher
// held a write transaction on another, so gc waited SQLite's 10 s busy timeout and failed
// "database is locked" (and the runner, holding the cache mutex, could deadlock with the
// loop the same way). Now there is one connection and one writer lock, held briefly.
TEST(AgentEngine, CommandsAndGcAnsweredWhileAnUpdateDownloads) {
  AgentFixture a;
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();
  // An old block that gc may collect: committed once, then superseded.
  auto old_fw = Firmware(64 << 10, 'o');
  auto old_id = a.PutBlock(old_fw);
  a.Send({{"id", "u0"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("r0", 1, FirmwareState({{"m0", old_id}}), {{old_id, old_fw}}))}});
  ASSERT_EQ(a.WaitFinal("u0")["status"], "DONE") << a.AgentLog();

  auto fw = Firmware(6 << 20, 'b');
  auto id = a.PutBlock(fw);
  a.blocks().Control("/_fault?path=/objects/" + id + "&rate_bps=1000000");
  a.Send({{"id", "u1"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("r1", 2, FirmwareState({{"m1", id}}), {{id, fw}}))}});
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return SawStatus(a, "u1", "DOWNLOADING"); })) << a.AgentLog();

  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    std::string cid = (i % 3 == 0 ? "gc" : "gs") + std::to_string(i);
    a.Send({{"id", cid}, {"op", i % 3 == 0 ? "gc" : "get-state"}});
    ids.push_back(cid);
  }
  for (auto& cid : ids) {
    auto reply = a.WaitReply(cid);
    EXPECT_EQ(reply["ok"], true) << cid << ": " << reply.dump();
  }
  // Answered during the download, not after it.
  for (auto& e : a.Progress("u1")) EXPECT_FALSE(AgentFixture::IsFinal(e.value("status", ""))) << e.dump();
  auto final_event = a.WaitFinal("u1");
  EXPECT_EQ(final_event["status"], "DONE") << final_event.dump() << a.AgentLog();
  EXPECT_EQ(a.AgentLog().find("database is locked"), std::string::npos) << a.AgentLog();
  auto p = a.data_dir() / "objects" / id.substr(0, 2) / id;
  ASSERT_TRUE(std::filesystem::exists(p));
  EXPECT_EQ(Sha256Hex(Slurp(p)), id);
}

// Committed seq 5; A (seq 10) is testing; an old, validly signed B (seq 7) is replayed and
// queued. When B's turn comes, A has committed seq 10: B ends WONTGO (downgrade).
TEST(AgentEngine, ReplayedOldRevisionQueuedDuringTestingEndsWontgo) {
  AgentFixture a;
  a.config["update"]["commit_window_s"] = 3;
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();
  auto fw = Firmware(4096, 'f');
  auto id = a.PutBlock(fw);
  auto revision = [&](const std::string& rev, int seq) {
    return a.Sign(a.Revision(rev, seq, FirmwareState({{"m1", id}}), {{id, fw}}));
  };
  a.Send({{"id", "c5"}, {"op", "update"}, {"revision", revision("r5", 5)}});
  ASSERT_EQ(a.WaitFinal("c5")["status"], "DONE") << a.AgentLog();
  auto b = revision("r7", 7);  // signed now, replayed later
  a.Send({{"id", "c10"}, {"op", "update"}, {"revision", revision("r10", 10)}});
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return SawStatus(a, "c10", "TESTING"); })) << a.AgentLog();
  a.Send({{"id", "c7"}, {"op", "update"}, {"revision", b}});
  EXPECT_EQ(a.WaitReply("c7")["ok"], true);  // 7 > 5: admitted, and queued behind A

  EXPECT_EQ(a.WaitFinal("c10")["status"], "DONE") << a.AgentLog();
  auto f7 = a.WaitFinal("c7");
  EXPECT_EQ(f7["status"], "WONTGO") << f7.dump();
  EXPECT_NE(f7["msg"].get<std::string>().find("downgrade"), std::string::npos) << f7.dump();
  EXPECT_FALSE(SawStatus(a, "c7", "DOWNLOADING"));
  ASSERT_TRUE(a.op().WaitFor([&](auto&) {
    auto s = a.LastState();
    return s.value("rev", json()) == "r10" && s.value("status", "") == "WONTGO";
  })) << a.LastState().dump();
  EXPECT_EQ(a.LastState()["seq"], 10);
}

// A connection cut mid-body is resumed and the block committed whole; a block whose server
// sends fewer bytes than the revision declares is never committed.
TEST(AgentEngine, ShortBlocksAreRefetchedAndNeverCommittedShort) {
  AgentFixture a;
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();
  auto fw = Firmware(1 << 20, 'c');
  auto id = a.PutBlock(fw);
  a.blocks().Control("/_fault?path=/objects/" + id + "&cut_after=300000,700000&count=2");
  a.Send({{"id", "cut"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("r1", 1, FirmwareState({{"m1", id}}), {{id, fw}}))}});
  EXPECT_EQ(a.WaitFinal("cut")["status"], "DONE") << a.AgentLog();
  EXPECT_GE(a.blocks().RangeRequests("/objects/" + id), 1u);
  auto p = a.data_dir() / "objects" / id.substr(0, 2) / id;
  EXPECT_EQ(Slurp(p).size(), fw.size());
  EXPECT_EQ(Sha256Hex(Slurp(p)), id);

  // The revision declares more bytes than the block has: the hash of what came matches, but
  // the block is short of its declared size.
  auto small = Firmware(10000, 's');
  auto sid = a.PutBlock(small);
  auto doc = a.Revision("r2", 2, FirmwareState({{"m2", sid}}), {{sid, small}});
  doc["objects"][sid]["size"] = small.size() + 5000;
  a.Send({{"id", "short"}, {"op", "update"}, {"revision", a.Sign(doc)}});
  auto f = a.WaitFinal("short");
  EXPECT_EQ(f["status"], "WONTGO") << f.dump();
  EXPECT_NE(f["msg"].get<std::string>().find("10000 of 15000"), std::string::npos) << f.dump();
  EXPECT_FALSE(std::filesystem::exists(a.data_dir() / "objects" / sid.substr(0, 2) / sid));
  a.Send({{"id", "gs"}, {"op", "get-state"}});
  EXPECT_EQ(a.WaitReply("gs")["ok"], true);
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return a.LastState().value("status", "") == "WONTGO"; }));
  EXPECT_EQ(a.LastState()["cache"]["blocks"], 1) << a.LastState().dump();
}

namespace {
json ContainerState(AgentFixture& a, const std::string& name, const std::string& conf,
                    std::map<std::string, std::string>& blocks) {
  std::string root(4096, 'r');
  auto conf_id = a.PutBlock(conf), root_id = a.PutBlock(root);
  blocks[conf_id] = conf;
  blocks[root_id] = root;
  json state = {{"#spec", "pantavisor-service-system@1"}};
  state[name + "/run.json"] = {{"#spec", "service-manifest-run@1"}, {"name", name}, {"type", "lxc"},
                               {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"}};
  state[name + "/lxc.container.conf"] = conf_id;
  state[name + "/root.squashfs"] = root_id;
  return state;
}
}  // namespace

// A config block that is not UTF-8 used to throw out of json::dump on the runner thread and
// kill gantryd (and again after every restart, resuming the update).
TEST(AgentEngine, NonUtf8ConfigEndsWontgoAndTheAgentStaysUp) {
  AgentFixture a;
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();
  std::map<std::string, std::string> blocks;
  auto state = ContainerState(a, "app", "lxc.init.cmd = /sbin/init\n# caf\xe9 \xff\xfe\n", blocks);
  a.Send({{"id", "bad"}, {"op", "update"}, {"revision", a.Sign(a.Revision("r1", 1, state, blocks))}});
  auto f = a.WaitFinal("bad");
  EXPECT_EQ(f["status"], "WONTGO") << f.dump() << a.AgentLog();
  EXPECT_NE(f["msg"].get<std::string>().find("app/lxc.container.conf"), std::string::npos) << f.dump();
  EXPECT_NE(f["msg"].get<std::string>().find("UTF-8"), std::string::npos) << f.dump();
  a.Send({{"id", "alive"}, {"op", "get-state"}});
  EXPECT_EQ(a.WaitReply("alive")["ok"], true);
  EXPECT_TRUE(a.agent().Running());
}

// An instance is "<name>-<12 hex>" and must fit 63 characters: a 60-character name could
// never start, so it is refused before anything happens.
TEST(AgentEngine, ContainerNameTooLongForItsInstanceIsRefusedAtAdmission) {
  AgentFixture a;
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();
  std::map<std::string, std::string> blocks;
  std::string name(60, 'n');
  auto state = ContainerState(a, name, "lxc.init.cmd = /sbin/init\n", blocks);
  a.Send({{"id", "long"}, {"op", "update"}, {"revision", a.Sign(a.Revision("r1", 1, state, blocks))}});
  auto reply = a.WaitReply("long");
  EXPECT_EQ(reply["ok"], false) << reply.dump();
  auto f = a.WaitFinal("long");
  EXPECT_EQ(f["status"], "WONTGO");
  EXPECT_NE(f["msg"].get<std::string>().find("at most 50"), std::string::npos) << f.dump();
  EXPECT_FALSE(SawStatus(a, "long", "QUEUED"));
}

// SIGTERM during a download: gantryd stops the transfer, takes the broker's acknowledgements
// of what it sent, disconnects and exits within update.stop_timeout_s; the next start resumes
// the download and publishes no message a second time.
TEST(AgentEngine, SigtermDuringDownloadStopsPromptlyAndTheRestartRepeatsNothing) {
  AgentFixture a;
  a.config["update"]["stop_timeout_s"] = 3;
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog();
  auto fw = Firmware(8 << 20, 'd');
  auto id = a.PutBlock(fw);
  a.blocks().Control("/_fault?path=/objects/" + id + "&rate_bps=1000000");
  a.Send({{"id", "u1"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("r1", 1, FirmwareState({{"m1", id}}), {{id, fw}}))}});
  ASSERT_TRUE(a.op().WaitFor([&](auto&) {
    for (auto& e : a.Progress("u1"))
      if (e.value("status", "") == "DOWNLOADING" && e.value("progress", 0) >= 10) return true;
    return false;
  })) << a.AgentLog();
  kill(a.agent().pid(), SIGTERM);
  EXPECT_EQ(a.agent().Wait(std::chrono::seconds(3 + 2)), 0) << a.AgentLog();
  EXPECT_NE(a.AgentLog().find("interrupted by the agent's stop"), std::string::npos) << a.AgentLog();

  a.blocks().Control("/_reset");
  a.StartAgent();
  EXPECT_EQ(a.WaitFinal("u1")["status"], "DONE") << a.AgentLog();
  // Let the restarted agent's messages arrive, then count: no reply, no progress event twice.
  a.Send({{"id", "last"}, {"op", "get-state"}});
  a.WaitReply("last");
  for (auto topic : {"/reply", "/progress"})
    for (auto& [payload, n] : PayloadCounts(a, topic)) EXPECT_EQ(n, 1) << topic << " " << payload;
  int finals = 0, replies = 0;
  for (auto& e : a.Progress("u1")) finals += AgentFixture::IsFinal(e.value("status", ""));
  replies = static_cast<int>(a.Replies("u1").size());
  EXPECT_EQ(finals, 1);
  EXPECT_EQ(replies, 1);
}
