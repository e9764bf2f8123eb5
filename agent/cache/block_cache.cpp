#include "cache/block_cache.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <unordered_set>

#include "chunk/assemble.hpp"
#include "chunk/index.hpp"
#include "chunk/table.hpp"
#include "core/fs.hpp"
#include "core/saturating.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"
#include "digest/sha256.hpp"
#include "fetch/fetcher.hpp"

namespace gantry::cache {
namespace {

namespace stdfs = std::filesystem;
constexpr char kLog[] = "cache";

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string SpaceMessage(std::uint64_t required, std::uint64_t available) {
  return "space required " + std::to_string(required) + " B, available " +
         std::to_string(available) + " B";
}

std::uint64_t FileSizeOr0(const stdfs::path& p) {
  std::error_code ec;
  auto n = stdfs::file_size(p, ec);
  return ec ? 0 : n;
}

// Every file under objects/ as {id, path}; anything that is not <aa>/<id> with id starting
// with aa is reported with an empty id.
std::vector<std::pair<std::string, stdfs::path>> ScanObjects(const stdfs::path& objects,
                                                             std::error_code& ec) {
  std::vector<std::pair<std::string, stdfs::path>> out;
  for (auto& sub : stdfs::directory_iterator(objects, ec)) {
    if (!sub.is_directory()) {
      out.emplace_back("", sub.path());
      continue;
    }
    auto prefix = sub.path().filename().string();
    std::error_code sub_ec;
    for (auto& f : stdfs::directory_iterator(sub.path(), sub_ec)) {
      auto name = f.path().filename().string();
      bool ok = f.is_regular_file() && IsBlockId(name) && name.compare(0, 2, prefix) == 0;
      out.emplace_back(ok ? name : "", f.path());
    }
    if (sub_ec) ec = sub_ec;
  }
  return out;
}

}  // namespace

BlockCache::BlockCache(stdfs::path data_dir, Options options, std::unique_ptr<store::Db> owned,
                       store::Db& db)
    : dir_(std::move(data_dir)), options_(std::move(options)), owned_db_(std::move(owned)), db_(db) {
  if (!options_.available_bytes) options_.available_bytes = fs::AvailableBytes;
}

Expected<std::unique_ptr<BlockCache>> BlockCache::Open(const stdfs::path& data_dir,
                                                       std::uint64_t quota_bytes) {
  Options o;
  o.quota_bytes = quota_bytes;
  return Open(data_dir, std::move(o));
}

namespace {
ExpectedVoid MakeCacheDirs(const stdfs::path& data_dir) {
  std::error_code ec;
  if (!stdfs::exists(data_dir, ec))
    if (auto r = fs::MakeDirs(data_dir, 0700); !r) return r;
  if (auto r = fs::MakeDirs(data_dir / "objects", 0755); !r) return r;
  return fs::MakeDirs(data_dir / "tmp", 0700);
}
}  // namespace

Expected<std::unique_ptr<BlockCache>> BlockCache::Open(const stdfs::path& data_dir,
                                                       Options options) {
  if (auto r = MakeCacheDirs(data_dir); !r) return Unexpected(r.error());
  auto db = store::Db::Open(data_dir / "gantry.db");
  if (!db) return Unexpected(db.error());
  auto owned = std::make_unique<store::Db>(std::move(*db));
  auto& ref = *owned;
  std::unique_ptr<BlockCache> cache(new BlockCache(data_dir, std::move(options), std::move(owned), ref));
  if (auto r = cache->Reconcile(); !r) return Unexpected(r.error().WithContext("reconciling the cache"));
  return cache;
}

Expected<std::unique_ptr<BlockCache>> BlockCache::Open(const stdfs::path& data_dir,
                                                       Options options, store::Db& db) {
  if (auto r = MakeCacheDirs(data_dir); !r) return Unexpected(r.error());
  std::unique_ptr<BlockCache> cache(new BlockCache(data_dir, std::move(options), nullptr, db));
  if (auto r = cache->Reconcile(); !r) return Unexpected(r.error().WithContext("reconciling the cache"));
  return cache;
}

stdfs::path BlockCache::PathOf(const std::string& id) const {
  return dir_ / "objects" / id.substr(0, 2) / id;
}

stdfs::path BlockCache::PartialOf(const std::string& id) const { return dir_ / "tmp" / id; }

// After a crash the file system and SQLite may disagree in the ways the commit order allows
// (a renamed file without its row) and in ways it does not (a row without its file, after
// manual meddling). Both are fixed here; partials stay for resume.
ExpectedVoid BlockCache::Reconcile() {
  std::unordered_map<std::string, std::uint64_t> rows;
  {
    auto st = db_.Prepare("SELECT id, size FROM blocks");
    if (!st) return Unexpected(st.error());
    for (;;) {
      auto row = st->Step();
      if (!row) return Unexpected(row.error());
      if (!*row) break;
      rows[st->Text(0)] = static_cast<std::uint64_t>(st->Int(1));
    }
  }
  for (auto& [id, size] : rows) {
    std::error_code ec;
    auto actual = stdfs::file_size(PathOf(id), ec);
    if (!ec && actual == size) continue;
    log::Warn(kLog, "block " + id + (ec ? " is recorded but missing" : " has the wrong size") +
                        "; forgetting it");
    if (auto r = db_.Run("DELETE FROM blocks WHERE id = ?", id); !r) return r;
    if (!ec) stdfs::remove(PathOf(id), ec);
  }
  std::error_code ec;
  auto files = ScanObjects(dir_ / "objects", ec);
  if (ec) return Fail("io", "cannot list " + (dir_ / "objects").string() + ": " + ec.message());
  for (auto& [id, path] : files) {
    if (!id.empty() && rows.count(id) && stdfs::exists(path)) continue;
    if (!id.empty()) {
      auto sha = digest::Sha256File(path);
      if (!sha) return Unexpected(sha.error());
      if (*sha == id) {
        log::Info(kLog, "adopting unrecorded verified block " + id);
        ::chmod(path.c_str(), 0444);
        auto now = NowMs();
        if (auto r = db_.Run("INSERT OR REPLACE INTO blocks (id, size, added_at, last_used) "
                             "VALUES (?, ?, ?, ?)",
                             id, static_cast<std::int64_t>(stdfs::file_size(path)), now, now);
            !r)
          return r;
        continue;
      }
    }
    log::Warn(kLog, "removing " + path.string() + ": not a verified block");
    std::error_code rm_ec;
    stdfs::remove_all(path, rm_ec);
  }
  for (auto& f : stdfs::directory_iterator(dir_ / "tmp", ec)) {
    auto name = f.path().filename().string();
    if (IsBlockId(name) && f.is_regular_file() && !stdfs::exists(PathOf(name))) continue;
    // An assembly's fetched chunks are kept for its resume (its output is rebuilt).
    if (auto of = chunk::BlockOfTmpName(name);
        name == chunk::WorkDirName(of) && f.is_directory() && !stdfs::exists(PathOf(of)))
      continue;
    std::error_code rm_ec;
    stdfs::remove_all(f.path(), rm_ec);
  }
  return {};
}

bool BlockCache::Has(const std::string& id) {
  auto st = db_.Prepare("SELECT 1 FROM blocks WHERE id = ?");
  if (!st) return false;
  st->Bind(1, id);
  return st->Step().value_or(false);
}

ExpectedVoid BlockCache::Touch(const std::vector<std::string>& ids) {
  if (ids.empty()) return {};
  auto now = NowMs();
  return db_.InTransaction([&]() -> ExpectedVoid {
    for (auto& id : ids)
      if (auto r = db_.Run("UPDATE blocks SET last_used = ? WHERE id = ?", now, id); !r) return r;
    return {};
  });
}

ExpectedVoid BlockCache::Pin(const std::string& rev, const std::vector<std::string>& ids) {
  return db_.InTransaction([&]() -> ExpectedVoid {
    for (auto& id : ids)
      if (auto r = db_.Run("INSERT OR IGNORE INTO pins (rev, block_id) VALUES (?, ?)", rev, id); !r)
        return r;
    return Touch(ids);
  });
}

ExpectedVoid BlockCache::Unpin(const std::string& rev) {
  return db_.Run("DELETE FROM pins WHERE rev = ?", rev);
}

Expected<Stats> BlockCache::GetStats() {
  auto st = db_.Prepare("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks");
  if (!st) return Unexpected(st.error());
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  return Stats{static_cast<std::uint64_t>(st->Int(0)), st->Int(1), options_.quota_bytes};
}

Expected<BlockCache::Space> BlockCache::Measure(const std::vector<BlockRef>& missing) {
  std::unordered_set<std::string> keep;
  Space disk{0, 0}, quota{0, 0};
  for (auto& b : missing) {
    keep.insert(b.id);
    quota.required = AddSat(quota.required, b.size);
    auto have = std::min(FileSizeOr0(PartialOf(b.id)), b.size);
    disk.required = AddSat(disk.required, b.size - have);
  }
  std::uint64_t cached = 0, collectable = 0;
  {
    auto st = db_.Prepare(
        "SELECT id, size, EXISTS (SELECT 1 FROM pins WHERE pins.block_id = blocks.id) FROM blocks");
    if (!st) return Unexpected(st.error());
    for (;;) {
      auto row = st->Step();
      if (!row) return Unexpected(row.error());
      if (!*row) break;
      auto size = static_cast<std::uint64_t>(st->Int(1));
      cached += size;
      if (st->Int(2) == 0 && !keep.count(st->Text(0))) collectable += size;
    }
  }
  auto avail = options_.available_bytes(dir_);
  if (!avail) return Unexpected(avail.error());
  disk.available = *avail + collectable;
  if (options_.quota_bytes > 0) {
    auto kept = cached - collectable;
    quota.available = options_.quota_bytes > kept ? options_.quota_bytes - kept : 0;
    if (quota.required > quota.available) return quota;
  }
  return disk;
}

ExpectedVoid BlockCache::CheckSpace(const std::vector<BlockRef>& blocks) {
  std::vector<BlockRef> missing;
  std::unordered_set<std::string> seen;
  for (auto& b : blocks)
    if (seen.insert(b.id).second && !Has(b.id)) missing.push_back(b);
  auto space = Measure(missing);
  if (!space) return Unexpected(space.error());
  if (space->required > space->available)
    return Fail("no_space", SpaceMessage(space->required, space->available));
  return {};
}

Expected<std::uint64_t> BlockCache::Evict(const std::string& id, std::uint64_t size) {
  // Row first: a crash in between leaves a file without a row, which Reconcile() adopts or
  // removes, never a row without its file.
  if (auto r = db_.Run("DELETE FROM blocks WHERE id = ?", id); !r) return Unexpected(r.error());
  std::error_code ec;
  stdfs::remove(PathOf(id), ec);
  if (ec) return Fail("io", "cannot remove " + PathOf(id).string() + ": " + ec.message());
  log::Debug(kLog, "evicted block " + id);
  return size;
}

// Evicts unpinned blocks not in `keep`, least recently used first, until the missing blocks
// fit both on the disk and in the quota.
ExpectedVoid BlockCache::MakeRoom(const std::vector<BlockRef>& missing,
                                  const std::vector<BlockRef>& keep) {
  std::uint64_t need_disk = 0, need_quota = 0;
  for (auto& b : missing) {
    need_quota = AddSat(need_quota, b.size);
    need_disk = AddSat(need_disk, b.size - std::min(FileSizeOr0(PartialOf(b.id)), b.size));
  }
  std::unordered_set<std::string> kept;
  for (auto& b : keep) kept.insert(b.id);
  auto total = db_.Prepare("SELECT COALESCE(SUM(size), 0) FROM blocks");
  if (!total) return Unexpected(total.error());
  if (auto row = total->Step(); !row) return Unexpected(row.error());
  auto cached = static_cast<std::uint64_t>(total->Int(0));
  auto avail = options_.available_bytes(dir_);
  if (!avail) return Unexpected(avail.error());
  std::uint64_t disk = *avail;
  auto fits = [&] {
    return disk >= need_disk && (options_.quota_bytes == 0 || AddSat(cached, need_quota) <= options_.quota_bytes);
  };
  if (fits()) return {};
  auto st = db_.Prepare(
      "SELECT id, size FROM blocks WHERE id NOT IN (SELECT block_id FROM pins) "
      "ORDER BY last_used, id");
  if (!st) return Unexpected(st.error());
  std::vector<std::pair<std::string, std::uint64_t>> candidates;
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    if (!kept.count(st->Text(0))) candidates.emplace_back(st->Text(0), st->Int(1));
  }
  for (auto& [id, size] : candidates) {
    if (fits()) break;
    auto freed = Evict(id, size);
    if (!freed) return Unexpected(freed.error());
    cached -= *freed;
    disk += *freed;
  }
  return {};
}

