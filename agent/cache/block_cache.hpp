#pragma once
// The content-addressed block cache (docs/architecture.md FETCHING, docs/operator-guide.md layout): verified blocks in
// <data_dir>/objects/<aa>/<sha256> (mode 0444), partial downloads in <data_dir>/tmp/<sha256>,
// tracked in SQLite (tables blocks and pins of <data_dir>/gantry.db, on a connection of its
// own). A block is recorded only after its bytes hashed to its id, were fsync'd and renamed
// into objects/, and the directory was fsync'd; so a row always has its file.
//
// Thread-safety: every member may be called from any thread. The tables live on the agent's
// one shared connection (store::Db, whose writer lock serialises every statement); the
// cache's own mutex guards only its in-memory set of in-flight blocks and is never held while
// SQLite is used, so no lock order can invert. Fetch() runs its transfers on worker threads
// and holds no lock while bytes move, so Has/Pin/Unpin/GetStats/Collect from the agent's loop
// answer promptly during a Fetch. Pin a revision's blocks before fetching them: Collect()
// only ever evicts unpinned blocks.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/error.hpp"
#include "store/db.hpp"

namespace gantry::cache {

struct BlockRef {
  std::string id;  // 64 lowercase hex characters
  std::uint64_t size;
};

struct Progress {
  std::uint64_t total_bytes = 0, done_bytes = 0;  // over every requested block, cached included
  int objects = 0, objects_done = 0;
  // Of done_bytes: what came over the network, and what chunked blocks copied from chunks
  // the device already held (docs/chunked-blocks.md).
  std::uint64_t fetched_bytes = 0, reused_bytes = 0;
};

struct FetchRequest {
  std::vector<BlockRef> blocks;
  std::string objects_base;  // http://, https:// or file:// URL; a '/' is added when missing
  int parallel = 4;
  std::optional<std::string> ca_file;
  // Called from a worker thread (never two at once), at most ~10 times a second, plus once at
  // the end when everything is in.
  std::function<void(const Progress&)> on_progress;
  const std::atomic<bool>* cancel = nullptr;
};

struct Stats {
  std::uint64_t bytes = 0;
  std::int64_t blocks = 0;
  std::uint64_t quota_bytes = 0;
};

struct BlockInfo {
  std::string id;
  std::uint64_t size = 0;
  std::int64_t added_at = 0, last_used = 0;
  std::vector<std::string> pinned_by;  // revisions
  // Its chunks are in the chunk table; when it was assembled from chunks, the bytes fetched
  // and those reused from other blocks (both 0 for a block fetched whole).
  bool chunked = false;
  std::uint64_t fetched_bytes = 0, reused_bytes = 0;
};

struct Options {
  std::uint64_t quota_bytes = 0;  // 0 = no quota
  // Free bytes on the data dir's file system; statvfs unless a test injects its own.
  std::function<Expected<std::uint64_t>(const std::filesystem::path&)> available_bytes;
  // Retry tuning of the transfers (tests shorten it).
  int max_attempts = 5;
  std::chrono::milliseconds backoff_first{250}, backoff_max{8000};
  std::chrono::seconds low_speed_time{30};
};

class BlockCache {
 public:
  static Expected<std::unique_ptr<BlockCache>> Open(const std::filesystem::path& data_dir,
                                                    std::uint64_t quota_bytes);
  static Expected<std::unique_ptr<BlockCache>> Open(const std::filesystem::path& data_dir,
                                                    Options options);
  // On the process's shared connection (gantryd): db must outlive the cache.
  static Expected<std::unique_ptr<BlockCache>> Open(const std::filesystem::path& data_dir,
                                                    Options options, store::Db& db);

  // Error "no_space" ("space required X B, available Y B") when the blocks not yet cached do
  // not fit in the quota or on the disk, counting what eviction of unpinned blocks would free.
  ExpectedVoid CheckSpace(const std::vector<BlockRef>& blocks);
  // Fetches the missing blocks; blocking. The space check runs before any byte is fetched.
  // Error codes: hash_mismatch (a block's bytes did not match its id twice; the message names
  // it), http (a 4xx or missing file), no_space, cancelled, network (retries exhausted), io.
  ExpectedVoid Fetch(const FetchRequest& request);

  bool Has(const std::string& id);
  std::filesystem::path PathOf(const std::string& id) const;

  // A pin keeps blocks from collection; ids need not be cached yet.
  ExpectedVoid Pin(const std::string& rev, const std::vector<std::string>& ids);
  ExpectedVoid Unpin(const std::string& rev);
  // Evicts unpinned blocks, least recently used first, until the cache is within its quota;
  // with full=true every unpinned block goes, and so do partial downloads that no Fetch is
  // working on. Returns the bytes freed.
  Expected<std::uint64_t> Collect(bool full = false);
  // Ids of the blocks in objects/ whose bytes do not hash to their name. Read-only.
  Expected<std::vector<std::string>> Verify();
  Expected<Stats> GetStats();
  Expected<std::vector<BlockInfo>> List();

  // Read-only, lock-free checks for gantryctl, safe while gantryd runs on the same data dir.
  static Expected<std::vector<std::string>> VerifyDir(const std::filesystem::path& data_dir);
  static Expected<std::vector<BlockInfo>> ListDir(const std::filesystem::path& data_dir);
  // Problems of the chunk table (docs/chunked-blocks.md), one message each. Read-only.
  static Expected<std::vector<std::string>> VerifyChunksDir(const std::filesystem::path& data_dir);

 private:
  BlockCache(std::filesystem::path data_dir, Options options, std::unique_ptr<store::Db> owned,
             store::Db& db);
  ExpectedVoid Reconcile();
  ExpectedVoid Commit(const BlockRef& block, const std::filesystem::path& partial);
  // What the missing blocks need against what there is (free disk plus what evicting
  // unpinned blocks would free; the quota room), for the tighter of the two.
  struct Space {
    std::uint64_t required, available;
  };
  Expected<Space> Measure(const std::vector<BlockRef>& missing);
  ExpectedVoid MakeRoom(const std::vector<BlockRef>& missing, const std::vector<BlockRef>& keep);
  Expected<std::uint64_t> Evict(const std::string& id, std::uint64_t size);
  ExpectedVoid Touch(const std::vector<std::string>& ids);
  // Chunked blocks: records the chunks of cached blocks that have none recorded yet (so a
  // cache filled by whole-block fetches seeds assemblies), then tries to assemble `block`
  // from its chunk index. Returns true when the block was committed, false when it must be
  // fetched whole.
  ExpectedVoid ChunkUnchunked();
  Expected<bool> Assemble(const BlockRef& block, const FetchRequest& request,
                          const std::function<void(std::int64_t, std::int64_t)>& on_bytes);
  std::filesystem::path PartialOf(const std::string& id) const;

  std::filesystem::path dir_;
  Options options_;
  std::unique_ptr<store::Db> owned_db_;  // when opened without a shared connection
  store::Db& db_;
  // Guards in_flight_ and keeps eviction from racing the chunk table. Lock order: db_.Lock()
  // (the writer lock, which a command holds for its whole transaction) before mutex_, never
  // the reverse: the other order deadlocked gc against a download with chunk lookups.
  std::mutex mutex_;
  std::unordered_set<std::string> in_flight_;  // blocks a Fetch is downloading into tmp/
};

}  // namespace gantry::cache
