#include "chunk/table.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "core/fs.hpp"
#include "digest/sha256.hpp"

namespace gantry::chunk {

ExpectedVoid Record(store::Db& db, const std::string& block_id, const std::vector<Chunk>& chunks,
                    std::uint64_t fetched_bytes, std::uint64_t reused_bytes) {
  return db.InTransaction([&]() -> ExpectedVoid {
    if (auto r = db.Run("DELETE FROM chunks WHERE block_id = ?", block_id); !r) return r;
    auto st = db.Prepare("INSERT INTO chunks (block_id, offset, length, sha) VALUES (?, ?, ?, ?)");
    if (!st) return Unexpected(st.error());
    std::uint64_t offset = 0;
    for (const auto& c : chunks) {
      st->Reset();
      st->BindAll(block_id, static_cast<std::int64_t>(offset), static_cast<std::int64_t>(c.size),
                  c.sha);
      if (auto r = st->Run(); !r) return r;
      offset += c.size;
    }
    return db.Run(
        "INSERT OR REPLACE INTO chunked_blocks (block_id, fetched_bytes, reused_bytes) "
        "VALUES (?, ?, ?)",
        block_id, static_cast<std::int64_t>(fetched_bytes), static_cast<std::int64_t>(reused_bytes));
  });
}

Expected<std::optional<Location>> Find(store::Db& db, const std::string& sha) {
  auto st = db.Prepare("SELECT block_id, offset, length FROM chunks WHERE sha = ? LIMIT 1");
  if (!st) return Unexpected(st.error());
  st->Bind(1, sha);
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  if (!*row) return std::optional<Location>();
  return std::optional<Location>(Location{st->Text(0), static_cast<std::uint64_t>(st->Int(1)),
                                          static_cast<std::uint64_t>(st->Int(2))});
}

Expected<std::vector<std::pair<std::string, std::uint64_t>>> Unchunked(store::Db& db) {
  auto st = db.Prepare(
      "SELECT id, size FROM blocks WHERE id NOT IN (SELECT block_id FROM chunked_blocks) "
      "ORDER BY id");
  if (!st) return Unexpected(st.error());
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    out.emplace_back(st->Text(0), static_cast<std::uint64_t>(st->Int(1)));
  }
  return out;
}

Expected<Reuse> ReuseOf(store::Db& db, const std::string& block_id) {
  auto st = db.Prepare(
      "SELECT fetched_bytes, reused_bytes, (SELECT COUNT(*) FROM chunks WHERE block_id = ?1) "
      "FROM chunked_blocks WHERE block_id = ?1");
  if (!st) return Unexpected(st.error());
  st->Bind(1, block_id);
  auto row = st->Step();
  if (!row) return Unexpected(row.error());
  if (!*row) return Reuse{};
  return Reuse{true, static_cast<std::uint64_t>(st->Int(2)), static_cast<std::uint64_t>(st->Int(0)),
               static_cast<std::uint64_t>(st->Int(1))};
}

Expected<std::vector<std::string>> Check(store::Db& db, const std::filesystem::path& objects_dir) {
  std::vector<std::string> problems;
  auto st = db.Prepare(
      "SELECT c.block_id, c.offset, c.length, c.sha, b.size FROM chunks c "
      "LEFT JOIN blocks b ON b.id = c.block_id ORDER BY c.block_id, c.offset");
  if (!st) return Unexpected(st.error());
  std::string current;
  std::uint64_t expect = 0, block_size = 0;
  fs::Fd fd;
  std::vector<char> buf;
  auto close_block = [&] {
    if (!current.empty() && expect != block_size)
      problems.push_back("block " + current + ": its chunks cover " + std::to_string(expect) +
                         " of its " + std::to_string(block_size) + " bytes");
  };
  for (;;) {
    auto row = st->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    auto id = st->Text(0);
    auto offset = static_cast<std::uint64_t>(st->Int(1));
    auto length = static_cast<std::uint64_t>(st->Int(2));
    auto sha = st->Text(3);
    if (id != current) {
      close_block();
      current = id;
      expect = 0;
      block_size = static_cast<std::uint64_t>(st->Int(4));
      if (st->IsNull(4)) problems.push_back("chunks recorded for block " + id + ", which is not cached");
      auto path = objects_dir / id.substr(0, 2) / id;
      fd = fs::Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    }
    if (offset != expect)
      problems.push_back("block " + id + ": a chunk starts at " + std::to_string(offset) +
                         ", expected " + std::to_string(expect));
    expect = offset + length;
    if (!fd) continue;  // evicted while we looked, or reported as missing by the block check
    buf.resize(length);
    ssize_t n = ::pread(fd.get(), buf.data(), length, static_cast<off_t>(offset));
    if (n != static_cast<ssize_t>(length) || digest::Sha256Hex(buf.data(), length) != sha)
      problems.push_back("block " + id + ": the chunk at " + std::to_string(offset) +
                         " does not hash to " + sha);
  }
  close_block();
  auto orphans = db.Prepare(
      "SELECT block_id FROM chunked_blocks WHERE block_id NOT IN (SELECT id FROM blocks)");
  if (!orphans) return Unexpected(orphans.error());
  for (;;) {
    auto row = orphans->Step();
    if (!row) return Unexpected(row.error());
    if (!*row) break;
    problems.push_back("block " + orphans->Text(0) + " is marked chunked but not cached");
  }
  return problems;
}

}  // namespace gantry::chunk
