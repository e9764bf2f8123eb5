// Chunked blocks (docs/chunked-blocks.md) through a real gantryd: rev1 runs a container whose
// ~32 MiB squashfs image has a chunk index and chunk store on the block server; rev2 is the
// same tree with one small file changed. rev2 must be DONE while the block server serves at
// most 10% of the image; a lying index ends with the right block; a kill -9 in the middle of
// an assembly resumes without fetching again what is on disk; the cache verifies throughout.
#include <gtest/gtest.h>

#include <random>

#include "chunk/cdc.hpp"
#include "chunk/index.hpp"
#include "system/swap/swap_fixture.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr char kInit[] = "trap 'exit 0' PWR TERM; while :; do sleep 1; done";

// Incompressible payload, so the image is as big as the payload.
std::string Payload(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    auto v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

class Chunks {
 public:
  Chunks() {
    reason_ = LxcUnusableReason();
    f.a.config["update"]["commit_window_s"] = 1;
  }
  SwapFixture f;
  std::string reason_;

  // A busybox image with `payload` at /data/payload.bin and `note` at /etc/note.
  std::string Image(const std::string& payload, const std::string& note) {
    auto dir = tmp_.path();
    Spit(dir / "payload.bin", payload);
    auto out = dir / "img.squashfs";
    auto [rc, log] = Sh(ShQuote(GANTRY_MKROOTFS) + " " + ShQuote(out.string()) + " --init " +
                        ShQuote(kInit) + " --file " + ShQuote((dir / "payload.bin").string()) +
                        ":/opt/payload.bin --text " + ShQuote("/etc/note=" + note));
    if (rc != 0) throw std::runtime_error("mkrootfs.sh: " + log);
    return Slurp(out);
  }

  // Puts the block, its index and its chunks on the server (what `gantryctl pack` writes).
  std::string PutChunked(const std::string& bytes, const std::string& index_override = "") {
    auto id = f.a.PutBlock(bytes);
    auto chunks = chunk::ChunkBytes(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    f.a.blocks().Put("objects/" + id + ".chunks",
                     index_override.empty() ? chunk::WriteIndex(chunks) : index_override);
    size_t off = 0;
    for (auto& c : chunks) {
      f.a.blocks().Put("objects/chunks/" + c.sha, bytes.substr(off, c.size));
      off += c.size;
    }
    blocks_[id] = bytes;
    return id;
  }

  json State(const std::string& root) {
    auto conf = f.a.PutBlock("lxc.init.cmd = /sbin/gantry-init\n");
    blocks_[conf] = "lxc.init.cmd = /sbin/gantry-init\n";
    return {{"#spec", "pantavisor-service-system@1"},
            {"app/run.json", {{"#spec", "service-manifest-run@1"}, {"name", "app"}, {"type", "lxc"},
                              {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"},
                              {"group", "app"}, {"status_goal", "STARTED"}}},
            {"app/lxc.container.conf", conf},
            {"app/root.squashfs", root}};
  }

  json Send(const std::string& id, const std::string& rev, int seq, const json& state) {
    std::map<std::string, std::string> blocks;
    for (auto& [k, v] : state.items())
      if (v.is_string() && blocks_.count(v.get<std::string>())) blocks[v] = blocks_[v];
    f.a.Send({{"id", id}, {"op", "update"}, {"revision", f.a.Sign(f.a.Revision(rev, seq, state, blocks))}});
    return f.a.WaitReply(id);
  }
  json Update(const std::string& id, const std::string& rev, int seq, const json& state) {
    auto reply = Send(id, rev, seq, state);
    if (reply.value("ok", false) != true) return reply;
    return f.a.WaitFinal(id, 120s);
  }

  void ExpectCacheVerifies() {
    auto [rc, out] = Sh(BuildDir() + "/gantryctl cache verify --data-dir " +
                        ShQuote(f.a.data_dir().string()));
    EXPECT_EQ(rc, 0) << out;
  }
  std::uint64_t Served() { return f.a.blocks().BytesServed(); }
  void Reset() { f.a.blocks().Control("/_reset"); }

 private:
  TempDir tmp_;
  std::map<std::string, std::string> blocks_;
};

}  // namespace

TEST(ChunksSystem, SmallChangeMovesLittleLiesAreSurvivedAndKillResumes) {
  Chunks c;
  ASSERT_EQ(c.reason_, "") << "LXC cannot run here: " << c.reason_;
  auto payload = Payload(32 << 20, 1);
  auto img1 = c.Image(payload, "one");
  auto img2 = c.Image(payload, "two");
  ASSERT_EQ(c.Image(payload, "one"), img1) << "mkrootfs/mksquashfs is not reproducible";
  ASSERT_GE(img1.size(), 32u << 20);
  c.f.a.StartAgent();
  ASSERT_TRUE(c.f.a.WaitOnline()) << c.f.a.AgentLog();

  auto r1 = c.PutChunked(img1);
  ASSERT_EQ(c.Update("u1", "r1", 1, c.State(r1))["status"], "DONE") << c.f.a.AgentLog();
  c.ExpectCacheVerifies();

  // One small file changed: at most 10% of the image crosses the network.
  auto r2 = c.PutChunked(img2);
  c.Reset();
  auto e2 = c.Update("u2", "r2", 2, c.State(r2));
  ASSERT_EQ(e2["status"], "DONE") << e2.dump() << c.f.a.AgentLog();
  auto served = c.Served();
  std::printf("[chunks] image %zu B, rev2 fetched %llu B (%.2f%%)\n", img2.size(),
              static_cast<unsigned long long>(served), 100.0 * served / img2.size());
  EXPECT_LE(served, img2.size() / 10);
  EXPECT_EQ(c.f.a.blocks().BytesServed("/objects/" + r2), 0u);
  c.ExpectCacheVerifies();
  auto [lrc, ls] = Sh(BuildDir() + "/gantryctl cache ls --data-dir " + ShQuote(c.f.a.data_dir().string()));
  EXPECT_NE(ls.find("% ("), std::string::npos) << ls;

  // A lying index (a chunk hash swapped for another's): the block is fetched whole, DONE.
  auto img3 = c.Image(payload, "three");
  auto chunks3 = chunk::ChunkBytes(reinterpret_cast<const std::uint8_t*>(img3.data()), img3.size());
  std::swap(chunks3[3].sha, chunks3[7].sha);
  auto r3 = c.PutChunked(img3, chunk::WriteIndex(chunks3));
  c.Reset();
  auto e3 = c.Update("u3", "r3", 3, c.State(r3));
  ASSERT_EQ(e3["status"], "DONE") << e3.dump() << c.f.a.AgentLog();
  EXPECT_EQ(c.f.a.blocks().BytesServed("/objects/" + r3), img3.size());
  c.ExpectCacheVerifies();

  // A lying index and a lying block: WONTGO naming the block, nothing committed.
  auto img4 = c.Image(payload, "four");
  auto chunks4 = chunk::ChunkBytes(reinterpret_cast<const std::uint8_t*>(img4.data()), img4.size());
  chunks4[0].sha = std::string(64, 'e');
  auto r4 = c.PutChunked(img4, chunk::WriteIndex(chunks4));
  auto wrong = img4;
  wrong[wrong.size() / 2] ^= 1;
  c.f.a.blocks().Put("objects/" + r4, wrong);
  auto e4 = c.Update("u4", "r4", 4, c.State(r4));
  ASSERT_EQ(e4["status"], "WONTGO") << e4.dump() << c.f.a.AgentLog();
  EXPECT_NE(e4.dump().find(r4), std::string::npos) << e4.dump();
  EXPECT_FALSE(stdfs::exists(c.f.a.data_dir() / "objects" / r4.substr(0, 2) / r4));
  c.ExpectCacheVerifies();

  // kill -9 while chunks arrive (8 MiB of the payload changed, the server throttled).
  auto payload5 = payload;
  auto fresh = Payload(8 << 20, 5);
  payload5.replace(4 << 20, fresh.size(), fresh);
  auto img5 = c.Image(payload5, "five");
  auto r5 = c.PutChunked(img5);
  c.Reset();
  c.f.a.blocks().Control("/_fault?path=*&rate_bps=2000000");
  ASSERT_EQ(c.Send("u5", "r5", 5, c.State(r5))["ok"], true);
  auto work = c.f.a.data_dir() / "tmp" / (r5 + ".chunks.d");
  auto complete_chunks = [&] {
    int n = 0;
    std::error_code ec;
    for (auto& e : stdfs::directory_iterator(work, ec))
      n += e.path().filename().string().size() == 64 && e.file_size() >= chunk::kMinSize;
    return n;
  };
  ASSERT_TRUE(c.f.a.op().WaitFor([&](auto&) { return complete_chunks() >= 8; }, 120s)) << c.f.a.AgentLog();
  c.f.a.KillAgent();
  int on_disk = complete_chunks();
  c.f.a.blocks().Control("/_reset");
  c.f.a.StartAgent();
  auto e5 = c.f.a.WaitFinal("u5", 180s);
  ASSERT_EQ(e5["status"], "DONE") << e5.dump() << c.f.a.AgentLog();
  // No chunk was fetched from byte 0 after the restart when it was on disk: the restarted
  // agent's requests cover at most the chunks that were not whole yet.
  auto stats = json::parse(c.f.a.blocks().Control("/_stats"));
  auto chunks5 = chunk::ChunkBytes(reinterpret_cast<const std::uint8_t*>(img5.data()), img5.size());
  std::set<std::string> in1;
  for (auto& ch : chunk::ChunkBytes(reinterpret_cast<const std::uint8_t*>(img1.data()), img1.size()))
    in1.insert(ch.sha);
  std::uint64_t new_bytes = 0;
  for (auto& ch : chunks5)
    if (!in1.count(ch.sha)) new_bytes += ch.size;
  std::uint64_t after = stats["total"].get<std::uint64_t>();
  std::printf("[chunks] kill -9 with %d chunks on disk; after the restart %llu B of %llu B new\n",
              on_disk, static_cast<unsigned long long>(after), static_cast<unsigned long long>(new_bytes));
  EXPECT_LE(after + static_cast<std::uint64_t>(on_disk) * chunk::kMinSize, new_bytes + (1u << 20));
  EXPECT_EQ(c.f.a.blocks().BytesServed("/objects/" + r5), 0u);
  EXPECT_FALSE(stdfs::exists(work));
  c.ExpectCacheVerifies();
}

// gantryctl pack: an unchanged tree gives identical bytes (image, index, chunks); an image of
// 1 MiB or more gets an index whose chunks, concatenated, are the image.
TEST(ChunksSystem, PackIsReproducibleAndWritesIndexAndChunks) {
  TempDir d;
  auto src = d.path() / "rev";
  Sh("cp -rL " + ShQuote(SourceDir() + "/examples/revisions/rev1") + " " + ShQuote(src.string()));
  Spit(src / "collector" / "rootfs" / "opt" / "payload.bin", Payload(3 << 20, 7));
  auto pack = [&](const std::string& out) {
    auto [rc, log] = Sh(BuildDir() + "/gantryctl pack " + ShQuote(src.string()) + " --out " +
                        ShQuote((d.path() / out).string()));
    EXPECT_EQ(rc, 0) << log;
  };
  pack("a");
  Sh("touch " + ShQuote((src / "collector" / "rootfs" / "opt" / "payload.bin").string()));
  pack("b");
  auto [rc, diff] = Sh("diff -r " + ShQuote((d.path() / "a").string()) + " " + ShQuote((d.path() / "b").string()));
  EXPECT_EQ(rc, 0) << "an unchanged tree packed differently:\n" << diff;
  auto state = json::parse(Slurp(d.path() / "a" / "state.json"));
  auto id = state["collector/root.squashfs"].get<std::string>();
  auto image = Slurp(d.path() / "a" / "objects" / id);
  ASSERT_GE(image.size(), 3u << 20);
  auto index = chunk::ParseIndex(Slurp(d.path() / "a" / "objects" / (id + ".chunks")), image.size());
  ASSERT_TRUE(index) << index.error().String();
  std::string joined;
  for (auto& c : *index) joined += Slurp(d.path() / "a" / "objects" / "chunks" / c.sha);
  EXPECT_TRUE(joined == image);
}
