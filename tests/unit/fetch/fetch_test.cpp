#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "digest/sha256.hpp"
#include "fetch/fetcher.hpp"
#include "test_util.hpp"
#include "tools/block_server.hpp"

using namespace gantry;
using namespace std::chrono_literals;

namespace {

std::string Bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string Sha(const std::string& s) { return digest::Sha256Hex(s.data(), s.size()); }

fetch::Options Fast() {
  fetch::Options o;
  o.backoff_first = 20ms;
  o.backoff_max = 100ms;
  o.max_attempts = 4;
  return o;
}

// Runs one transfer; returns the digest the fetcher reported.
Expected<std::string> One(const std::string& url, const std::filesystem::path& partial,
                          std::uint64_t size, const fetch::Options& o) {
  std::string got;
  auto r = fetch::FetchAll({{url, partial, size}}, o, [&](size_t, const std::string& sha) {
    got = sha;
    return Expected<bool>(true);
  });
  if (!r) return Unexpected(r.error());
  return got;
}

}  // namespace

TEST(Fetch, FileUrlDownloadsAndHashes) {
  test::TempDir dir;
  auto data = Bytes(300000, 1);
  test::Spit(dir.path() / "src", data);
  auto got = One("file://" + (dir.path() / "src").string(), dir.path() / "part", data.size(), Fast());
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(*got, Sha(data));
  EXPECT_EQ(test::Slurp(dir.path() / "part"), data);
}

TEST(Fetch, ResumesFromPartialAndRebuildsTheHashFromDisk) {
  test::TempDir dir;
  test::BlockServer server;
  auto data = Bytes(1 << 20, 2);
  server.Put("b", data);
  test::Spit(dir.path() / "part", data.substr(0, 300000));
  std::atomic<std::int64_t> reported{0};
  auto o = Fast();
  o.on_bytes = [&](std::int64_t d) { reported += d; };
  auto got = One(server.url("/b"), dir.path() / "part", data.size(), o);
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(*got, Sha(data));
  EXPECT_EQ(server.BytesServed("/b"), data.size() - 300000);
  EXPECT_EQ(server.RangeRequests("/b"), 1u);
  EXPECT_EQ(reported.load(), static_cast<std::int64_t>(data.size()));
}

TEST(Fetch, CutConnectionIsResumedWithRange) {
  test::TempDir dir;
  test::BlockServer server;
  auto data = Bytes(1 << 20, 3);
  server.Put("b", data);
  server.Control("/_fault?path=/b&cut_after=400000");
  auto got = One(server.url("/b"), dir.path() / "part", data.size(), Fast());
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(*got, Sha(data));
  EXPECT_EQ(server.Requests("/b"), 2u);
  EXPECT_EQ(server.RangeRequests("/b"), 1u);
  EXPECT_EQ(server.BytesServed("/b"), data.size());  // nothing sent twice
}

TEST(Fetch, ServerIgnoringRangeRestartsFromZero) {
  test::TempDir dir;
  test::BlockServer server;
  auto data = Bytes(500000, 4);
  server.Put("b", data);
  test::Spit(dir.path() / "part", data.substr(0, 100000));
  server.Control("/_fault?path=/b&ignore_range=1");
  std::atomic<std::int64_t> reported{0};
  auto o = Fast();
  o.on_bytes = [&](std::int64_t d) { reported += d; };
  auto got = One(server.url("/b"), dir.path() / "part", data.size(), o);
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(*got, Sha(data));
  EXPECT_EQ(test::Slurp(dir.path() / "part"), data);
  EXPECT_EQ(reported.load(), static_cast<std::int64_t>(data.size()));
  EXPECT_EQ(server.Requests("/b"), 1u);  // the 200 body is used, not asked for again
}

TEST(Fetch, NeverWritesMoreThanTheExpectedSize) {
  test::TempDir dir;
  test::BlockServer server;
  auto data = Bytes(200000, 5);
  server.Put("b", data);
  auto got = One(server.url("/b"), dir.path() / "part", 1000, Fast());
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(std::filesystem::file_size(dir.path() / "part"), 1000u);
  EXPECT_EQ(*got, Sha(data.substr(0, 1000)));
}

TEST(Fetch, ClientErrorIsPermanent) {
  test::TempDir dir;
  test::BlockServer server;
  auto got = One(server.url("/missing"), dir.path() / "part", 10, Fast());
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, "http");
  EXPECT_NE(got.error().message.find("404"), std::string::npos) << got.error().message;
  EXPECT_EQ(server.Requests("/missing"), 1u);
}

TEST(Fetch, ServerErrorIsRetried) {
  test::TempDir dir;
  test::BlockServer server;
  auto data = Bytes(10000, 6);
  server.Put("b", data);
  server.Control("/_fault?path=/b&status=503&count=2");
  auto got = One(server.url("/b"), dir.path() / "part", data.size(), Fast());
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(*got, Sha(data));
  EXPECT_EQ(server.Requests("/b"), 3u);
}

