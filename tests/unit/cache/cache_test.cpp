#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "cache/block_cache.hpp"
#include "digest/sha256.hpp"
#include "store/db.hpp"
#include "test_util.hpp"
#include "tools/block_server.hpp"

using namespace gantry;
using namespace std::chrono_literals;
using cache::BlockCache;
using cache::BlockRef;
namespace stdfs = std::filesystem;

namespace {

std::string Bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 7;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string Sha(const std::string& s) { return digest::Sha256Hex(s.data(), s.size()); }

cache::Options FastOptions(std::uint64_t quota = 0) {
  cache::Options o;
  o.quota_bytes = quota;
  o.max_attempts = 3;
  o.backoff_first = 20ms;
  o.backoff_max = 100ms;
  return o;
}

// A block server with blocks under /objects/ and a data dir for the cache.
struct Fixture {
  test::TempDir data;
  test::BlockServer server;

  BlockRef Add(size_t size, unsigned seed) {
    auto bytes = Bytes(size, seed);
    auto id = Sha(bytes);
    server.Put("objects/" + id, bytes);
    return {id, bytes.size()};
  }
  std::unique_ptr<BlockCache> Open(cache::Options o = FastOptions()) {
    auto c = BlockCache::Open(data.path(), std::move(o));
    if (!c) throw std::runtime_error(c.error().String());
    return std::move(*c);
  }
  cache::FetchRequest Request(std::vector<BlockRef> blocks) {
    cache::FetchRequest r;
    r.blocks = std::move(blocks);
    r.objects_base = server.url("/objects");  // no trailing '/': the cache adds it
    return r;
  }
  std::string Served(const std::string& id) { return "/objects/" + id; }
  std::vector<stdfs::path> Files(const std::string& sub) {
    std::vector<stdfs::path> out;
    for (auto& e : stdfs::recursive_directory_iterator(data.path() / sub))
      if (e.is_regular_file()) out.push_back(e.path());
    return out;
  }
};

}  // namespace

TEST(Cache, FetchCommitsVerifiedReadOnlyBlocksAndReportsProgress) {
  Fixture f;
  std::vector<BlockRef> blocks = {f.Add(100000, 1), f.Add(200000, 2), f.Add(1, 3)};
  auto c = f.Open();
  auto req = f.Request(blocks);
  std::vector<cache::Progress> seen;
  req.on_progress = [&](const cache::Progress& p) { seen.push_back(p); };
  auto r = c->Fetch(req);
  ASSERT_TRUE(r) << r.error().String();
  for (auto& b : blocks) {
    EXPECT_TRUE(c->Has(b.id));
    EXPECT_EQ(test::Slurp(c->PathOf(b.id)), Bytes(b.size, &b - blocks.data() + 1));
    struct stat st {};
    ASSERT_EQ(stat(c->PathOf(b.id).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0444u);
    EXPECT_EQ(c->PathOf(b.id).parent_path().filename(), b.id.substr(0, 2));
  }
  auto stats = c->GetStats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->bytes, 300001u);
  EXPECT_EQ(stats->blocks, 3);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().total_bytes, 300001u);
  EXPECT_EQ(seen.back().done_bytes, 300001u);
  EXPECT_EQ(seen.back().objects, 3);
  EXPECT_EQ(seen.back().objects_done, 3);
  EXPECT_TRUE(f.Files("tmp").empty());

  // Everything cached: nothing more is fetched.
  auto before = f.server.BytesServed();
  ASSERT_TRUE(c->Fetch(f.Request(blocks)));
  EXPECT_EQ(f.server.BytesServed(), before);
}

TEST(Cache, CutDownloadResumesAndTransfersOnlyMissingBytes) {
  Fixture f;
  auto b = f.Add(1 << 20, 4);
  f.server.Control("/_fault?path=" + f.Served(b.id) + "&cut_after=300000");
  auto c = f.Open();
  ASSERT_TRUE(c->Fetch(f.Request({b})));
  EXPECT_TRUE(c->Has(b.id));
  EXPECT_EQ(f.server.BytesServed(f.Served(b.id)), b.size);
  EXPECT_EQ(f.server.RangeRequests(f.Served(b.id)), 1u);
}

