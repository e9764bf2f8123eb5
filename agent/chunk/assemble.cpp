#include "chunk/assemble.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "chunk/index.hpp"
#include "core/fs.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"
#include "digest/sha256.hpp"

namespace gantry::chunk {
namespace {

namespace stdfs = std::filesystem;
constexpr char kLog[] = "chunk";
constexpr char kWorkSuffix[] = ".chunks.d";
constexpr char kOutputSuffix[] = ".assembly";

bool Fatal(const Error& e) { return e.code == "cancelled" || e.code == "no_space" || e.code == "io"; }

std::uint64_t SizeOr(const stdfs::path& p, std::uint64_t fallback) {
  std::error_code ec;
  auto n = stdfs::file_size(p, ec);
  return ec ? fallback : n;
}

// Copies `length` bytes (copy_file_range, in the kernel, with a read/write fallback) and
// returns their SHA-256, read back from the destination so that what is hashed is what was
// written.
Expected<std::string> CopyRange(int src, std::uint64_t src_off, int dst, std::uint64_t dst_off,
                                std::uint64_t length, digest::Sha256& whole,
                                std::vector<char>& buf) {
  off_t in = static_cast<off_t>(src_off), out = static_cast<off_t>(dst_off);
  std::uint64_t left = length;
  while (left > 0) {
    ssize_t n = ::copy_file_range(src, &in, dst, &out, left, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
      buf.resize(left);
      ssize_t r = ::pread(src, buf.data(), left, in);
      if (r != static_cast<ssize_t>(left)) return Fail("short", "short read");
      if (::pwrite(dst, buf.data(), left, out) != static_cast<ssize_t>(left))
        return Fail(errno == ENOSPC ? "no_space" : "io", std::string("write: ") + std::strerror(errno));
      break;
    }
    if (n < 0) return Fail(errno == ENOSPC ? "no_space" : "io", std::string("copy_file_range: ") + std::strerror(errno));
    if (n == 0) return Fail("short", "the source ends early");
    left -= static_cast<std::uint64_t>(n);
  }
  buf.resize(length);
  if (::pread(dst, buf.data(), length, static_cast<off_t>(dst_off)) != static_cast<ssize_t>(length))
    return Fail("io", std::string("read back: ") + std::strerror(errno));
  whole.Update(buf.data(), length);
  return digest::Sha256Hex(buf.data(), length);
}

class Assembly {
 public:
  explicit Assembly(const AssembleRequest& r) : r_(r) {}

  Expected<Outcome> Run() {
    if (auto m = fs::MakeDirs(r_.work_dir, 0700); !m) return Unexpected(m.error());
    auto index = LoadIndex();
    if (!index) return Ended(index.error());
    out_.chunks = std::move(*index);
    if (auto f = FetchMissing(); !f) return Ended(f.error());
    if (auto w = Write(); !w) return Ended(w.error());
    out_.assembled = true;
    return out_;
  }

 private:
  // A fatal error goes up; anything else means "fetch the whole block", and the work
  // directory goes (it holds what a lying server sent).
  Expected<Outcome> Ended(const Error& e) {
    if (Fatal(e)) return Unexpected(e);
    std::error_code ec;
    stdfs::remove_all(r_.work_dir, ec);
    stdfs::remove(r_.output, ec);
    out_.assembled = false;
    out_.no_index = e.code == "no_index";
    out_.why = e.message;
    out_.chunks.clear();
    return out_;
  }

  Expected<std::vector<Chunk>> LoadIndex() {
    auto path = r_.work_dir / "index";
    auto max = MaxIndexBytes(r_.size);
    std::error_code ec;
    if (stdfs::exists(path, ec)) {
      auto text = fs::ReadFile(path, max + 1);
      if (text)
        if (auto parsed = ParseIndex(*text, r_.size); parsed) return parsed;
      stdfs::remove(path, ec);  // torn or bad: fetched again
    }
    auto part = r_.work_dir / "index.part";
    fetch::Options fo = r_.fetch;
    fo.parallel = 1;
    fo.on_bytes = nullptr;
    // One byte more than allowed: an index that fills it is too large.
    std::vector<fetch::Transfer> t{{r_.objects_base + r_.block_id + ".chunks", part, max + 1, true}};
    auto got = fetch::FetchAll(t, fo, [](size_t, const std::string&) -> Expected<bool> { return true; });
    if (!got) {
      stdfs::remove(part, ec);
      if (got.error().code == "http") return Fail("no_index", "no chunk index (" + got.error().message + ")");
      return Unexpected(got.error());
    }
    auto text = fs::ReadFile(part, max + 1);
    if (!text) return Unexpected(text.error());
    out_.fetched_bytes += text->size();
    auto parsed = ParseIndex(*text, r_.size);
    if (!parsed) {
      stdfs::remove(part, ec);
      return Fail("bad_index", "chunk index of " + r_.block_id + ": " + parsed.error().message);
    }
    if (::rename(part.c_str(), path.c_str()) != 0) return Fail("io", fs::ErrnoMessage("cannot rename", part));
    return parsed;
  }

