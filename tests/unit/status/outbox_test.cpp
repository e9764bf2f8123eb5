#include <gtest/gtest.h>

#include <mutex>

#include "status/outbox.hpp"
#include "test_util.hpp"

using namespace gantry;

namespace {

// Records publishes; the test decides when the broker acknowledges or refuses each.
class FakeClient : public mqtt::Client {
 public:
  void Start(Handlers) override {}
  void Publish(const mqtt::Message& m, std::function<void(bool)> done) override {
    std::lock_guard l(mu);
    sent.push_back(m);
    pending.push_back(std::move(done));
  }
  bool Connected() const override { return true; }
  void Stop() override {}
  void AckAll(bool ok) {
    std::vector<std::function<void(bool)>> p;
    {
      std::lock_guard l(mu);
      p.swap(pending);
    }
    for (auto& d : p) d(ok);
  }
  std::mutex mu;
  std::vector<mqtt::Message> sent;
  std::vector<std::function<void(bool)>> pending;
};

struct Fixture {
  test::TempDir dir;
  store::Db db = *store::Db::Open(dir.path() / "g.db");
  EventLoop loop;
  FakeClient client;
  status::Outbox outbox{db, loop, client};
  void Drain() { loop.RunUntil([] { return false; }, std::chrono::milliseconds(20)); }
};

}  // namespace

TEST(Outbox, KeepsRowsUntilAcknowledgedAndPublishesInOrder) {
  Fixture f;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(f.outbox.Enqueue("p/progress", std::to_string(i), 1, false));
  EXPECT_TRUE(f.client.sent.empty()) << "published before connecting";
  f.outbox.OnConnected();
  ASSERT_EQ(f.client.sent.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.client.sent[i].payload, std::to_string(i));
  EXPECT_EQ(f.outbox.Pending(), 5);
  f.client.AckAll(true);
  f.Drain();
  EXPECT_EQ(f.outbox.Pending(), 0);
}

TEST(Outbox, RefusedMessagesAreRepublishedInOrderAfterReconnect) {
  Fixture f;
  f.outbox.OnConnected();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(f.outbox.Enqueue("p/progress", std::to_string(i), 1, false));
  f.client.AckAll(false);  // the connection went away before the broker took them
  f.Drain();
  f.outbox.OnLost();
  ASSERT_TRUE(f.outbox.Enqueue("p/progress", "3", 1, false));
  EXPECT_EQ(f.client.sent.size(), 3u) << "published while disconnected";
  f.client.sent.clear();
  f.outbox.OnConnected();
  ASSERT_EQ(f.client.sent.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f.client.sent[i].payload, std::to_string(i));
  f.client.AckAll(true);
  f.Drain();
  EXPECT_EQ(f.outbox.Pending(), 0);
}

TEST(Outbox, SurvivesARestart) {
  test::TempDir dir;
  {
    auto db = *store::Db::Open(dir.path() / "g.db");
    EventLoop loop;
    FakeClient client;
    status::Outbox outbox(db, loop, client);
    ASSERT_TRUE(outbox.Enqueue("p/progress", "a", 1, false));
    ASSERT_TRUE(outbox.Enqueue("p/progress", "b", 1, false));
  }
  auto db = *store::Db::Open(dir.path() / "g.db");
  EventLoop loop;
  FakeClient client;
  status::Outbox outbox(db, loop, client);
  outbox.OnConnected();
  ASSERT_EQ(client.sent.size(), 2u);
  EXPECT_EQ(client.sent[0].payload, "a");
  EXPECT_EQ(client.sent[1].payload, "b");
}

TEST(Outbox, OnlyTheNewestUnsentRetainedStateIsKept) {
  Fixture f;
  ASSERT_TRUE(f.outbox.Enqueue("p/state", "s1", 1, true));
  ASSERT_TRUE(f.outbox.Enqueue("p/progress", "e1", 1, false));
  ASSERT_TRUE(f.outbox.Enqueue("p/state", "s2", 1, true));
  EXPECT_EQ(f.outbox.Pending(), 2);
  f.outbox.OnConnected();
  ASSERT_EQ(f.client.sent.size(), 2u);
  EXPECT_EQ(f.client.sent[0].payload, "e1");
  EXPECT_EQ(f.client.sent[1].payload, "s2");
  EXPECT_TRUE(f.client.sent[1].retain);
}

// A row enqueued inside a caller's transaction leaves only after that transaction commits,
// and never when it rolls back: QUEUED must not reach the operator for a command a power cut
// could still forget.
TEST(Outbox, PublishesNothingBeforeTheCallersTransactionCommits) {
  Fixture f;
  f.outbox.OnConnected();
  {
    store::Transaction tx(f.db);
    ASSERT_TRUE(f.outbox.Enqueue("p/progress", "rolled-back", 1, false));
    EXPECT_TRUE(f.client.sent.empty()) << "published inside an uncommitted transaction";
  }
  f.Drain();
  EXPECT_TRUE(f.client.sent.empty()) << "published a rolled-back row";
  {
    store::Transaction tx(f.db);
    ASSERT_TRUE(f.outbox.Enqueue("p/progress", "committed", 1, false));
    EXPECT_TRUE(f.client.sent.empty());
    ASSERT_TRUE(tx.Commit());
  }
  f.Drain();
  ASSERT_EQ(f.client.sent.size(), 1u);
  EXPECT_EQ(f.client.sent[0].payload, "committed");
}