Expected<std::uint64_t> BlockCache::Collect(bool full) {
  std::uint64_t cached = 0;
  std::vector<std::pair<std::string, std::uint64_t>> candidates;
  {
    auto total = db_.Prepare("SELECT COALESCE(SUM(size), 0) FROM blocks");
    if (!total) return Unexpected(total.error());
    if (auto row = total->Step(); !row) return Unexpected(row.error());
    cached = static_cast<std::uint64_t>(total->Int(0));
  }
  if (!full && (options_.quota_bytes == 0 || cached <= options_.quota_bytes)) return 0;
  {
    auto st = db_.Prepare(
        "SELECT id, size FROM blocks WHERE id NOT IN (SELECT block_id FROM pins) "
        "ORDER BY last_used, id");
    if (!st) return Unexpected(st.error());
    for (;;) {
      auto row = st->Step();
      if (!row) return Unexpected(row.error());
      if (!*row) break;
      candidates.emplace_back(st->Text(0), st->Int(1));
    }
  }
  std::uint64_t freed_total = 0;
  for (auto& [id, size] : candidates) {
    if (!full && cached <= options_.quota_bytes) break;
    auto freed = Evict(id, size);
    if (!freed) return Unexpected(freed.error());
    cached -= std::min(cached, *freed);
    freed_total += *freed;
  }
  if (full) {
    // Partials of abandoned updates would otherwise stay for a resume that never comes. The
    // mutex keeps a Fetch from starting on a partial while it goes; no SQLite in here.
    std::lock_guard lock(mutex_);
    std::error_code ec;
    for (auto& f : stdfs::directory_iterator(dir_ / "tmp", ec)) {
      auto name = f.path().filename().string();
      if (in_flight_.count(name) || in_flight_.count(chunk::BlockOfTmpName(name))) continue;
      auto size = FileSizeOr0(f.path());
      std::error_code rm_ec;
      if (stdfs::remove_all(f.path(), rm_ec) > 0) freed_total += size;
    }
  }
  return freed_total;
}

