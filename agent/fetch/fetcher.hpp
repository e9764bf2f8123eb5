#pragma once
// Resumable, hashing HTTP(S)/file downloads into partial files (docs/architecture.md FETCHING). This is
// the only module that includes curl. It does not decide whether a digest is right: the
// caller's OnComplete does, and can ask for a block again from byte 0.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace gantry::fetch {

struct Options {
  int parallel = 4;
  std::optional<std::string> ca_file;  // PEM bundle for https; the system store when unset
  // A transfer fails with "network" after this many consecutive attempts that brought no byte.
  int max_attempts = 5;
  std::chrono::milliseconds backoff_first{250}, backoff_max{8000};
  // A transfer slower than low_speed_bytes/s for low_speed_time is dropped and retried.
  long low_speed_bytes = 1024;
  std::chrono::seconds low_speed_time{30};
  std::chrono::seconds connect_timeout{20};
  const std::atomic<bool>* cancel = nullptr;  // seen within ~100 ms
  // Bytes added to (or, when a transfer starts over from byte 0, removed from) partial files;
  // also the bytes already on disk when a partial is resumed. Called on worker threads.
  std::function<void(std::int64_t delta)> on_bytes;
};

struct Transfer {
  std::string url;
  std::filesystem::path partial;  // created or resumed; never grows beyond size
  std::uint64_t size;
  // size is only a limit (a chunk index): a shorter body is expected, not worth a warning.
  bool size_is_limit = false;
};

// Called on a worker thread when transfer `index` has ended, with the SHA-256 of its partial
// file (which may be short if the server sent less than `size`). Returns true when the
// transfer is done, false to fetch it again from byte 0 (after removing the partial), or an
// error that stops every transfer.
using OnComplete = std::function<Expected<bool>(size_t index, const std::string& sha256)>;

// Runs the transfers, up to options.parallel at once; returns after all completed or at the
// first error. Error codes: "http" (a permanent refusal: 4xx, no such file, bad URL or TLS
// verification), "network" (transient failures outlasted max_attempts), "cancelled",
// "no_space", "io", or whatever OnComplete returned.
ExpectedVoid FetchAll(const std::vector<Transfer>& transfers, const Options& options,
                      const OnComplete& on_complete);

}  // namespace gantry::fetch