TEST(Fetch, RetriesAreLimited) {
  test::TempDir dir;
  test::BlockServer server;
  server.Put("b", "x");
  server.Control("/_fault?path=/b&status=503&count=100");
  auto got = One(server.url("/b"), dir.path() / "part", 1, Fast());
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, "network");
  EXPECT_EQ(server.Requests("/b"), 4u);
}

TEST(Fetch, StalledServerIsDroppedByTheLowSpeedLimit) {
  test::TempDir dir;
  test::BlockServer server;
  auto data = Bytes(50000, 7);
  server.Put("b", data);
  server.Control("/_fault?path=/b&stall_ms=20000");
  auto o = Fast();
  o.low_speed_time = 1s;
  auto got = One(server.url("/b"), dir.path() / "part", data.size(), o);
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(*got, Sha(data));
}

TEST(Fetch, CancelIsPrompt) {
  test::TempDir dir;
  test::BlockServer server;
  server.Put("b", Bytes(1000, 8));
  server.Control("/_fault?path=/b&stall_ms=20000");
  std::atomic<bool> cancel{false};
  auto o = Fast();
  o.cancel = &cancel;
  std::thread t([&] {
    std::this_thread::sleep_for(300ms);
    cancel = true;
  });
  auto start = std::chrono::steady_clock::now();
  auto got = One(server.url("/b"), dir.path() / "part", 1000, o);
  auto took = std::chrono::steady_clock::now() - start;
  t.join();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, "cancelled");
  EXPECT_LT(took, 1500ms);
}

TEST(Fetch, ParallelTransfersAndRefetchOnRequest) {
  test::TempDir dir;
  test::BlockServer server;
  std::vector<fetch::Transfer> ts;
  std::map<size_t, std::string> want;
  for (size_t i = 0; i < 6; ++i) {
    auto data = Bytes(100000 + i * 1000, 10 + static_cast<unsigned>(i));
    server.Put("b" + std::to_string(i), data);
    ts.push_back({server.url("/b" + std::to_string(i)), dir.path() / ("p" + std::to_string(i)),
                  data.size()});
    want[i] = Sha(data);
  }
  std::mutex m;
  std::map<size_t, int> calls;
  auto o = Fast();
  o.parallel = 3;
  auto r = fetch::FetchAll(ts, o, [&](size_t i, const std::string& sha) -> Expected<bool> {
    std::lock_guard lock(m);
    EXPECT_EQ(sha, want[i]);
    if (++calls[i] == 1 && i == 2) {
      std::filesystem::remove(ts[i].partial);  // as the cache does after a mismatch
      return false;
    }
    return true;
  });
  ASSERT_TRUE(r) << r.error().String();
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(calls[i], i == 2 ? 2 : 1) << i;
}

TEST(Fetch, ErrorFromOnCompleteStopsEverything) {
  test::TempDir dir;
  std::vector<fetch::Transfer> ts;
  for (int i = 0; i < 4; ++i) {
    test::Spit(dir.path() / ("s" + std::to_string(i)), "data");
    ts.push_back({"file://" + (dir.path() / ("s" + std::to_string(i))).string(),
                  dir.path() / ("p" + std::to_string(i)), 4});
  }
  auto o = Fast();
  o.parallel = 1;
  int calls = 0;
  auto r = fetch::FetchAll(ts, o, [&](size_t, const std::string&) -> Expected<bool> {
    ++calls;
    return Fail("hash_mismatch", "test");
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "hash_mismatch");
  EXPECT_EQ(calls, 1);
}

TEST(Fetch, HttpsWithCaFileAndRefusedWithoutIt) {
  test::TempDir dir;
  auto cert = (dir.path() / "cert.pem").string(), key = (dir.path() / "key.pem").string();
  auto [rc, out] = test::Sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                            "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                            key + " -out " + cert);
  ASSERT_EQ(rc, 0) << out;
  test::BlockServer server(cert, key);
  auto data = Bytes(200000, 9);
  server.Put("b", data);
  ASSERT_EQ(server.url("/b").rfind("https://", 0), 0u);
  auto o = Fast();
  o.ca_file = cert;
  auto got = One(server.url("/b"), dir.path() / "part", data.size(), o);
  ASSERT_TRUE(got) << got.error().String();
  EXPECT_EQ(*got, Sha(data));

  // An untrusted server certificate is a permanent refusal, not something to retry.
  auto o2 = Fast();
  o2.ca_file = "/etc/ssl/certs/ca-certificates.crt";
  auto refused = One(server.url("/b"), dir.path() / "part2", data.size(), o2);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, "http") << refused.error().message;
}
