// Issue 7 "disk full" (docs/architecture.md: no space → WONTGO "space required X B, available Y B"): a
// real gantryd whose data dir lives on a 16 MiB tmpfs the test mounts, real LXC containers, a
// real mosquitto and block server. An update that cannot fit is refused before a byte is
// fetched; space that vanishes while a block downloads ends the update WONTGO; either way the
// running revision keeps running untouched and the cache verifies.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <regex>

#include "system/swap/swap_fixture.hpp"
#include "tools/tally.hpp"

using namespace gantry::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kFsBytes = 16 * kMiB;

// A tmpfs of a fixed size mounted on the agent's data dir (the LXC helpers find running
// containers by their lxcpath string, so the data dir keeps its path). Unmount() before the
// swap fixture's own leak check, which would take the tmpfs for a leaked mount.
class SmallFs {
 public:
  SmallFs(stdfs::path at, std::uint64_t bytes) : path_(std::move(at)) {
    stdfs::create_directories(path_);
    auto [rc, out] = Sh("mount -t tmpfs -o size=" + std::to_string(bytes) + ",mode=0700 gantry-diskfull " +
                        ShQuote(path_.string()));
    if (rc != 0) error_ = "cannot mount a " + std::to_string(bytes) + " B tmpfs: " + out;
    mounted_ = rc == 0;
  }
  ~SmallFs() {
    if (auto problem = Unmount(); !problem.empty()) ADD_FAILURE() << problem;
  }
  SmallFs(const SmallFs&) = delete;
  SmallFs& operator=(const SmallFs&) = delete;

  const std::string& error() const { return error_; }
  const stdfs::path& path() const { return path_; }

  std::uint64_t Available() const {
    struct statvfs st {};
    if (::statvfs(path().c_str(), &st) != 0) return 0;
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  }

