#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <map>

#include "store/db.hpp"
#include "test_util.hpp"

using namespace gantry;
using gantry::store::Db;

namespace {

// name → sql of every table, index and trigger, as SQLite normalises it.
std::map<std::string, std::string> Dump(Db& db) {
  std::map<std::string, std::string> out;
  auto st = db.Prepare("SELECT type || ':' || name, sql FROM sqlite_master WHERE sql IS NOT NULL");
  EXPECT_TRUE(st.has_value());
  while (st->Step().value_or(false)) out[st->Text(0)] = st->Text(1);
  return out;
}

}  // namespace

TEST(Store, SchemaSqlEqualsAllMigrationsApplied) {
  auto fresh = Db::OpenBare(":memory:");
  ASSERT_TRUE(fresh);
  ASSERT_TRUE(fresh->Exec(store::SchemaSql())) << "schema.sql does not apply";
  auto migrated = Db::OpenBare(":memory:");
  ASSERT_TRUE(migrated);
  ASSERT_TRUE(migrated->Migrate());
  auto a = Dump(*fresh), b = Dump(*migrated);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b) << "schema.sql and the migrations disagree: update schema.sql";
  EXPECT_EQ(migrated->SchemaVersion(), store::Migrations().back().first);
}

TEST(Store, MigrationsAreNumberedInOrder) {
  int prev = 0;
  for (auto& [v, sql] : store::Migrations()) {
    EXPECT_EQ(v, prev + 1);
    prev = v;
  }
}

TEST(Store, OpenUsesWalAndFullSync) {
  test::TempDir dir;
  auto db = Db::Open(dir.path() / "g.db");
  ASSERT_TRUE(db) << db.error().String();
  auto st = db->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(st && st->Step().value_or(false));
  EXPECT_EQ(st->Text(0), "wal");
  auto sync = db->Prepare("PRAGMA synchronous");
  ASSERT_TRUE(sync && sync->Step().value_or(false));
  EXPECT_EQ(sync->Int(0), 2);  // FULL
}

TEST(Store, TransactionRollsBackUnlessCommitted) {
  test::TempDir dir;
  auto db = Db::Open(dir.path() / "g.db");
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->Exec("CREATE TABLE t(x INTEGER)"));
  {
    store::Transaction tx(*db);
    ASSERT_TRUE(tx.Begun());
    ASSERT_TRUE(db->Run("INSERT INTO t VALUES (?)", 1));
  }
  auto r = db->InTransaction([&]() -> ExpectedVoid {
    if (auto e = db->Run("INSERT INTO t VALUES (?)", 2); !e) return e;
    return Fail("test", "abandon");
  });
  EXPECT_FALSE(r);
  ASSERT_TRUE(db->InTransaction([&] { return db->Run("INSERT INTO t VALUES (?)", 3); }));
  auto st = db->Prepare("SELECT group_concat(x) FROM t");
  ASSERT_TRUE(st && st->Step().value_or(false));
  EXPECT_EQ(st->Text(0), "3");
}

TEST(Store, RefusesNewerSchema) {
  test::TempDir dir;
  {
    auto db = Db::Open(dir.path() / "g.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->Exec("PRAGMA user_version=9999"));
  }
  auto db = Db::Open(dir.path() / "g.db");
  ASSERT_FALSE(db);
  EXPECT_NE(db.error().message.find("newer"), std::string::npos);
}

TEST(Store, NestedTransactionIsASavepoint) {
  test::TempDir dir;
  auto db = Db::Open(dir.path() / "g.db");
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->Exec("CREATE TABLE t(x INTEGER)"));
  {
    store::Transaction outer(*db);
    ASSERT_TRUE(outer.Begun());
    ASSERT_TRUE(db->Run("INSERT INTO t VALUES (?)", 1));
    auto inner = db->InTransaction([&]() -> ExpectedVoid {
      if (auto e = db->Run("INSERT INTO t VALUES (?)", 2); !e) return e;
      return Fail("test", "inner fails");
    });
    EXPECT_FALSE(inner);
    ASSERT_TRUE(db->InTransaction([&] { return db->Run("INSERT INTO t VALUES (?)", 3); }));
    ASSERT_TRUE(outer.Commit());
  }
  auto st = db->Prepare("SELECT group_concat(x) FROM t");
  ASSERT_TRUE(st && st->Step().value_or(false));
  EXPECT_EQ(st->Text(0), "1,3");
}

