#pragma once
// Assembling a block from its chunks (docs/chunked-blocks.md): the index is fetched from
// <objects_base><id>.chunks; chunks the device already holds are copied out of cached blocks,
// the others are fetched in parallel from <objects_base>chunks/<chunk sha> into the work
// directory with the resumable fetcher, each checked against its hash; the block is written
// to `output` and hashed as a whole. The caller commits `output` only when Assemble says so.
//
// The work directory (the index and the fetched chunks) survives a crash: a restarted
// assembly uses what is there and fetches only what is not. Nothing a server sends can end
// up in a committed block unless the whole block hashes to its id.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "chunk/cdc.hpp"
#include "core/error.hpp"
#include "fetch/fetcher.hpp"

namespace gantry::chunk {

// A copy of a chunk the device holds: `length` bytes at `offset` of a cached block's file.
struct Held {
  std::filesystem::path file;
  std::uint64_t offset = 0;
};

struct AssembleRequest {
  std::string block_id;
  std::uint64_t size = 0;
  std::string objects_base;  // ends with '/'
  std::filesystem::path work_dir;
  std::filesystem::path output;
  fetch::Options fetch;  // its on_bytes is not used
  // Where the device holds a chunk, if it does. Called on the calling thread.
  std::function<Expected<std::optional<Held>>(const std::string& sha)> find;
  // Bytes of chunks fetched (negative when a partial starts over) and copied from held chunks.
  std::function<void(std::int64_t fetched, std::int64_t reused)> on_bytes;
};

struct Outcome {
  bool assembled = false;  // false: fetch the whole block (why says why)
  bool no_index = false;   // the server has no index for the block (a 404, no such file)
  std::string why;
  std::vector<Chunk> chunks;  // the block's chunks, when assembled
  std::uint64_t fetched_bytes = 0, reused_bytes = 0;
};

// Errors only for what a whole-block fetch could not do better either: "cancelled",
// "no_space", "io". A missing index, a lying index or chunk, or a server error on a chunk is
// an Outcome with assembled=false.
Expected<Outcome> Assemble(const AssembleRequest& request);

// tmp/ names: the work directory and the output of block `id`; and the block a tmp/ entry
// belongs to (empty when it is not an assembly's).
std::string WorkDirName(const std::string& id);
std::string OutputName(const std::string& id);
std::string BlockOfTmpName(const std::string& name);

}  // namespace gantry::chunk
