#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>

#include <cstring>
#include <set>

#include "digest/sha256.hpp"
#include "store/db.hpp"
#include "test_util.hpp"
#include "tools/block_server.hpp"

using namespace gantry;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

std::string Bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 11;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

struct Block {
  std::string id;
  size_t size;
  std::string Spec() const { return id + ":" + std::to_string(size); }
};

std::string Ctl() { return test::BuildDir() + "/gantryctl"; }

struct Fixture {
  test::TempDir tmp;
  test::BlockServer server;
  stdfs::path data = tmp.path() / "data";

  Fixture() {
    if (!stdfs::exists(Ctl())) throw std::runtime_error(Ctl() + " is not built");
  }
  Block Add(size_t size, unsigned seed) {
    auto bytes = Bytes(size, seed);
    auto id = digest::Sha256Hex(bytes.data(), bytes.size());
    server.Put("objects/" + id, bytes);
    return {id, size};
  }
  std::string FetchCmd(const std::vector<Block>& blocks, const std::string& extra = "") {
    std::string cmd = Ctl() + " cache fetch --data-dir " + data.string() + " --base " +
                      server.url("/objects/") + " " + extra;
    for (auto& b : blocks) cmd += " " + b.Spec();
    return cmd;
  }
  std::set<std::string> Rows() {
    std::set<std::string> out;
    auto db = store::Db::OpenBare((data / "gantry.db").string());
    EXPECT_TRUE(db);
    auto st = db->Prepare("SELECT id FROM blocks");
    EXPECT_TRUE(st);
    while (st->Step().value_or(false)) out.insert(st->Text(0));
    return out;
  }
  std::set<std::string> Files(const std::string& sub) {
    std::set<std::string> out;
    if (!stdfs::exists(data / sub)) return out;
    for (auto& e : stdfs::recursive_directory_iterator(data / sub))
      if (e.is_regular_file()) out.insert(e.path().filename().string());
    return out;
  }
};

}  // namespace

TEST(CacheSystem, FetchPrintsProgressAndLsListsPins) {
  Fixture f;
  std::vector<Block> blocks = {f.Add(300000, 1), f.Add(200000, 2)};
  auto [rc, out] = test::Sh(f.FetchCmd(blocks, "--pin rev-1"));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("progress 500000/500000 bytes 2/2 objects 100%"), std::string::npos) << out;
  auto [lrc, ls] = test::Sh(Ctl() + " cache ls --data-dir " + f.data.string());
  ASSERT_EQ(lrc, 0) << ls;
  for (auto& b : blocks) EXPECT_NE(ls.find(b.id), std::string::npos) << ls;
  EXPECT_NE(ls.find("rev-1"), std::string::npos) << ls;
  EXPECT_NE(ls.find("2 blocks, 500000 bytes"), std::string::npos) << ls;
}

TEST(CacheSystem, GcKeepsPinnedBlocksAndRespectsTheAgentLock) {
  Fixture f;
  auto pinned = f.Add(1000, 3), loose = f.Add(2000, 4);
  ASSERT_EQ(test::Sh(f.FetchCmd({pinned}, "--pin rev-1")).first, 0);
  ASSERT_EQ(test::Sh(f.FetchCmd({loose})).first, 0);
  {
    // A running gantryd holds data_dir/lock: gc refuses and changes nothing.
    int fd = open((f.data / "lock").c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
    auto [rc, out] = test::Sh(Ctl() + " cache gc --data-dir " + f.data.string());
    close(fd);
    EXPECT_EQ(rc, 3) << out;
    EXPECT_NE(out.find("locked"), std::string::npos) << out;
    EXPECT_EQ(f.Rows().size(), 2u);
  }
  auto [rc, out] = test::Sh(Ctl() + " cache gc --data-dir " + f.data.string());
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("freed 2000 bytes"), std::string::npos) << out;
  EXPECT_EQ(f.Rows(), std::set<std::string>{pinned.id});
  EXPECT_EQ(f.Files("objects"), std::set<std::string>{pinned.id});
}

TEST(CacheSystem, VerifyExitsOneNamingTheTamperedBlock) {
  Fixture f;
  std::vector<Block> blocks = {f.Add(5000, 5), f.Add(5000, 6), f.Add(5000, 7)};
  ASSERT_EQ(test::Sh(f.FetchCmd(blocks)).first, 0);
  auto verify = Ctl() + " cache verify --data-dir " + f.data.string();
  auto [ok_rc, ok_out] = test::Sh(verify);
  EXPECT_EQ(ok_rc, 0) << ok_out;
  auto path = f.data / "objects" / blocks[2].id.substr(0, 2) / blocks[2].id;
  stdfs::permissions(path, stdfs::perms::owner_write, stdfs::perm_options::add);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(1234);
    file.put('!');
  }
  auto [rc, out] = test::Sh(verify);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find(blocks[2].id), std::string::npos) << out;
  EXPECT_EQ(out.find(blocks[0].id), std::string::npos) << out;
  EXPECT_EQ(out.find(blocks[1].id), std::string::npos) << out;
}

TEST(CacheSystem, CorruptBlockFailsTheFetchAndNeverEntersObjects) {
  Fixture f;
  auto good = Bytes(40000, 8);
  auto id = digest::Sha256Hex(good.data(), good.size());
  f.server.Put("objects/" + id, Bytes(40000, 9));
  auto [rc, out] = test::Sh(f.FetchCmd({{id, 40000}}));
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("hash_mismatch"), std::string::npos) << out;
  EXPECT_NE(out.find(id), std::string::npos) << out;
  EXPECT_TRUE(f.Files("objects").empty());
  EXPECT_TRUE(f.Rows().empty());
}