TEST(Cache, CorruptBlockIsRejectedTwiceAndNeverEntersObjects) {
  Fixture f;
  auto good = Bytes(50000, 5);
  auto id = Sha(good);
  auto bad = good;
  bad[100] ^= 1;
  f.server.Put("objects/" + id, bad);
  auto c = f.Open();
  auto r = c->Fetch(f.Request({{id, good.size()}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "hash_mismatch");
  EXPECT_NE(r.error().message.find(id), std::string::npos) << r.error().message;
  EXPECT_EQ(f.server.Requests(f.Served(id)), 2u);  // refetched once
  EXPECT_FALSE(c->Has(id));
  EXPECT_TRUE(f.Files("objects").empty());
  EXPECT_TRUE(f.Files("tmp").empty());
}

TEST(Cache, CorruptPartialIsDiscardedAndTheBlockRefetchedFromZero) {
  Fixture f;
  auto b = f.Add(80000, 6);
  test::Spit(f.data.path() / "tmp" / b.id, std::string(1000, 'x'));
  auto c = f.Open();
  ASSERT_TRUE(c->Fetch(f.Request({b})));
  EXPECT_EQ(test::Slurp(c->PathOf(b.id)), Bytes(b.size, 6));
  EXPECT_EQ(f.server.BytesServed(f.Served(b.id)), b.size - 1000 + b.size);
}

TEST(Cache, ServerIgnoringRangeStillVerifies) {
  Fixture f;
  auto b = f.Add(500000, 7);
  f.server.Control("/_fault?path=" + f.Served(b.id) + "&cut_after=200000&ignore_range=1");
  auto c = f.Open();
  ASSERT_TRUE(c->Fetch(f.Request({b})));
  EXPECT_TRUE(c->Has(b.id));
  EXPECT_EQ(f.server.BytesServed(f.Served(b.id)), 200000 + b.size);
  EXPECT_EQ(f.server.Requests(f.Served(b.id)), 2u);
}

TEST(Cache, ClientErrorIsPermanentAndServerErrorRetried) {
  Fixture f;
  auto missing = BlockRef{Sha("nowhere"), 7};
  auto c = f.Open();
  auto r = c->Fetch(f.Request({missing}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "http");
  EXPECT_EQ(f.server.Requests(f.Served(missing.id)), 1u);

  auto b = f.Add(1000, 8);
  f.server.Control("/_fault?path=" + f.Served(b.id) + "&status=503&count=2");
  ASSERT_TRUE(c->Fetch(f.Request({b})));
  EXPECT_EQ(f.server.Requests(f.Served(b.id)), 3u);

  auto d = f.Add(1000, 9);
  f.server.Control("/_fault?path=" + f.Served(d.id) + "&status=503&count=50");
  r = c->Fetch(f.Request({d}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "network");
}

TEST(Cache, SpaceCheckRefusesBeforeAnyByteIsFetched) {
  Fixture f;
  std::vector<BlockRef> blocks = {f.Add(10000, 10), f.Add(20000, 11)};
  auto o = FastOptions();
  o.available_bytes = [](const stdfs::path&) -> Expected<std::uint64_t> { return 25000; };
  auto c = f.Open(o);
  auto r = c->CheckSpace(blocks);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "no_space");
  EXPECT_EQ(r.error().message, "space required 30000 B, available 25000 B");
  r = c->Fetch(f.Request(blocks));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "no_space");
  EXPECT_EQ(f.server.BytesServed(), 0u);
  // Only missing bytes count.
  ASSERT_TRUE(c->Fetch(f.Request({blocks[1]})));
  EXPECT_TRUE(c->CheckSpace(blocks));
}

TEST(Cache, QuotaEvictsLeastRecentlyUsedButNeverPinned) {
  Fixture f;
  std::vector<BlockRef> b;
  for (unsigned i = 0; i < 6; ++i) b.push_back(f.Add(100000, 20 + i));
  auto c = f.Open(FastOptions(400000));
  ASSERT_TRUE(c->Pin("a", {b[0].id, b[1].id}));
  ASSERT_TRUE(c->Fetch(f.Request({b[0], b[1]})));
  ASSERT_TRUE(c->Fetch(f.Request({b[2]})));
  std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(c->Fetch(f.Request({b[3]})));
  // b[4] needs room: b[2] is the least recently used unpinned block.
  ASSERT_TRUE(c->Pin("b", {b[4].id}));
  ASSERT_TRUE(c->Fetch(f.Request({b[4]})));
  EXPECT_TRUE(c->Has(b[0].id));
  EXPECT_TRUE(c->Has(b[1].id));
  EXPECT_FALSE(c->Has(b[2].id));
  EXPECT_FALSE(stdfs::exists(c->PathOf(b[2].id)));
  EXPECT_TRUE(c->Has(b[3].id));
  EXPECT_TRUE(c->Has(b[4].id));
  // Pin b[3] too: 400000 pinned bytes, nothing collectable, no room for b[5].
  ASSERT_TRUE(c->Pin("b", {b[3].id}));
  auto r = c->Fetch(f.Request({b[5]}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "space required 100000 B, available 0 B");
  EXPECT_EQ(c->Collect().value_or(1), 0u);
  EXPECT_EQ(c->Collect(true).value_or(1), 0u);  // everything is pinned
  ASSERT_TRUE(c->Unpin("a"));
  EXPECT_EQ(c->Collect(true).value_or(0), 200000u);
  EXPECT_FALSE(c->Has(b[0].id));
  EXPECT_TRUE(c->Has(b[3].id));
  auto stats = c->GetStats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->bytes, 200000u);
  EXPECT_EQ(stats->quota_bytes, 400000u);
}

TEST(Cache, OpenReconcilesFilesAndRows) {
  Fixture f;
  std::vector<BlockRef> b = {f.Add(1000, 30), f.Add(1000, 31)};
  {
    auto c = f.Open();
    ASSERT_TRUE(c->Fetch(f.Request(b)));
  }
  // A verified file with no row (crash after rename), a bogus file, a row with no file,
  // a resumable partial and junk in tmp/.
  auto adopt = Bytes(500, 32);
  auto adopt_id = Sha(adopt);
  test::Spit(f.data.path() / "objects" / adopt_id.substr(0, 2) / adopt_id, adopt);
  auto fake_id = Sha("fake");
  test::Spit(f.data.path() / "objects" / fake_id.substr(0, 2) / fake_id, "not fake");
  stdfs::remove(f.data.path() / "objects" / b[1].id.substr(0, 2) / b[1].id);
  auto partial_id = Sha("partial");
  test::Spit(f.data.path() / "tmp" / partial_id, "par");
  test::Spit(f.data.path() / "tmp" / "junk", "junk");

  auto c = f.Open();
  EXPECT_TRUE(c->Has(b[0].id));
  EXPECT_FALSE(c->Has(b[1].id));
  EXPECT_TRUE(c->Has(adopt_id));
  EXPECT_FALSE(c->Has(fake_id));
  EXPECT_FALSE(stdfs::exists(c->PathOf(fake_id)));
  EXPECT_TRUE(stdfs::exists(f.data.path() / "tmp" / partial_id));
  EXPECT_FALSE(stdfs::exists(f.data.path() / "tmp" / "junk"));
  auto stats = c->GetStats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->blocks, 2);
  EXPECT_EQ(stats->bytes, 1500u);
}

TEST(Cache, VerifyNamesTamperedBlocks) {
  Fixture f;
  std::vector<BlockRef> b = {f.Add(4000, 40), f.Add(4000, 41), f.Add(4000, 42)};
  auto c = f.Open();
  ASSERT_TRUE(c->Fetch(f.Request(b)));
  auto ok = c->Verify();
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->empty());
  auto p = c->PathOf(b[1].id);
  stdfs::permissions(p, stdfs::perms::owner_write, stdfs::perm_options::add);
  test::Spit(p, "tampered");
  auto bad = c->Verify();
  ASSERT_TRUE(bad);
  EXPECT_EQ(*bad, std::vector<std::string>{b[1].id});
  EXPECT_EQ(test::Slurp(p), "tampered");  // read-only: nothing repaired or removed
}