// The commit order of docs/architecture.md: the partial is fsync'd, renamed into objects/ and the
// directory fsync'd before the row exists.
ExpectedVoid BlockCache::Commit(const BlockRef& block, const stdfs::path& partial) {
  {
    fs::Fd fd(::open(partial.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Fail("io", fs::ErrnoMessage("cannot open", partial));
    // A block is only ever recorded with the byte count it has: a short one would be
    // "forgotten" by the next start's Reconcile while a revision still runs from it.
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Fail("io", fs::ErrnoMessage("cannot stat", partial));
    if (static_cast<std::uint64_t>(st.st_size) != block.size)
      return Fail("bad_size", "block " + block.id + " has " + std::to_string(st.st_size) +
                                  " bytes; the revision declares " + std::to_string(block.size));
    if (::fsync(fd.get()) != 0) return Fail("io", fs::ErrnoMessage("cannot fsync", partial));
    if (::fchmod(fd.get(), 0444) != 0) return Fail("io", fs::ErrnoMessage("cannot chmod", partial));
  }
  auto target = PathOf(block.id);
  auto sub = target.parent_path();
  std::error_code ec;
  if (!stdfs::exists(sub, ec)) {
    if (auto r = fs::MakeDirs(sub, 0755); !r) return r;
    if (auto r = fs::FsyncPath(dir_ / "objects"); !r) return r;
  }
  if (::rename(partial.c_str(), target.c_str()) != 0)
    return Fail("io", fs::ErrnoMessage("cannot rename into", target));
  if (auto r = fs::FsyncPath(sub); !r) return r;
  auto now = NowMs();
  return db_.Run(
      "INSERT OR REPLACE INTO blocks (id, size, added_at, last_used) VALUES (?, ?, ?, ?)", block.id,
      static_cast<std::int64_t>(block.size), now, now);
}

ExpectedVoid BlockCache::Fetch(const FetchRequest& request) {
  std::vector<BlockRef> blocks, missing;
  std::unordered_set<std::string> seen;
  for (auto& b : request.blocks) {
    if (!IsBlockId(b.id)) return Fail("bad_block", "not a block id: '" + b.id + "'");
    if (seen.insert(b.id).second) blocks.push_back(b);
  }
  Progress progress;
  std::vector<std::string> present;
  for (auto& b : blocks) {
    progress.total_bytes = AddSat(progress.total_bytes, b.size);
    ++progress.objects;
    if (Has(b.id)) {
      present.push_back(b.id);
      progress.done_bytes = AddSat(progress.done_bytes, b.size);
      ++progress.objects_done;
    } else {
      missing.push_back(b);
    }
  }
  if (auto r = Touch(present); !r) return r;

  std::mutex progress_mutex;
  std::atomic<std::int64_t> done_bytes{static_cast<std::int64_t>(progress.done_bytes)};
  std::atomic<int> objects_done{progress.objects_done};
  std::atomic<std::int64_t> fetched_bytes{0}, reused_bytes{0};
  auto last_emit = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto emit = [&](bool force) {
    if (!request.on_progress) return;
    std::unique_lock lock(progress_mutex, std::defer_lock);
    if (force) {
      lock.lock();
    } else if (!lock.try_lock()) {
      return;  // someone is reporting right now
    }
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_emit < std::chrono::milliseconds(100)) return;
    last_emit = now;
    Progress p = progress;
    p.done_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, done_bytes.load()));
    p.objects_done = objects_done.load();
    p.fetched_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, fetched_bytes.load()));
    p.reused_bytes = static_cast<std::uint64_t>(reused_bytes.load());
    request.on_progress(p);
  };

  if (!missing.empty()) {
    {
      std::lock_guard lock(mutex_);
      for (auto& b : missing) in_flight_.insert(b.id);
    }
    struct Done {
      BlockCache* self;
      const std::vector<BlockRef> blocks;
      ~Done() {
        std::lock_guard lock(self->mutex_);
        for (auto& b : blocks) self->in_flight_.erase(b.id);
      }
    } done{this, missing};
    auto space = Measure(missing);
    if (!space) return Unexpected(space.error());
    if (space->required > space->available)
      return Fail("no_space", SpaceMessage(space->required, space->available));
    if (auto r = MakeRoom(missing, blocks); !r) return r;

    // Blocks with a chunk index are assembled; the others, and those whose index is missing
    // or lies, are fetched whole below.
    std::vector<BlockRef> whole;
    bool chunked = false;
    for (auto& b : missing) {
      if (b.size < chunk::kIndexThreshold) {
        whole.push_back(b);
        continue;
      }
      if (!chunked) {
        if (auto r = ChunkUnchunked(); !r) return r;
        chunked = true;
      }
      auto before = done_bytes.load();
      auto assembled = Assemble(b, request, [&](std::int64_t fetched, std::int64_t reused) {
        done_bytes += fetched + reused;
        fetched_bytes += fetched;
        reused_bytes += reused;
        emit(false);
      });
      if (!assembled) {
        if (assembled.error().code == "no_space") {
          std::error_code ec;
          stdfs::remove_all(dir_ / "tmp" / chunk::WorkDirName(b.id), ec);
          stdfs::remove(dir_ / "tmp" / chunk::OutputName(b.id), ec);
        }
        return Unexpected(assembled.error());
      }
      if (*assembled) {
        // Chunks repeated within the block were counted once: the block is done.
        done_bytes = before + static_cast<std::int64_t>(b.size);
        ++objects_done;
        emit(false);
      } else {
        done_bytes = before;
        whole.push_back(b);
      }
    }
    missing = std::move(whole);

    std::string base = request.objects_base;
    if (base.empty() || base.back() != '/') base += '/';
    std::vector<fetch::Transfer> transfers;
    for (auto& b : missing) transfers.push_back({base + b.id, PartialOf(b.id), b.size});
    std::vector<int> mismatches(missing.size(), 0);

    fetch::Options fo;
    fo.parallel = request.parallel;
    fo.ca_file = request.ca_file;
    fo.cancel = request.cancel;
    fo.max_attempts = options_.max_attempts;
    fo.backoff_first = options_.backoff_first;
    fo.backoff_max = options_.backoff_max;
    fo.low_speed_time = options_.low_speed_time;
    fo.on_bytes = [&](std::int64_t delta) {
      done_bytes += delta;
      fetched_bytes += delta;
      emit(false);
    };
    auto r = fetch::FetchAll(transfers, fo, [&](size_t i, const std::string& sha) -> Expected<bool> {
      const auto& b = missing[i];
      if (sha != b.id) {
        // Discarded, never renamed into objects/; one more try from byte 0.
        done_bytes -= static_cast<std::int64_t>(FileSizeOr0(transfers[i].partial));
        std::error_code ec;
        stdfs::remove(transfers[i].partial, ec);
        if (++mismatches[i] >= 2)
          return Fail("hash_mismatch", "block " + b.id + " from " + transfers[i].url +
                                           ": the bytes hash to " + sha + ", twice");
        log::Warn(kLog, "block " + b.id + ": the bytes hash to " + sha + "; fetching it again");
        return false;
      }
      if (auto c = Commit(b, transfers[i].partial); !c) return Unexpected(c.error());
      ++objects_done;
      emit(false);
      return true;
    });
    if (!r && r.error().code == "no_space") {
      // The update ends here (WONTGO), and the partials hold the very space that the journal,
      // the outbox and the running containers' writable layers now lack: give it back.
      for (auto& t : transfers) {
        std::error_code ec;
        stdfs::remove(t.partial, ec);
      }
    }
    if (!r) return r;
  }
  emit(true);
  return {};
}

