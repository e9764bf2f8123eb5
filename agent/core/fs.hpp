#pragma once
// File system helpers with the durability the cache and the state machine rely on.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace gantry::fs {

namespace stdfs = std::filesystem;

Expected<std::string> ReadFile(const stdfs::path& path, std::uint64_t max_bytes = 64u << 20);
// Writes to path.tmp, fsyncs, renames over path, fsyncs the directory.
ExpectedVoid WriteFileAtomic(const stdfs::path& path, std::string_view data, int mode = 0644);
ExpectedVoid FsyncPath(const stdfs::path& path);  // a file or a directory
ExpectedVoid MakeDirs(const stdfs::path& path, int mode = 0755);
// Bytes available to an unprivileged writer on the file system holding path.
Expected<std::uint64_t> AvailableBytes(const stdfs::path& path);

// RAII file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.Release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int Release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
};

std::string ErrnoMessage(std::string_view what, const stdfs::path& path);

// The data dir's lock (<data_dir>/lock, flock'd): one gantryd per data dir, and the cache's
// writers in gantryctl never beside it (docs/operator-guide.md). Held while the Fd lives.
// Errors: "io" (cannot open), "locked" (another process holds it).
Expected<Fd> LockDataDir(const stdfs::path& data_dir);

}  // namespace gantry::fs