TEST(Cache, CancelStopsPromptlyAndKeepsThePartial) {
  Fixture f;
  auto b = f.Add(1 << 20, 50);
  f.server.Control("/_fault?path=" + f.Served(b.id) + "&rate_bps=200000");
  auto c = f.Open();
  std::atomic<bool> cancel{false};
  auto req = f.Request({b});
  req.cancel = &cancel;
  std::thread t([&] {
    std::this_thread::sleep_for(500ms);
    cancel = true;
  });
  auto start = std::chrono::steady_clock::now();
  auto r = c->Fetch(req);
  auto took = std::chrono::steady_clock::now() - start;
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "cancelled");
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(c->Has(b.id));
  auto partial = f.data.path() / "tmp" / b.id;
  ASSERT_TRUE(stdfs::exists(partial));
  auto have = stdfs::file_size(partial);
  EXPECT_GT(have, 0u);
  EXPECT_LT(have, b.size);
  // Resumed later from where it stopped. (The server's thread for the cancelled request may
  // still count a last throttled chunk of 10000 bytes or two, under load, after the reset.)
  f.server.Control("/_reset");
  ASSERT_TRUE(c->Fetch(f.Request({b})));
  EXPECT_EQ(f.server.RangeRequests(f.Served(b.id)), 1u);
  auto served = f.server.BytesServed(f.Served(b.id));
  EXPECT_GE(served, b.size - have);
  EXPECT_LE(served, b.size - have + 2 * 10000);
}

