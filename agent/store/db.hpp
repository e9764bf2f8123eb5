#pragma once
// SQLite behind a small RAII interface. No sqlite3 header leaks out of this module.
//
// One connection per process, shared by every thread (docs/architecture-engine.md): a Db
// carries one recursive "writer" lock. A Statement holds it from Prepare() to its
// destruction and a Transaction from BEGIN to COMMIT/ROLLBACK, so a thread's statements never
// interleave with another thread's transaction, and SQLite's own write lock is never waited
// for inside the process (its busy timeout only covers other processes, e.g. gantryctl).
// Keep every holder short: never hold a Statement or Transaction across I/O that is not
// SQLite's, and never wait for another lock while holding one.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace gantry::store {

// When a commit reaches the disk. kDurable: fsync'd before Commit() returns
// (synchronous=FULL), so it survives a power cut. kDeferred: in the WAL but fsync'd only with the
// next durable commit or checkpoint; a power cut may undo it, never reorder it. Only for writes
// whose loss redoes harmless work, e.g. deleting acknowledged outbox rows (a power cut then sends
// them again: at least once, as QoS 1 allows). Decided by the outermost transaction.
enum class Durability { kDurable, kDeferred };

class Statement {
 public:
  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;
  ~Statement();

  // Binds are 1-based like SQLite's; each returns *this for chaining.
  Statement& Bind(int index, std::int64_t value);
  Statement& Bind(int index, int value) { return Bind(index, static_cast<std::int64_t>(value)); }
  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, const char* text) { return Bind(index, std::string_view(text)); }
  Statement& Bind(int index, const std::string& text) { return Bind(index, std::string_view(text)); }
  Statement& Bind(int index, std::nullopt_t);
  Statement& BindBlob(int index, std::string_view bytes);
  template <class... Args>
  Statement& BindAll(Args&&... args) {
    int i = 1;
    (Bind(i++, std::forward<Args>(args)), ...);
    return *this;
  }

  // true: a row is ready; false: done. Errors (including bind errors) come out here.
  Expected<bool> Step();
  ExpectedVoid Run();  // Step() to completion, for statements without rows
  void Reset();

  std::int64_t Int(int col) const;
  std::string Text(int col) const;
  bool IsNull(int col) const;

 private:
  friend class Db;
  // cached: the cache's in-use mark of this statement, or null for one finalized after use.
  Statement(std::unique_lock<std::recursive_mutex> lock, sqlite3* db, sqlite3_stmt* stmt, bool* cached)
      : lock_(std::move(lock)), db_(db), stmt_(stmt, Finalizer{cached}) {}
  // Finalizes the statement, or resets a cached one and hands it back to the cache.
  struct Finalizer {
    bool* cached = nullptr;
    void operator()(sqlite3_stmt* s) const;
  };
  std::unique_lock<std::recursive_mutex> lock_;  // declared first: released after finalize
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
  std::optional<Error> bind_error_;
};

class Db {
 public:
  // Opens (creating) the database: WAL, synchronous=FULL, foreign keys, a busy timeout, and
  // every embedded migration not yet applied, each in its own transaction.
  static Expected<Db> Open(const std::filesystem::path& path);
  // An in-memory database with no migrations (for the schema test).
  static Expected<Db> OpenBare(const std::string& path);

  Db(Db&&) noexcept = default;
  Db& operator=(Db&&) noexcept = default;
  ~Db();

  ExpectedVoid Exec(std::string_view sql);  // one or more statements, no rows
  Expected<Statement> Prepare(std::string_view sql);
  template <class... Args>
  ExpectedVoid Run(std::string_view sql, Args&&... args) {
    auto st = Prepare(sql);
    if (!st) return Unexpected(st.error());
    st->BindAll(std::forward<Args>(args)...);
    return st->Run();
  }
  std::int64_t LastInsertId() const;
  bool InTransactionNow() const;
  std::int64_t Changes() const;

  // Runs fn() inside BEGIN IMMEDIATE … COMMIT; rolls back when fn returns an error.
  template <class F>
  ExpectedVoid InTransaction(F&& fn, Durability durability = Durability::kDurable);

  // Calls fn(pages in the WAL) after each commit instead of SQLite's automatic checkpoint;
  // an empty fn restores the automatic checkpoint.
  void OnCommit(std::function<void(int)> fn);

  // Applies migrations newer than PRAGMA user_version.
  ExpectedVoid Migrate();
  int SchemaVersion();

  // The writer lock (see the top of this file); Statement and Transaction take it themselves.
  std::unique_lock<std::recursive_mutex> Lock() { return std::unique_lock(*mutex_); }

 private:
  struct StatementCache;
  explicit Db(sqlite3* db);
  struct Closer {
    void operator()(sqlite3* db) const;
  };
  struct CacheDeleter {
    void operator()(StatementCache* cache) const;
  };
  std::unique_ptr<std::recursive_mutex> mutex_;  // outlives the connection
  std::unique_ptr<std::function<void(int)>> on_commit_;  // likewise
  std::unique_ptr<sqlite3, Closer> db_;
  // Compiled statements by SQL text, reused: the SQL is fixed text with bound values, and
  // compiling it cost more than running it. Declared after db_: finalized before the close.
  std::unique_ptr<StatementCache, CacheDeleter> cache_;
};

// Rolls back unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Db& db, Durability durability = Durability::kDurable);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ExpectedVoid Begun() const { return begun_; }
  ExpectedVoid Commit();

 private:
  void Finish();

  Db& db_;
  std::unique_lock<std::recursive_mutex> lock_;
  bool nested_;
  bool deferred_ = false;  // synchronous=NORMAL until this transaction ends
  ExpectedVoid begun_;
  bool done_ = false;
};

template <class F>
ExpectedVoid Db::InTransaction(F&& fn, Durability durability) {
  Transaction tx(*this, durability);
  if (auto b = tx.Begun(); !b) return b;
  ExpectedVoid r = fn();
  if (!r) return r;
  return tx.Commit();
}

// The embedded migrations, in order: {version, sql}.
const std::vector<std::pair<int, std::string_view>>& Migrations();
// The embedded schema.sql (the whole schema as it stands after every migration).
std::string_view SchemaSql();

}  // namespace gantry::store
