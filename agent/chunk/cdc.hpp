#pragma once
// Content-defined chunking (FastCDC-style gear hash with normalised chunking) for chunked
// blocks (docs/chunked-blocks.md). Boundaries depend only on the bytes near them, so an edit
// moves the boundaries of the chunks it touches and leaves the others where they were: two
// images that differ by one file share all but a few chunks.
//
// The parameters are part of the index format "cdc-sha256": changing them changes every
// index, so they are constants, not options.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace gantry::chunk {

inline constexpr std::size_t kMinSize = 16 * 1024;
inline constexpr std::size_t kAvgSize = 64 * 1024;
inline constexpr std::size_t kMaxSize = 256 * 1024;

// The length of the first chunk of data[0, n): n itself when n <= kMinSize, at most
// kMaxSize. The caller hands at least kMaxSize bytes unless they are the last ones.
std::size_t CutPoint(const std::uint8_t* data, std::size_t n);

struct Chunk {
  std::string sha;  // SHA-256 of the chunk's bytes, lowercase hex
  std::uint64_t size = 0;
};

// The chunks of a whole file, in order (none for an empty file).
Expected<std::vector<Chunk>> ChunkFile(const std::filesystem::path& path);
// The chunks of a buffer (tests, small inputs).
std::vector<Chunk> ChunkBytes(const std::uint8_t* data, std::size_t n);

}  // namespace gantry::chunk