TEST(Cache, LoopCallsStayPromptDuringAFetch) {
  Fixture f;
  auto b = f.Add(1 << 20, 60);
  f.server.Control("/_fault?path=" + f.Served(b.id) + "&rate_bps=1000000");
  auto c = f.Open();
  std::atomic<bool> done{false};
  std::thread t([&] {
    EXPECT_TRUE(c->Fetch(f.Request({b})));
    done = true;
  });
  auto worst = 0ms;
  int calls = 0;
  while (!done) {
    auto s = std::chrono::steady_clock::now();
    EXPECT_TRUE(c->GetStats());
    EXPECT_TRUE(c->Pin("x", {b.id}));
    c->Has(b.id);
    worst = std::max(worst, std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - s));
    ++calls;
    std::this_thread::sleep_for(20ms);
  }
  t.join();
  EXPECT_GT(calls, 10);
  EXPECT_LT(worst, 500ms);
  EXPECT_TRUE(c->Has(b.id));
}

TEST(Cache, RejectsBadIds) {
  Fixture f;
  auto c = f.Open();
  auto r = c->Fetch(f.Request({{"../../etc/passwd", 1}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "bad_block");
}

TEST(Cache, FileUrlBase) {
  Fixture f;
  auto b = f.Add(3000, 70);
  auto c = f.Open();
  auto req = f.Request({b});
  req.objects_base = "file://" + (f.server.root() / "objects").string() + "/";
  ASSERT_TRUE(c->Fetch(req));
  EXPECT_TRUE(c->Has(b.id));
  EXPECT_EQ(f.server.BytesServed(), 0u);
}

TEST(Cache, FullCollectRemovesAbandonedPartialsButNotOnesBeingFetched) {
  Fixture f;
  auto abandoned = Sha("abandoned");
  test::Spit(f.data.path() / "tmp" / abandoned, std::string(3000, 'a'));
  auto b = f.Add(1 << 20, 80);
  f.server.Control("/_fault?path=" + f.Served(b.id) + "&rate_bps=1000000");
  auto c = f.Open();
  std::thread t([&] { EXPECT_TRUE(c->Fetch(f.Request({b}))); });
  auto partial = f.data.path() / "tmp" / b.id;
  auto end = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < end && !stdfs::exists(partial))
    std::this_thread::sleep_for(10ms);
  auto freed = c->Collect(true);
  t.join();
  ASSERT_TRUE(freed);
  EXPECT_EQ(*freed, 3000u);
  EXPECT_FALSE(stdfs::exists(f.data.path() / "tmp" / abandoned));
  EXPECT_TRUE(c->Has(b.id));
}

// Disk full mid-download (issue 7): the fetch fails no_space and leaves no partial behind, so
// the space it took goes back to the rest of the device. A real 1 MiB tmpfs (root only).
TEST(Cache, NoSpaceMidFetchGivesThePartialsBack) {
  Fixture f;
  auto mnt = f.data.path() / "small";
  stdfs::create_directories(mnt);
  auto [rc, out] = test::Sh("mount -t tmpfs -o size=1m gantry-cache-test " + mnt.string());
  ASSERT_EQ(rc, 0) << "this test needs root to mount a 1 MiB tmpfs: " << out;
  struct Unmount {
    stdfs::path p;
    ~Unmount() { test::Sh("umount " + p.string()); }
  } unmount{mnt};
  auto b = f.Add(3 << 20, 90);
  auto o = FastOptions();
  o.available_bytes = [](const stdfs::path&) -> Expected<std::uint64_t> { return 100 << 20; };  // space vanishes later
  auto c = BlockCache::Open(mnt / "data", o);
  ASSERT_TRUE(c) << c.error().String();
  auto r = (*c)->Fetch(f.Request({b}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "no_space") << r.error().String();
  EXPECT_FALSE(stdfs::exists(mnt / "data" / "tmp" / b.id));
  EXPECT_FALSE((*c)->Has(b.id));
}
