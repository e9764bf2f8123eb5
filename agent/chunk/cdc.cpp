#include "chunk/cdc.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "core/fs.hpp"
#include "digest/sha256.hpp"

namespace gantry::chunk {
namespace {

// 256 pseudo-random 64-bit values from a fixed seed (splitmix64): part of the format.
constexpr std::array<std::uint64_t, 256> MakeGear() {
  std::array<std::uint64_t, 256> g{};
  std::uint64_t x = 0x67616e7472796364ULL;  // "gantrycd"
  for (auto& v : g) {
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return g;
}
constexpr auto kGear = MakeGear();

// The gear hash shifts left, so its high bits carry the most history (up to 64 bytes): the
// masks test high bits. Below the average size a boundary needs 18 zero bits (rarer), above
// it 14 (likelier), which narrows the size distribution around 64 KiB (FastCDC's
// normalised chunking, level 2).
constexpr std::uint64_t kMaskSmall = ((std::uint64_t{1} << 18) - 1) << (64 - 18);
constexpr std::uint64_t kMaskLarge = ((std::uint64_t{1} << 14) - 1) << (64 - 14);

}  // namespace

std::size_t CutPoint(const std::uint8_t* data, std::size_t n) {
  if (n <= kMinSize) return n;
  if (n > kMaxSize) n = kMaxSize;
  std::size_t normal = n < kAvgSize ? n : kAvgSize;
  std::uint64_t fp = 0;
  std::size_t i = kMinSize;
  for (; i < normal; ++i) {
    fp = (fp << 1) + kGear[data[i]];
    if ((fp & kMaskSmall) == 0) return i + 1;
  }
  for (; i < n; ++i) {
    fp = (fp << 1) + kGear[data[i]];
    if ((fp & kMaskLarge) == 0) return i + 1;
  }
  return n;
}

std::vector<Chunk> ChunkBytes(const std::uint8_t* data, std::size_t n) {
  std::vector<Chunk> out;
  std::size_t pos = 0;
  while (pos < n) {
    std::size_t len = CutPoint(data + pos, n - pos);
    out.push_back({digest::Sha256Hex(data + pos, len), len});
    pos += len;
  }
  return out;
}

Expected<std::vector<Chunk>> ChunkFile(const std::filesystem::path& path) {
  fs::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail("io", fs::ErrnoMessage("cannot open", path));
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  // A window of several maximum chunks: refilled when fewer than kMaxSize bytes are left.
  std::vector<std::uint8_t> buf(16 * kMaxSize);
  std::size_t start = 0, end = 0;
  bool eof = false;
  std::vector<Chunk> out;
  for (;;) {
    if (!eof && end - start < kMaxSize) {
      std::memmove(buf.data(), buf.data() + start, end - start);
      end -= start;
      start = 0;
      while (!eof && end < buf.size()) {
        ssize_t r = ::read(fd.get(), buf.data() + end, buf.size() - end);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return Fail("io", fs::ErrnoMessage("cannot read", path));
        if (r == 0) eof = true;
        end += static_cast<std::size_t>(r);
      }
    }
    if (start == end) break;
    std::size_t len = CutPoint(buf.data() + start, end - start);
    out.push_back({digest::Sha256Hex(buf.data() + start, len), len});
    start += len;
  }
  return out;
}

}  // namespace gantry::chunk
