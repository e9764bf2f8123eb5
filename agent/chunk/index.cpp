#include "chunk/index.hpp"

#include <nlohmann/json.hpp>

#include "core/hex.hpp"

namespace gantry::chunk {

std::uint64_t MaxIndexBytes(std::uint64_t block_size) {
  return (block_size / kMinSize + 2) * 128 + 4096;
}

Expected<std::vector<Chunk>> ParseIndex(std::string_view text, std::uint64_t block_size) {
  auto bad = [](std::string why) { return Fail("bad_index", std::move(why)); };
  if (text.size() > MaxIndexBytes(block_size))
    return bad("the index is " + std::to_string(text.size()) + " bytes, more than " +
               std::to_string(MaxIndexBytes(block_size)) + " for a block of " +
               std::to_string(block_size) + " bytes");
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto algo = j.find("algo");
  if (algo == j.end() || !algo->is_string() || *algo != kAlgo)
    return bad(std::string("\"algo\" is not \"") + kAlgo + "\"");
  auto list = j.find("chunks");
  if (list == j.end() || !list->is_array()) return bad("\"chunks\" is not an array");
  std::vector<Chunk> out;
  out.reserve(list->size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const auto& e = (*list)[i];
    std::string at = "chunk " + std::to_string(i);
    if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number_unsigned())
      return bad(at + " is not [\"<sha256>\", <size>]");
    auto sha = e[0].get<std::string>();
    if (!IsBlockId(sha)) return bad(at + " has no valid sha256: \"" + sha.substr(0, 80) + "\"");
    auto size = e[1].get<std::uint64_t>();
    if (size == 0 || size > kMaxSize)
      return bad(at + " has size " + std::to_string(size) + " (1 to " + std::to_string(kMaxSize) +
                 " allowed)");
    total += size;
    if (total > block_size)
      return bad("the chunks add up to more than the block's " + std::to_string(block_size) +
                 " bytes");
    out.push_back({std::move(sha), size});
  }
  if (total != block_size)
    return bad("the chunks add up to " + std::to_string(total) + " bytes, the block has " +
               std::to_string(block_size));
  return out;
}

std::string WriteIndex(const std::vector<Chunk>& chunks) {
  // One chunk per line: an index diffs well and stays readable.
  std::string s = std::string("{\"algo\": \"") + kAlgo + "\", \"chunks\": [";
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    s += i ? ",\n  " : "\n  ";
    s += "[\"" + chunks[i].sha + "\", " + std::to_string(chunks[i].size) + "]";
  }
  s += chunks.empty() ? "]}\n" : "\n]}\n";
  return s;
}

}  // namespace gantry::chunk
