#pragma once
// Moves the WAL into the database file from a thread and connection of its own, so that no
// command or progress commit pays for a checkpoint (see docs/architecture-engine.md).
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "store/db.hpp"

namespace gantry::store {

class Checkpointer {
 public:
  // Replaces `db`'s automatic checkpoint (which ran inside whichever commit crossed 1,000 WAL
  // pages, under the writer lock) by a passive one on this thread once a commit crosses them.
  static Expected<std::unique_ptr<Checkpointer>> Start(Db& db, const std::filesystem::path& path);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

 private:
  Checkpointer(Db& db, Db&& own);
  void Due();
  void Run();

  Db& db_;
  Db own_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool due_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace gantry::store
