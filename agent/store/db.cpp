#include "store/db.hpp"

#include <sqlite3.h>

#include <string>
#include <unordered_map>

namespace gantry::store {
namespace {

Error SqlError(sqlite3* db, std::string_view what) {
  int code = sqlite3_extended_errcode(db);
  std::string c = (code & 0xff) == SQLITE_FULL ? "no_space" : "db";
  return Error{c, std::string(what) + ": " + sqlite3_errmsg(db)};
}

}  // namespace

void Statement::Finalizer::operator()(sqlite3_stmt* s) const {
  if (!cached) {
    sqlite3_finalize(s);
    return;
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  *cached = false;
}

struct Db::StatementCache {
  struct Entry {
    sqlite3_stmt* stmt;
    bool in_use;
  };
  // Bounded: statements whose text varies (a few build their WHERE clause) stop at the limit.
  static constexpr std::size_t kMax = 128;
  std::unordered_map<std::string, Entry> entries;  // nodes never move: in_use stays addressable
};

void Db::CacheDeleter::operator()(StatementCache* cache) const {
  for (auto& [sql, e] : cache->entries) sqlite3_finalize(e.stmt);
  delete cache;
}

Db::Db(sqlite3* db)
    : mutex_(std::make_unique<std::recursive_mutex>()), db_(db), cache_(new StatementCache) {}
Statement::~Statement() = default;

Statement& Statement::Bind(int index, std::int64_t value) {
  if (sqlite3_bind_int64(stmt_.get(), index, value) != SQLITE_OK && !bind_error_)
    bind_error_ = SqlError(db_, "bind");
  return *this;
}

Statement& Statement::Bind(int index, std::string_view text) {
  if (sqlite3_bind_text(stmt_.get(), index, text.data(), static_cast<int>(text.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK &&
      !bind_error_)
    bind_error_ = SqlError(db_, "bind");
  return *this;
}

Statement& Statement::Bind(int index, std::nullopt_t) {
  if (sqlite3_bind_null(stmt_.get(), index) != SQLITE_OK && !bind_error_)
    bind_error_ = SqlError(db_, "bind");
  return *this;
}

Statement& Statement::BindBlob(int index, std::string_view bytes) {
  if (sqlite3_bind_blob(stmt_.get(), index, bytes.data(), static_cast<int>(bytes.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK &&
      !bind_error_)
    bind_error_ = SqlError(db_, "bind");
  return *this;
}

Expected<bool> Statement::Step() {
  if (bind_error_) return Unexpected(*bind_error_);
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Unexpected(SqlError(db_, "step"));
}

ExpectedVoid Statement::Run() {
  for (;;) {
    auto r = Step();
    if (!r) return Unexpected(r.error());
    if (!*r) return {};
  }
}

void Statement::Reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
  bind_error_.reset();
}

std::int64_t Statement::Int(int col) const { return sqlite3_column_int64(stmt_.get(), col); }

std::string Statement::Text(int col) const {
  auto* p = sqlite3_column_blob(stmt_.get(), col);
  int n = sqlite3_column_bytes(stmt_.get(), col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

bool Statement::IsNull(int col) const {
  return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL;
}

void Db::Closer::operator()(sqlite3* db) const { sqlite3_close_v2(db); }
Db::~Db() = default;

Expected<Db> Db::OpenBare(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  Db db(raw);
  if (rc != SQLITE_OK)
    return Fail("db", "cannot open " + path + ": " + (raw ? sqlite3_errmsg(raw) : "out of memory"));
  sqlite3_busy_timeout(raw, 10000);
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

Expected<Db> Db::Open(const std::filesystem::path& path) {
  auto db = OpenBare(path.string());
  if (!db) return db;
  // A journal, not a cache: WAL for concurrent readers (gantryctl cache verify while gantryd
  // runs), synchronous=FULL so a committed transition survives a power cut.
  if (auto r = db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
      !r)
    return Unexpected(r.error().WithContext("opening " + path.string()));
  if (auto r = db->Migrate(); !r) return Unexpected(r.error().WithContext("migrating " + path.string()));
  return db;
}

ExpectedVoid Db::Exec(std::string_view sql) {
  auto lock = Lock();
  std::string s(sql);
  char* msg = nullptr;
  if (sqlite3_exec(db_.get(), s.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    Error e = SqlError(db_.get(), "exec");
    if (msg) {
      e.message = std::string("exec: ") + msg;
      sqlite3_free(msg);
    }
    return Unexpected(e);
  }
  return {};
}

Expected<Statement> Db::Prepare(std::string_view sql) {
  auto lock = Lock();
  std::string key(sql);
  auto& entries = cache_->entries;
  auto it = entries.find(key);
  if (it != entries.end() && !it->second.in_use) {
    it->second.in_use = true;
    return Statement(std::move(lock), db_.get(), it->second.stmt, &it->second.in_use);
  }
  // In use already (a statement prepared again while the first is alive) or past the limit:
  // compiled for this once.
  bool cache = it == entries.end() && entries.size() < StatementCache::kMax;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                         cache ? SQLITE_PREPARE_PERSISTENT : 0, &st, nullptr) != SQLITE_OK)
    return Unexpected(SqlError(db_.get(), "prepare '" + std::string(sql.substr(0, 60)) + "'"));
  if (!cache || !st) return Statement(std::move(lock), db_.get(), st, nullptr);
  auto& e = entries.emplace(std::move(key), StatementCache::Entry{st, true}).first->second;
  return Statement(std::move(lock), db_.get(), st, &e.in_use);
}

void Db::OnCommit(std::function<void(int)> fn) {
  auto lock = Lock();
  if (!fn) {  // back to SQLite's automatic checkpoint
    sqlite3_wal_autocheckpoint(db_.get(), 1000);
    on_commit_.reset();
    return;
  }
  on_commit_ = std::make_unique<std::function<void(int)>>(std::move(fn));
  sqlite3_wal_hook(
      db_.get(),
      [](void* arg, sqlite3*, const char*, int pages) {
        (*static_cast<std::function<void(int)>*>(arg))(pages);
        return SQLITE_OK;
      },
      on_commit_.get());
}

std::int64_t Db::LastInsertId() const { return sqlite3_last_insert_rowid(db_.get()); }
std::int64_t Db::Changes() const { return sqlite3_changes64(db_.get()); }

int Db::SchemaVersion() {
  auto st = Prepare("PRAGMA user_version");
  if (!st || !st->Step().value_or(false)) return -1;
  return static_cast<int>(st->Int(0));
}

ExpectedVoid Db::Migrate() {
  int have = SchemaVersion();
  if (have < 0) return Fail("db", "cannot read schema version");
  int newest = Migrations().empty() ? 0 : Migrations().back().first;
  if (have > newest)
    return Fail("db", "database schema " + std::to_string(have) + " is newer than this binary's " +
                          std::to_string(newest));
  for (const auto& [version, sql] : Migrations()) {
    if (version <= have) continue;
    // Captured by name: clang before 16 cannot capture structured bindings.
    auto r = InTransaction([this, &sql = sql, version = version]() -> ExpectedVoid {
      if (auto e = Exec(sql); !e) return e;
      return Exec("PRAGMA user_version=" + std::to_string(version));
    });
    if (!r) return Unexpected(r.error().WithContext("migration " + std::to_string(version)));
  }
  return {};
}

bool Db::InTransactionNow() const {
  std::lock_guard lock(*mutex_);
  return sqlite3_get_autocommit(db_.get()) == 0;
}

// Inside an open transaction a nested guard is a savepoint, so units that guard their own
// writes compose into a caller's transaction.
// The writer lock is taken before looking: "in a transaction" then means this thread's own.
Transaction::Transaction(Db& db, Durability durability)
    : db_(db), lock_(db.Lock()), nested_(db.InTransactionNow()) {
  // The writer lock is held from here to Finish(), so no other commit runs unsynced meanwhile.
  if (!nested_ && durability == Durability::kDeferred)
    deferred_ = db_.Run("PRAGMA synchronous=NORMAL").has_value();
  begun_ = db_.Run(nested_ ? "SAVEPOINT gantry_nested" : "BEGIN IMMEDIATE");
  if (!begun_) Finish();
}

Transaction::~Transaction() {
  if (done_) return;
  if (nested_)
    (void)db_.Exec("ROLLBACK TO gantry_nested; RELEASE gantry_nested");
  else
    (void)db_.Exec("ROLLBACK");
  Finish();
}

ExpectedVoid Transaction::Commit() {
  if (done_) return Fail("db", "transaction already finished");
  auto r = db_.Run(nested_ ? "RELEASE gantry_nested" : "COMMIT");
  if (!r) (void)db_.Exec(nested_ ? "ROLLBACK TO gantry_nested; RELEASE gantry_nested" : "ROLLBACK");
  Finish();
  return r;
}

void Transaction::Finish() {
  done_ = true;
  if (deferred_) (void)db_.Run("PRAGMA synchronous=FULL");
  deferred_ = false;
}

}  // namespace gantry::store