// A deferred commit skips only the fsync: its rows are there (also after reopening), and
// every later commit is fsync'd again, whether the deferred one committed or rolled back. A
// deferred transaction inside a durable one is committed durably with it.
TEST(Store, DeferredDurabilityAppliesToItsOwnCommitOnly) {
  test::TempDir dir;
  auto sync_level = [](Db& db) {
    auto st = db.Prepare("PRAGMA synchronous");
    return st && st->Step().value_or(false) ? st->Int(0) : -1;
  };
  {
    auto db = Db::Open(dir.path() / "g.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->Exec("CREATE TABLE t(x INTEGER)"));
    std::int64_t inside = -1;
    ASSERT_TRUE(db->InTransaction([&]() -> ExpectedVoid {
      inside = sync_level(*db);
      return db->Run("INSERT INTO t VALUES (?)", 1);
    }, store::Durability::kDeferred));
    EXPECT_EQ(inside, 1);  // NORMAL: no fsync at this commit
    EXPECT_EQ(sync_level(*db), 2);  // FULL again for the next one
    EXPECT_FALSE(db->InTransaction([&]() -> ExpectedVoid { return Fail("test", "abandon"); },
                                   store::Durability::kDeferred));
    EXPECT_EQ(sync_level(*db), 2);
    {
      store::Transaction outer(*db);
      ASSERT_TRUE(db->InTransaction([&]() -> ExpectedVoid {
        inside = sync_level(*db);
        return db->Run("INSERT INTO t VALUES (?)", 2);
      }, store::Durability::kDeferred));
      EXPECT_EQ(inside, 2);  // the outer transaction decides
      ASSERT_TRUE(outer.Commit());
    }
  }
  auto db = Db::Open(dir.path() / "g.db");
  ASSERT_TRUE(db);
  auto st = db->Prepare("SELECT group_concat(x) FROM t");
  ASSERT_TRUE(st && st->Step().value_or(false));
  EXPECT_EQ(st->Text(0), "1,2");
}

// Compiled statements are cached by their SQL text: a reused one starts over with no bindings
// left from its last use, and the same text prepared again while the first is alive gets its
// own statement.
TEST(Store, CachedStatementsStartOverAndNeverShareAnIteration) {
  test::TempDir dir;
  auto db = Db::Open(dir.path() / "g.db");
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->Exec("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2), (3);"));
  for (int i = 1; i <= 3; ++i) {
    auto st = db->Prepare("SELECT count(*) FROM t WHERE x >= ?");
    ASSERT_TRUE(st);
    if (i > 1) st->Bind(1, i);  // unbound on the first use: NULL, no row matches
    ASSERT_TRUE(st->Step().value_or(false));
    EXPECT_EQ(st->Int(0), i == 1 ? 0 : 4 - i);
  }
  {
    auto a = db->Prepare("SELECT x FROM t ORDER BY x");
    ASSERT_TRUE(a && a->Step().value_or(false));
    auto b = db->Prepare("SELECT x FROM t ORDER BY x");
    ASSERT_TRUE(b && b->Step().value_or(false));
    EXPECT_EQ(b->Int(0), 1);
    ASSERT_TRUE(a->Step().value_or(false));
    EXPECT_EQ(a->Int(0), 2);  // b did not move a
  }  // both dropped mid-iteration
  auto again = db->Prepare("SELECT x FROM t ORDER BY x");
  ASSERT_TRUE(again && again->Step().value_or(false));
  EXPECT_EQ(again->Int(0), 1);
  ASSERT_TRUE(db->InTransaction([&] { return db->Run("INSERT INTO t VALUES (?)", 4); }));
}

// One connection shared by threads (gantryd's design): another thread's statement waits for
// an open transaction to end instead of joining it, so a rollback takes back only its own
// writes, and nothing ever waits on SQLite's busy timeout inside the process.
TEST(Store, ThreadsSharingAConnectionNeverJoinAnotherThreadsTransaction) {
  test::TempDir dir;
  auto db = Db::Open(dir.path() / "g.db");
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->Exec("CREATE TABLE t(x INTEGER)"));
  std::atomic<bool> began{false}, other_done{false};
  std::thread other;
  {
    store::Transaction tx(*db);
    ASSERT_TRUE(tx.Begun());
    ASSERT_TRUE(db->Run("INSERT INTO t VALUES (?)", 1));
    other = std::thread([&] {
      began = true;
      EXPECT_TRUE(db->Run("INSERT INTO t VALUES (?)", 2));
      other_done = true;
    });
    while (!began) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(other_done) << "the other thread wrote inside this transaction";
  }  // rolled back
  other.join();
  auto st = db->Prepare("SELECT group_concat(x) FROM t");
  ASSERT_TRUE(st && st->Step().value_or(false));
  EXPECT_EQ(st->Text(0), "2");
}