  // Appends to a filler file until the file system answers ENOSPC; returns the bytes written.
  std::uint64_t Fill() {
    int fd = ::open((path() / "filler").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error(std::string("cannot create the filler: ") + std::strerror(errno));
    std::string chunk(kMiB, 'f');
    std::uint64_t written = 0;
    for (size_t len : {size_t{kMiB}, size_t{4096}, size_t{1}}) {
      for (;;) {
        ssize_t n = ::write(fd, chunk.data(), len);
        if (n > 0) {
          written += static_cast<std::uint64_t>(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != ENOSPC) {
          ::close(fd);
          throw std::runtime_error(std::string("filler: ") + std::strerror(errno));
        }
        break;
      }
    }
    ::close(fd);
    return written;
  }
  void Drain() { stdfs::remove(path() / "filler"); }

  // "" when nothing of the agent is left mounted or attached inside and the tmpfs unmounts;
  // otherwise what was left (and it is lazily unmounted anyway).
  std::string Unmount() {
    if (!mounted_) return "";
    mounted_ = false;
    std::string problem;
    std::istringstream info(Slurp("/proc/self/mountinfo"));
    for (std::string l; std::getline(info, l);)
      if (l.find(" " + path().string() + "/") != std::string::npos) problem += "leaked mount: " + l + "\n";
    auto [lrc, loops] = Sh("losetup -a");
    std::istringstream ls(loops);
    for (std::string l; std::getline(ls, l);)
      if (l.find(path().string() + "/") != std::string::npos) problem += "leaked loop device: " + l + "\n";
    auto [rc, out] = Sh("umount " + ShQuote(path().string()));
    if (rc != 0) {
      problem += "umount " + path().string() + ": " + out;
      Sh("umount -l " + ShQuote(path().string()));
    }
    return problem;
  }

 private:
  stdfs::path path_;
  bool mounted_ = false;
  std::string error_;
};

std::string RandomBytes(size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    auto v = gen();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

// Sensor firmware is a block the agent fetches like any other (the relay is off here).
void AddFirmware(json& state, const std::string& model, const std::string& id) {
  state["_sensors/" + model + "/firmware.bin"] = id;
  state["_sensors/" + model + "/sensor.json"] = {{"version", "1.0.0"}, {"seq", 1}, {"targets", {"*"}}};
}

// Sends a signed update of state; every block it names is sized from the block server.
json SendUpdate(SwapFixture& f, const std::string& id, const std::string& rev, int seq, const json& state) {
  std::map<std::string, std::string> blocks;
  for (auto& [key, v] : state.items()) {
    if (!v.is_string()) continue;
    auto file = f.a.blocks().root() / "objects" / v.get<std::string>();
    if (v.get<std::string>().size() == 64 && stdfs::exists(file)) blocks[v] = Slurp(file);
  }
  f.a.Send({{"id", id}, {"op", "update"}, {"revision", f.a.Sign(f.a.Revision(rev, seq, state, blocks))}});
  return f.a.WaitReply(id);
}

std::vector<std::string> BlocksOf(const json& state) {
  std::vector<std::string> ids;
  for (auto& [key, v] : state.items())
    if (v.is_string() && std::regex_match(v.get<std::string>(), std::regex("[0-9a-f]{64}"))) ids.push_back(v);
  return ids;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  auto lower = [](std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  return lower(haystack).find(lower(needle)) != std::string::npos;
}

}  // namespace

TEST(DiskFull, NoSpaceIsWontgoAndTheRunningRevisionStaysUntouched) {
  Tally tally{"disk-full"};
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  const auto data = f.a.data_dir();
  SmallFs small(data, kFsBytes);
  ASSERT_EQ(small.error(), "") << "the disk-full test needs its own small file system";
  // Also on failure: the agent stops and its instances are released before the tmpfs goes.
  struct Release {
    SwapFixture& f;
    SmallFs& small;
    bool done = false;
    ~Release() { Run(); }
    void Run() {
      if (done) return;
      done = true;
      f.a.StopAgent();
      auto [rc, out] = Sh(ShQuote(BuildDir() + "/tests/swap_release_all") + " " +
                          ShQuote(BuildDir() + "/plugins") + " " + ShQuote(f.a.data_dir().string()));
      if (rc != 0) ADD_FAILURE() << "releasing the instances failed: " << out;
      if (auto problem = small.Unmount(); !problem.empty()) ADD_FAILURE() << problem;
    }
  } release{f, small};
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();

  auto verify = [&](const std::string& when) {
    auto [rc, out] = Sh(ShQuote(BuildDir() + "/gantryctl") + " cache verify --data-dir " + ShQuote(data.string()));
    EXPECT_EQ(rc, 0) << "cache verify " << when << ": " << out;
    if (rc != 0) tally.lost++;
  };

  // The revision that must survive: two containers, installed DONE.
  auto r1 = f.State({{.name = "alpha", .marker = "a1"}, {.name = "beta", .marker = "b1"}});
  tally.inputs++;
  auto e1 = f.Update("u1", "r1", 1, r1);
  ASSERT_EQ(e1["status"], "DONE") << e1.dump() << f.a.AgentLog();
  auto st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 2); });
  ASSERT_TRUE(SwapFixture::AllRunning(st, "r1", 2)) << st.dump();
  const auto running = f.Running();
  ASSERT_EQ(running.size(), 2u);
  std::map<std::string, int> pids;
  for (auto& inst : running) pids[inst] = f.InitPid(inst);
  for (auto& [inst, pid] : pids) ASSERT_GT(pid, 0) << inst;
  const auto alpha1 = f.RunningInstance("alpha");

