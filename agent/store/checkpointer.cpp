#include "store/checkpointer.hpp"

#include "core/log.hpp"

namespace gantry::store {
namespace {
constexpr int kWalPages = 1000;  // SQLite's own automatic checkpoint threshold
}

Expected<std::unique_ptr<Checkpointer>> Checkpointer::Start(Db& db, const std::filesystem::path& path) {
  auto own = Db::OpenBare(path.string());
  if (!own) return Unexpected(own.error().WithContext("checkpoint connection"));
  std::unique_ptr<Checkpointer> c(new Checkpointer(db, std::move(*own)));
  db.OnCommit([raw = c.get()](int pages) {
    if (pages >= kWalPages) raw->Due();
  });
  return c;
}

Checkpointer::Checkpointer(Db& db, Db&& own) : db_(db), own_(std::move(own)), thread_([this] { Run(); }) {}

Checkpointer::~Checkpointer() {
  db_.OnCommit({});
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Checkpointer::Due() {
  {
    std::lock_guard lock(mutex_);
    due_ = true;
  }
  wake_.notify_one();
}

void Checkpointer::Run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return due_ || stop_; });  // no timer: no idle wake-ups
    if (stop_) return;
    due_ = false;
    lock.unlock();
    // PASSIVE copies what no reader still needs without the write lock, so the main
    // connection keeps committing meanwhile; once it has copied everything the next commit
    // restarts the WAL from its beginning, which keeps the file small.
    if (auto r = own_.Exec("PRAGMA wal_checkpoint(PASSIVE)"); !r)
      log::Warn("store", r.error().WithContext("checkpoint").String());
    lock.lock();
  }
}

}  // namespace gantry::store
