#pragma once
// The chunk table in SQLite (tables chunks and chunked_blocks, migration 0005): for every
// cached block, where its chunks lie. The caller owns the connection and its locking; rows of
// a block are removed with the block's row (ON DELETE CASCADE).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "chunk/cdc.hpp"
#include "core/error.hpp"
#include "store/db.hpp"

namespace gantry::chunk {

struct Location {
  std::string block_id;
  std::uint64_t offset = 0, length = 0;
};

// Records a committed block's chunks (replacing any earlier record), in one transaction.
ExpectedVoid Record(store::Db& db, const std::string& block_id, const std::vector<Chunk>& chunks,
                    std::uint64_t fetched_bytes = 0, std::uint64_t reused_bytes = 0);
// Where a chunk with this hash lies in a cached block, if anywhere.
Expected<std::optional<Location>> Find(store::Db& db, const std::string& sha);
// Cached blocks without recorded chunks, as {id, size}.
Expected<std::vector<std::pair<std::string, std::uint64_t>>> Unchunked(store::Db& db);

struct Reuse {
  bool chunked = false;
  std::uint64_t chunks = 0, fetched_bytes = 0, reused_bytes = 0;
};
Expected<Reuse> ReuseOf(store::Db& db, const std::string& block_id);

// Read-only consistency check for `gantryctl cache verify`: every recorded block's chunks
// tile it exactly (offsets contiguous from 0, lengths adding up to the block's size) and
// each chunk's bytes in the block file hash to its sha. One message per problem.
Expected<std::vector<std::string>> Check(store::Db& db, const std::filesystem::path& objects_dir);

}  // namespace gantry::chunk