  // r1 still runs as it did: same instances, same init processes, P/state names it, and its
  // blocks are still in the cache.
  auto untouched = [&](const std::string& when, bool disk_full = false) {
    std::string wrong;
    if (f.Running() != running) wrong += "the running instances changed; ";
    for (auto& [inst, pid] : pids)
      if (f.InitPid(inst) != pid) wrong += inst + " has a new init pid; ";
    f.a.Send({{"id", "get-" + when}, {"op", "get-state"}});
    auto reply = f.a.WaitReply("get-" + when);
    // With the disk full the agent cannot record the command id, which it must before it
    // answers ok (docs/protocol.md): a precise refusal is the right answer then.
    bool refused_full = disk_full && reply.contains("error") && reply["error"].value("code", "") == "no_space";
    if (reply.value("ok", false) != true && !refused_full) wrong += "get-state failed: " + reply.dump() + "; ";
    auto s = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r1", 2); }, 10s);
    if (!SwapFixture::AllRunning(s, "r1", 2)) wrong += "P/state: " + s.dump() + "; ";
    for (auto& id : BlocksOf(r1))
      if (!stdfs::exists(data / "objects" / id.substr(0, 2) / id)) wrong += "block " + id + " of r1 is gone; ";
    EXPECT_EQ(wrong, "") << when;
    if (!wrong.empty()) tally.lost++;
  };

  // 1. An update that cannot fit: refused before any fetch, with the space it needs.
  {
    SCOPED_TRACE("update larger than the file system");
    auto big = RandomBytes(kFsBytes + 4 * kMiB, 1);
    auto big_id = f.a.PutBlock(big);
    auto r2 = r1;
    AddFirmware(r2, "big", big_id);
    auto available = small.Available();
    tally.faults++;
    tally.inputs++;
    auto reply = SendUpdate(f, "u2", "r2", 2, r2);
    EXPECT_EQ(reply.value("ok", true), false) << reply.dump();
    auto message = reply.contains("error") ? reply["error"].value("message", "") : "";
    std::smatch m;
    ASSERT_TRUE(std::regex_search(message, m, std::regex(R"(space required (\d+) B, available (\d+) B)")))
        << reply.dump();
    EXPECT_EQ(std::stoull(m[1]), big.size()) << "only the missing block is required";
    auto said_available = std::stoull(m[2]);
    EXPECT_LT(said_available, big.size());
    // What statvfs said just before, give or take what the agent wrote in between.
    EXPECT_LE(said_available, available + kMiB) << "available " << available;
    EXPECT_GE(said_available + kMiB, available) << "available " << available;
    auto final_event = f.a.WaitFinal("u2", 30s);
    EXPECT_EQ(final_event["status"], "WONTGO") << final_event.dump();
    EXPECT_NE(final_event.value("msg", "").find(m[0].str()), std::string::npos) << final_event.dump();
    for (auto& e : f.a.Progress("u2"))
      EXPECT_EQ(e["status"], "WONTGO") << "an event besides the WONTGO: " << e.dump();
    EXPECT_EQ(f.a.blocks().Requests("/objects/" + big_id), 0u);
    EXPECT_EQ(f.a.blocks().BytesServed("/objects/" + big_id), 0u);
    EXPECT_FALSE(stdfs::exists(data / "tmp" / big_id));
    untouched("after-wontgo");
    verify("after the refused update");
  }