ExpectedVoid BlockCache::ChunkUnchunked() {
  std::vector<std::pair<std::string, std::uint64_t>> todo;
  {
    auto writer = db_.Lock();  // lock order: the writer lock, then mutex_ (as under a command)
    std::lock_guard lock(mutex_);
    auto u = chunk::Unchunked(db_);
    if (!u) return Unexpected(u.error());
    todo = std::move(*u);
  }
  for (auto& [id, size] : todo) {
    auto chunks = chunk::ChunkFile(PathOf(id));  // no lock held while reading
    if (!chunks) {
      log::Warn(kLog, "cannot chunk block " + id + ": " + chunks.error().message);
      continue;  // evicted meanwhile, or unreadable: not a seed
    }
    auto writer = db_.Lock();  // before mutex_, see above
    std::lock_guard lock(mutex_);
    bool cached = false;
    {
      // Finished before the write below: an open read would pin an old snapshot and make
      // the write transaction fail with SQLITE_BUSY_SNAPSHOT.
      auto st = db_.Prepare("SELECT 1 FROM blocks WHERE id = ?");
      if (!st) return Unexpected(st.error());
      st->Bind(1, id);
      auto row = st->Step();
      if (!row) return Unexpected(row.error());
      cached = *row;
    }
    if (!cached) continue;  // evicted meanwhile
    if (auto r = chunk::Record(db_, id, *chunks); !r) return r;
  }
  return {};
}

