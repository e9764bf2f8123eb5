#pragma once
// The chunk index of a block, objects/<block id>.chunks (docs/chunked-blocks.md):
//   {"algo": "cdc-sha256", "chunks": [["<chunk sha256>", <size>], ...]}
// An index comes from the network and is hostile until checked: Parse accepts only an index
// whose chunks are well-formed and add up to exactly the block's declared size, so a lying
// index can never make the agent fetch more than that size in chunks.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chunk/cdc.hpp"
#include "core/error.hpp"

namespace gantry::chunk {

inline constexpr char kAlgo[] = "cdc-sha256";
// Blocks smaller than this get no index (pack) and are not asked for one (agent).
inline constexpr std::uint64_t kIndexThreshold = 1024 * 1024;

// The largest index the agent reads for a block of this size: room for one entry per
// minimum-size chunk, with generous whitespace.
std::uint64_t MaxIndexBytes(std::uint64_t block_size);

// Error "bad_index" with the reason (bad JSON, other algo, a bad chunk id, a size of 0 or over
// the maximum chunk size, sizes not adding up to block_size, too large).
Expected<std::vector<Chunk>> ParseIndex(std::string_view text, std::uint64_t block_size);
std::string WriteIndex(const std::vector<Chunk>& chunks);

}  // namespace gantry::chunk