TEST(CacheSystem, SpaceCheckOnAFullFileSystemRefusesBeforeAnyByte) {
  Fixture f;
  stdfs::create_directories(f.data);
  ASSERT_EQ(mount("tmpfs", f.data.c_str(), "tmpfs", 0, "size=1m"), 0)
      << "cannot mount a tmpfs (this test needs root): " << std::strerror(errno);
  struct Unmount {
    stdfs::path p;
    ~Unmount() { umount2(p.c_str(), MNT_DETACH); }
  } unmount{f.data};
  std::vector<Block> blocks = {f.Add(1 << 20, 10), f.Add(1 << 20, 11)};
  auto [rc, out] = test::Sh(f.FetchCmd(blocks));
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("no_space: space required 2097152 B, available "), std::string::npos) << out;
  EXPECT_EQ(f.server.BytesServed(), 0u);
  EXPECT_TRUE(f.Files("tmp").empty());
}

TEST(CacheSystem, FetchKilledMidDownloadResumesWithSqliteAndFilesAgreeing) {
  Fixture f;
  std::vector<Block> blocks;
  size_t total = 0;
  for (unsigned i = 0; i < 8; ++i) {
    blocks.push_back(f.Add(512 * 1024, 20 + i));
    total += blocks.back().size;
  }
  // ~4 MB/s per transfer, two at once: about half a second per block.
  f.server.Control("/_fault?path=*&rate_bps=1000000");
  auto log = f.tmp.path() / "fetch.log";
  test::Process p({"/bin/sh", "-c", "exec " + f.FetchCmd(blocks, "--parallel 2")}, log.string());
  auto end = std::chrono::steady_clock::now() + 30s;
  // Kill once some blocks are in and others are half way.
  while (std::chrono::steady_clock::now() < end && f.Files("objects").size() < 3)
    std::this_thread::sleep_for(20ms);
  ASSERT_GE(f.Files("objects").size(), 3u) << test::Slurp(log);
  std::this_thread::sleep_for(200ms);
  p.Kill(SIGKILL);
  auto committed = f.Rows();
  ASSERT_LT(committed.size(), blocks.size()) << "the download finished before the kill";
  // Every recorded block is a complete, verified file: nothing half-done is counted.
  for (auto& id : committed) {
    auto sha = digest::Sha256File(f.data / "objects" / id.substr(0, 2) / id);
    ASSERT_TRUE(sha);
    EXPECT_EQ(*sha, id);
  }
  EXPECT_FALSE(f.Files("tmp").empty()) << "no partial download to resume";

  f.server.Control("/_fault?path=*");  // full speed again
  auto [rc, out] = test::Sh(f.FetchCmd(blocks, "--parallel 2"));
  ASSERT_EQ(rc, 0) << out;
  std::set<std::string> all;
  for (auto& b : blocks) all.insert(b.id);
  EXPECT_EQ(f.Rows(), all);
  EXPECT_EQ(f.Files("objects"), all);
  EXPECT_TRUE(f.Files("tmp").empty());
  auto [vrc, vout] = test::Sh(Ctl() + " cache verify --data-dir " + f.data.string());
  EXPECT_EQ(vrc, 0) << vout;
  // Resumed, not restarted: at most what sat in socket buffers at the kill is sent twice.
  auto served = f.server.BytesServed();
  EXPECT_GE(served, total);
  EXPECT_LT(served, total + 1024 * 1024) << "blocks were downloaded again from byte 0";
  for (auto& id : committed) EXPECT_EQ(f.server.BytesServed("/objects/" + id), 512u * 1024) << id;
}

TEST(CacheSystem, ServerFaultsThroughTheCli) {
  Fixture f;
  auto b = f.Add(700000, 30), c = f.Add(1000, 31);
  f.server.Control("/_fault?path=/objects/" + b.id + "&cut_after=250000&ignore_range=1");
  f.server.Control("/_fault?path=/objects/" + c.id + "&status=503&count=2");
  auto [rc, out] = test::Sh(f.FetchCmd({b, c}));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(f.server.BytesServed("/objects/" + b.id), 250000u + 700000u);
  EXPECT_EQ(f.server.Requests("/objects/" + c.id), 3u);

  auto [rc4, out4] = test::Sh(f.FetchCmd({{std::string(64, 'a'), 10}}));
  EXPECT_EQ(rc4, 3) << out4;
  EXPECT_NE(out4.find("http: "), std::string::npos) << out4;
  EXPECT_NE(out4.find("404"), std::string::npos) << out4;
}

TEST(CacheSystem, SigtermCancelsAndTheNextRunResumes) {
  Fixture f;
  auto b = f.Add(2 << 20, 40);
  f.server.Control("/_fault?path=*&rate_bps=1000000");
  auto log = f.tmp.path() / "fetch.log";
  test::Process p({"/bin/sh", "-c", "exec " + f.FetchCmd({b})}, log.string());
  auto partial = f.data / "tmp" / b.id;
  auto end = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < end &&
         (!stdfs::exists(partial) || stdfs::file_size(partial) < 300000))
    std::this_thread::sleep_for(20ms);
  kill(p.pid(), SIGTERM);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(p.Wait(5s), 3);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_NE(test::Slurp(log).find("cancelled"), std::string::npos) << test::Slurp(log);
  auto have = stdfs::file_size(partial);
  f.server.Control("/_reset");
  auto [rc, out] = test::Sh(f.FetchCmd({b}));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_LE(f.server.BytesServed(), b.size - have + 512 * 1024);
}
