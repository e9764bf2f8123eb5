// gantryctl cache ls|verify|gc|fetch: the block cache of a data dir (docs/operator-guide.md).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cache/block_cache.hpp"
#include "cli/command.hpp"
#include "core/fs.hpp"
#include "core/hex.hpp"
#include "core/time.hpp"

namespace gantry::cli {
namespace {

std::atomic<bool> g_cancel{false};

void OnSignal(int) { g_cancel = true; }

[[noreturn]] void Die(int code, const std::string& message) {
  std::cerr << "error: " << message << "\n";
  throw Exit{code};
}

// gc and fetch write to the cache: they take the agent's lock so they never run beside a
// gantryd that owns the same data dir (verify and ls only read, and take no lock).
fs::Fd LockDataDir(const std::string& data_dir) {
  if (auto r = fs::MakeDirs(data_dir, 0700); !r) Die(kExitError, r.error().message);
  auto fd = fs::LockDataDir(data_dir);
  if (!fd && fd.error().code == "locked")
    Die(kExitError, data_dir + "/lock is locked: gantryd is running on this data dir; send it a gc "
                               "command over MQTT instead");
  if (!fd) Die(kExitError, fd.error().message);
  return std::move(*fd);
}

std::unique_ptr<cache::BlockCache> OpenCache(const std::string& data_dir, std::uint64_t quota) {
  auto c = cache::BlockCache::Open(data_dir, quota);
  if (!c) Die(kExitError, c.error().message);
  return std::move(*c);
}

int ExitFor(const Error& e) {
  return e.code == "bad_block" ? kExitUsage : kExitError;
}

std::string Mb(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

void RegisterCacheCommands(CLI::App& app) {
  auto* group = app.add_subcommand("cache", "Inspect, verify, collect or pre-seed the block cache");
  group->require_subcommand(1);
  group->footer("Example:\n  gantryctl cache verify --data-dir /var/lib/gantry");

  {
    auto* sub = group->add_subcommand("ls", "List cached blocks: id, size, last use, pinning revisions");
    sub->footer("Example:\n  gantryctl cache ls --data-dir /var/lib/gantry");
    auto dir = std::make_shared<std::string>();
    sub->add_option("--data-dir", *dir, "the agent's data dir")->required();
    sub->callback([=] {
      auto blocks = cache::BlockCache::ListDir(*dir);
      if (!blocks) Die(kExitError, blocks.error().message);
      std::uint64_t total = 0;
      std::printf("%-64s %12s %-20s %-16s %s\n", "BLOCK", "BYTES", "LAST USED", "PINNED BY",
                  "REUSED");
      for (auto& b : *blocks) {
        std::string pins;
        for (auto& r : b.pinned_by) pins += (pins.empty() ? "" : ",") + r;
        // REUSED: for a block assembled from chunks, the share of its bytes copied from
        // chunks already on the device (docs/chunked-blocks.md); "-" for one fetched whole.
        std::string reused = "-";
        if (b.chunked && b.fetched_bytes + b.reused_bytes > 0)
          reused = std::to_string(b.reused_bytes * 100 / (b.fetched_bytes + b.reused_bytes)) + "% (" +
                   std::to_string(b.reused_bytes) + " B)";
        std::printf("%-64s %12llu %-20s %-16s %s\n", b.id.c_str(),
                    static_cast<unsigned long long>(b.size), Rfc3339(b.last_used / 1000).c_str(),
                    pins.empty() ? "-" : pins.c_str(), reused.c_str());
        total += b.size;
      }
      std::printf("%zu blocks, %llu bytes\n", blocks->size(), static_cast<unsigned long long>(total));
      throw Exit{kExitOk};
    });
  }
  {
    auto* sub = group->add_subcommand(
        "verify", "Rehash every cached block and check the chunk table; exit 1 naming each "
                  "block whose bytes do not match its id and each wrong chunk row. Read-only, takes no lock, safe while gantryd runs");
    sub->footer("Exit: 0 every block matches, 1 a block does not (named on stdout), 3 cannot read.\n"
                "Example:\n  gantryctl cache verify --data-dir /var/lib/gantry");
    auto dir = std::make_shared<std::string>();
    sub->add_option("--data-dir", *dir, "the agent's data dir")->required();
    sub->callback([=] {
      auto bad = cache::BlockCache::VerifyDir(*dir);
      if (!bad) Die(kExitError, bad.error().message);
      for (auto& id : *bad) std::printf("MISMATCH %s\n", id.c_str());
      auto chunks = cache::BlockCache::VerifyChunksDir(*dir);
      if (!chunks) Die(kExitError, chunks.error().message);
      for (auto& p : *chunks) std::printf("CHUNKS %s\n", p.c_str());
      if (!bad->empty() || !chunks->empty()) {
        if (!bad->empty()) std::fprintf(stderr, "%zu block(s) do not match their id\n", bad->size());
        if (!chunks->empty())
          std::fprintf(stderr, "%zu problem(s) in the chunk table\n", chunks->size());
        throw Exit{kExitCheckFailed};
      }
      std::printf("all blocks match their ids; the chunk table is consistent\n");
      throw Exit{kExitOk};
    });
  }
  {
    auto* sub = group->add_subcommand(
        "gc", "Remove every unpinned block (pinned: the current, in-flight and rollback revisions)");
    sub->footer("Example:\n  gantryctl cache gc --data-dir /var/lib/gantry");
    auto dir = std::make_shared<std::string>();
    sub->add_option("--data-dir", *dir, "the agent's data dir")->required();
    sub->callback([=] {
      auto lock = LockDataDir(*dir);
      auto c = OpenCache(*dir, 0);
      auto freed = c->Collect(true);
      if (!freed) Die(kExitError, freed.error().message);
      auto stats = c->GetStats();
      if (!stats) Die(kExitError, stats.error().message);
      std::printf("freed %llu bytes; %lld blocks, %llu bytes remain\n",
                  static_cast<unsigned long long>(*freed), static_cast<long long>(stats->blocks),
                  static_cast<unsigned long long>(stats->bytes));
      throw Exit{kExitOk};
    });
  }
  {
    auto* sub = group->add_subcommand(
        "fetch", "Fetch blocks into the cache (verified, resumable), e.g. to pre-seed a device offline");
    sub->footer(
        "Exit: 0 every block is cached and verified, 2 bad arguments, 3 failed (the error code\n"
        "first: hash_mismatch, http, no_space, network, cancelled, io); partial downloads are\n"
        "kept and resumed by the next run.\n"
        "Example:\n  gantryctl cache fetch --data-dir /var/lib/gantry --base file:///media/usb/objects/ \\\n"
        "      3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b:1048576");
    auto dir = std::make_shared<std::string>();
    auto base = std::make_shared<std::string>();
    auto ca = std::make_shared<std::string>();
    auto pin = std::make_shared<std::string>();
    auto parallel = std::make_shared<int>(4);
    auto quota = std::make_shared<std::uint64_t>(0);
    auto specs = std::make_shared<std::vector<std::string>>();
    sub->add_option("--data-dir", *dir, "the agent's data dir")->required();
    sub->add_option("--base", *base, "objects base URL (http, https or file)")->required();
    sub->add_option("--ca-file", *ca, "CA bundle for https");
    sub->add_option("--parallel", *parallel, "transfers at once")->check(CLI::Range(1, 32))->capture_default_str();
    sub->add_option("--quota", *quota, "cache quota in bytes (0 = none)")->capture_default_str();
    sub->add_option("--pin", *pin, "pin the blocks for this revision so they are never collected");
    sub->add_option("blocks", *specs, "ID:SIZE of each block")->required();
    sub->callback([=] {
      cache::FetchRequest req;
      for (auto& s : *specs) {
        auto colon = s.find(':');
        std::uint64_t size = 0;
        bool ok = colon != std::string::npos && IsBlockId(s.substr(0, colon));
        if (ok) {
          try {
            size_t used = 0;
            size = std::stoull(s.substr(colon + 1), &used);
            ok = used == s.size() - colon - 1;
          } catch (const std::exception&) {
            ok = false;
          }
        }
        if (!ok) Die(kExitUsage, "'" + s + "' is not ID:SIZE (64 lowercase hex, ':', bytes)");
        req.blocks.push_back({s.substr(0, colon), size});
      }
      auto lock = LockDataDir(*dir);
      auto c = OpenCache(*dir, *quota);
      if (!pin->empty()) {
        std::vector<std::string> ids;
        for (auto& b : req.blocks) ids.push_back(b.id);
        if (auto r = c->Pin(*pin, ids); !r) Die(kExitError, r.error().message);
      }
      req.objects_base = *base;
      req.parallel = *parallel;
      if (!ca->empty()) req.ca_file = *ca;
      req.cancel = &g_cancel;
      req.on_progress = [](const cache::Progress& p) {
        std::printf("progress %llu/%llu bytes %d/%d objects %d%%\n",
                    static_cast<unsigned long long>(p.done_bytes),
                    static_cast<unsigned long long>(p.total_bytes), p.objects_done, p.objects,
                    p.total_bytes ? static_cast<int>(p.done_bytes * 100 / p.total_bytes) : 100);
        std::fflush(stdout);
      };
      struct sigaction sa {};
      sa.sa_handler = OnSignal;
      sigaction(SIGINT, &sa, nullptr);
      sigaction(SIGTERM, &sa, nullptr);
      auto r = c->Fetch(req);
      if (!r) Die(ExitFor(r.error()), r.error().code + ": " + r.error().message);
      std::uint64_t total = 0;
      for (auto& b : req.blocks) total += b.size;
      std::printf("fetched %zu blocks (%s), verified\n", req.blocks.size(), Mb(total).c_str());
      throw Exit{kExitOk};
    });
  }
}

CommandRegistration registration(RegisterCacheCommands);

}  // namespace
}  // namespace gantry::cli