Expected<bool> BlockCache::Assemble(const BlockRef& block, const FetchRequest& request,
                                    const std::function<void(std::int64_t, std::int64_t)>& on_bytes) {
  chunk::AssembleRequest ar;
  ar.block_id = block.id;
  ar.size = block.size;
  ar.objects_base = request.objects_base;
  if (ar.objects_base.empty() || ar.objects_base.back() != '/') ar.objects_base += '/';
  ar.work_dir = dir_ / "tmp" / chunk::WorkDirName(block.id);
  ar.output = dir_ / "tmp" / chunk::OutputName(block.id);
  ar.fetch.parallel = request.parallel;
  ar.fetch.ca_file = request.ca_file;
  ar.fetch.cancel = request.cancel;
  ar.fetch.max_attempts = options_.max_attempts;
  ar.fetch.backoff_first = options_.backoff_first;
  ar.fetch.backoff_max = options_.backoff_max;
  ar.fetch.low_speed_time = options_.low_speed_time;
  ar.on_bytes = on_bytes;
  ar.find = [this](const std::string& sha) -> Expected<std::optional<chunk::Held>> {
    auto writer = db_.Lock();  // before mutex_, see ChunkUnchunked
    std::lock_guard lock(mutex_);
    auto at = chunk::Find(db_, sha);
    if (!at) return Unexpected(at.error());
    if (!*at) return std::optional<chunk::Held>();
    return std::optional<chunk::Held>(chunk::Held{PathOf((*at)->block_id), (*at)->offset});
  };
  auto out = chunk::Assemble(ar);
  if (!out) return Unexpected(out.error());
  if (!out->assembled) return false;
  if (auto c = Commit(block, ar.output); !c) return Unexpected(c.error());
  {
    auto writer = db_.Lock();  // before mutex_, see ChunkUnchunked
    std::lock_guard lock(mutex_);
    if (auto r = chunk::Record(db_, block.id, out->chunks, out->fetched_bytes, out->reused_bytes); !r)
      return Unexpected(r.error());
  }
  log::Info(kLog, "block " + block.id + " assembled from chunks: " +
                      std::to_string(out->fetched_bytes) + " B fetched, " +
                      std::to_string(out->reused_bytes) + " B reused");
  std::error_code ec;
  stdfs::remove_all(ar.work_dir, ec);
  return true;
}