  ExpectedVoid FetchMissing() {
    std::set<std::string> seen;
    std::vector<fetch::Transfer> transfers;
    std::vector<const Chunk*> wanted;
    for (const auto& c : out_.chunks) {
      if (!seen.insert(c.sha).second) continue;
      auto held = r_.find(c.sha);
      if (!held) return Unexpected(held.error());
      if (*held) {
        held_[c.sha] = **held;
        continue;
      }
      auto file = r_.work_dir / c.sha;
      // Fetched before a restart: kept when whole and right, which the fetcher checks too
      // (it hashes what is on disk and asks the server only for the rest).
      transfers.push_back({r_.objects_base + "chunks/" + c.sha, file, c.size});
      wanted.push_back(&c);
    }
    if (transfers.empty()) return {};
    fetch::Options fo = r_.fetch;
    fo.on_bytes = [this](std::int64_t d) {
      if (r_.on_bytes) r_.on_bytes(d, 0);
    };
    std::atomic<std::uint64_t> fetched{0};
    auto r = fetch::FetchAll(transfers, fo, [&](size_t i, const std::string& sha) -> Expected<bool> {
      const auto& c = *wanted[i];
      auto size = SizeOr(transfers[i].partial, 0);
      if (sha != c.sha || size != c.size)
        return Fail("bad_chunk", "chunk " + c.sha + " of block " + r_.block_id + ": the server sent " +
                                     std::to_string(size) + " bytes hashing to " + sha);
      fetched += c.size;
      return true;
    });
    if (!r) {
      if (r.error().code == "http") return Fail("missing_chunk", r.error().message);
      return r;
    }
    return {};
  }

  ExpectedVoid Write() {
    fs::Fd dst(::open(r_.output.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!dst) return Fail("io", fs::ErrnoMessage("cannot create", r_.output));
    digest::Sha256 whole;
    std::vector<char> buf;
    std::map<std::string, fs::Fd> open;
    std::set<std::string> used;
    std::uint64_t offset = 0;
    for (const auto& c : out_.chunks) {
      auto h = held_.find(c.sha);
      bool from_work = h == held_.end();
      stdfs::path file = from_work ? r_.work_dir / c.sha : h->second.file;
      std::uint64_t src_off = from_work ? 0 : h->second.offset;
      auto& fd = open[file.string()];
      if (!fd) {
        fd = fs::Fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return Fail("gone", fs::ErrnoMessage("cannot open", file));
      }
      auto sha = CopyRange(fd.get(), src_off, dst.get(), offset, c.size, whole, buf);
      if (!sha) return Unexpected(sha.error().WithContext("assembling " + r_.block_id));
      if (*sha != c.sha)
        return Fail("bad_chunk", "the copy of chunk " + c.sha + " from " + file.string() +
                                     " hashes to " + *sha);
      bool reused = !from_work || !used.insert(c.sha).second;
      if (reused) {
        out_.reused_bytes += c.size;
        if (r_.on_bytes) r_.on_bytes(0, static_cast<std::int64_t>(c.size));
      } else {
        out_.fetched_bytes += c.size;
      }
      offset += c.size;
    }
    auto got = whole.FinalHex();
    if (got != r_.block_id)
      return Fail("not_the_block", "the chunks of the index of " + r_.block_id + " make up " + got);
    return {};
  }

  const AssembleRequest& r_;
  Outcome out_;
  std::map<std::string, Held> held_;
};

}  // namespace

Expected<Outcome> Assemble(const AssembleRequest& request) {
  auto out = Assembly(request).Run();
  // A server without indexes is normal (old servers, Pantavisor objects): not worth a line
  // per block; an index that was refused is.
  if (out && !out->assembled)
    (out->no_index ? log::Debug : log::Warn)(
        kLog, "block " + request.block_id + ": whole-block fetch (" + out->why + ")");
  return out;
}

std::string WorkDirName(const std::string& id) { return id + kWorkSuffix; }
std::string OutputName(const std::string& id) { return id + kOutputSuffix; }

std::string BlockOfTmpName(const std::string& name) {
  for (std::string_view suffix : {std::string_view(kWorkSuffix), std::string_view(kOutputSuffix)}) {
    if (name.size() == 64 + suffix.size() && name.compare(64, std::string::npos, suffix) == 0 &&
        IsBlockId(std::string_view(name).substr(0, 64)))
      return name.substr(0, 64);
  }
  return "";
}

}  // namespace gantry::chunk