  // 2. Space vanishing during a fetch of a block that fits: a filler takes the rest of the
  // file system while the block server holds the download back, (a) once part of the block
  // is on disk (a slow download), (b) before its first byte (a stalled one).
  auto fw = RandomBytes(6 * kMiB, 2);
  auto fw_id = f.a.PutBlock(fw);
  auto r3 = f.State({{.name = "alpha", .marker = "a1"}, {.name = "beta", .marker = "b3"}});
  AddFirmware(r3, "cam", fw_id);
  const auto served = "/objects/" + fw_id;
  auto vanish = [&](const std::string& id, const std::string& rev, int seq, const std::string& fault,
                    const std::function<bool()>& started) {
    ASSERT_LT(fw.size() + 2 * kMiB, small.Available()) << "the block must fit before the filler";
    f.a.blocks().Control("/_reset");
    f.a.blocks().Control("/_fault?path=" + served + "&" + fault);
    tally.inputs++;
    auto reply = SendUpdate(f, id, rev, seq, r3);
    ASSERT_EQ(reply.value("ok", false), true) << reply.dump();
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!started()) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the download never started\n" << f.a.AgentLog();
      std::this_thread::sleep_for(20ms);
    }
    tally.faults++;
    EXPECT_GT(small.Fill(), 0u);
    EXPECT_LT(small.Available(), 4096u);
    auto final_event = f.a.WaitFinal(id, 60s);
    EXPECT_EQ(final_event["status"], "WONTGO") << final_event.dump();
    EXPECT_TRUE(Contains(final_event.value("msg", ""), "no space") ||
                Contains(final_event.value("msg", ""), "no_space"))
        << final_event.dump();
    EXPECT_LT(f.a.blocks().BytesServed(served), fw.size()) << "the block was not cut short";
    ASSERT_TRUE(f.a.agent().Running()) << "gantryd died\n" << f.a.AgentLog();
    untouched("while-full-" + id, true);
    small.Drain();
    untouched("after-drain-" + id);
    verify("after space vanished (" + id + ")");
  };
  {
    SCOPED_TRACE("space vanishing during a slow download");
    auto partial = data / "tmp" / fw_id;
    vanish("u3", "r3", 3, "rate_bps=" + std::to_string(kMiB), [&] {
      std::error_code ec;
      return stdfs::file_size(partial, ec) >= 256 * 1024 && !ec;
    });
  }
  {
    SCOPED_TRACE("space vanishing while the download stalls before its first byte");
    vanish("u4", "r4", 4, "stall_ms=3000", [&] { return f.a.blocks().Requests(served) > 0; });
  }

  // 3. With the space back, the same content as a new revision goes through.
  f.a.blocks().Control("/_reset");
  tally.inputs++;
  auto reply5 = SendUpdate(f, "u5", "r5", 5, r3);
  ASSERT_EQ(reply5.value("ok", false), true) << reply5.dump();
  auto e5 = f.a.WaitFinal("u5", 60s);
  EXPECT_EQ(e5["status"], "DONE") << e5.dump() << f.a.AgentLog();
  st = f.WaitState([](const json& s) { return SwapFixture::AllRunning(s, "r5", 2); });
  EXPECT_TRUE(SwapFixture::AllRunning(st, "r5", 2)) << st.dump();
  EXPECT_EQ(f.RunningInstance("alpha"), alpha1) << "unchanged alpha got a new instance";
  verify("after the update that fits");
  EXPECT_EQ(f.a.SchemaProblems(), "");

  // Every update got exactly one final status (a final the journal could not record is not
  // run, nor reported, again), and none is left open in the journal.
  for (auto id : {"u1", "u2", "u3", "u4", "u5"}) {
    int finals = 0;
    for (auto& e : f.a.Progress(id)) finals += AgentFixture::IsFinal(e.value("status", ""));
    EXPECT_EQ(finals, 1) << id;
  }
  f.a.StopAgent();
  auto [rc, open] = Sh("sqlite3 " + ShQuote((data / "gantry.db").string()) +
                       " \"SELECT cmd_id || ' ' || state FROM transactions WHERE final = 0\"");
  EXPECT_EQ(rc, 0) << open;
  EXPECT_EQ(open, "") << "transactions left open";
  // ... and none is waiting to be sent (again) after a restart.
  auto [urc, unreported] = Sh("sqlite3 " + ShQuote((data / "gantry.db").string()) +
                              " \"SELECT txn_id FROM unreported_finals\"");
  EXPECT_EQ(urc, 0) << unreported;
  EXPECT_EQ(unreported, "") << "finals marked unreported";
  release.Run();
  EXPECT_EQ(tally.lost, 0);
  tally.Print();
}