Expected<std::vector<std::string>> BlockCache::Verify() { return VerifyDir(dir_); }

Expected<std::vector<std::string>> BlockCache::VerifyDir(const stdfs::path& data_dir) {
  std::error_code ec;
  auto files = ScanObjects(data_dir / "objects", ec);
  if (ec) return Fail("io", "cannot list " + (data_dir / "objects").string() + ": " + ec.message());
  std::vector<std::string> bad;
  for (auto& [id, path] : files) {
    if (id.empty()) continue;
    auto sha = digest::Sha256File(path);
    // A block evicted while we looked is not a bad block.
    if (!sha && !stdfs::exists(path)) continue;
    if (!sha) return Unexpected(sha.error());
    if (*sha != id) bad.push_back(id);
  }
  std::sort(bad.begin(), bad.end());
  return bad;
}

namespace {
Expected<std::vector<BlockInfo>> ListFrom(store::Db& db) {
  auto st = db.Prepare(
      "SELECT b.id, b.size, b.added_at, b.last_used, p.rev, c.block_id, c.fetched_bytes, "
      "c.reused_bytes FROM blocks b LEFT JOIN pins p ON p.block_id = b.id "
      "LEFT JOIN chunked_blocks c ON c.block_id = b.id ORDER BY b.last_used DESC, b.id, p.rev");
  if (!st) return Unexpected(st.error());
  std::vector<BlockInfo> out;
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    if (out.empty() || out.back().id != st->Text(0))
      out.push_back({st->Text(0), static_cast<std::uint64_t>(st->Int(1)), st->Int(2), st->Int(3), {},
                     !st->IsNull(5), static_cast<std::uint64_t>(st->Int(6)),
                     static_cast<std::uint64_t>(st->Int(7))});
    if (!st->IsNull(4)) out.back().pinned_by.push_back(st->Text(4));
  }
  return out;
}
}  // namespace

Expected<std::vector<BlockInfo>> BlockCache::List() {
  return ListFrom(db_);
}

Expected<std::vector<BlockInfo>> BlockCache::ListDir(const stdfs::path& data_dir) {
  auto path = data_dir / "gantry.db";
  std::error_code ec;
  if (!stdfs::exists(path, ec)) return Fail("io", "no cache database at " + path.string());
  auto db = store::Db::OpenBare(path.string());
  if (!db) return Unexpected(db.error());
  return ListFrom(*db);
}

}  // namespace gantry::cache

namespace gantry::cache {
Expected<std::vector<std::string>> BlockCache::VerifyChunksDir(const stdfs::path& data_dir) {
  auto path = data_dir / "gantry.db";
  std::error_code ec;
  if (!stdfs::exists(path, ec)) return Fail("io", "no cache database at " + path.string());
  auto db = store::Db::OpenBare(path.string());
  if (!db) return Unexpected(db.error());
  return chunk::Check(*db, data_dir / "objects");
}
}  // namespace gantry::cache
