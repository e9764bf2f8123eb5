#include "core/fs.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gantry::fs {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.Release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

std::string ErrnoMessage(std::string_view what, const stdfs::path& path) {
  return std::string(what) + " " + path.string() + ": " + std::strerror(errno);
}

Expected<Fd> LockDataDir(const stdfs::path& data_dir) {
  auto path = data_dir / "lock";
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return Fail("io", ErrnoMessage("cannot open", path));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return Fail("locked", "another gantryd holds " + path.string());
  return fd;
}

Expected<std::string> ReadFile(const stdfs::path& path, std::uint64_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail("io", ErrnoMessage("cannot open", path));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail("io", ErrnoMessage("cannot read", path));
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::uint64_t>(n) > max_bytes)
      return Fail("too_large", path.string() + " is larger than " + std::to_string(max_bytes) +
                                   " bytes");
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

ExpectedVoid FsyncPath(const stdfs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail("io", ErrnoMessage("cannot open", path));
  if (::fsync(fd.get()) != 0) return Fail("io", ErrnoMessage("cannot fsync", path));
  return {};
}

ExpectedVoid WriteFileAtomic(const stdfs::path& path, std::string_view data, int mode) {
  auto tmp = path;
  tmp += ".tmp";
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) return Fail("io", ErrnoMessage("cannot create", tmp));
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fail(errno == ENOSPC ? "no_space" : "io", ErrnoMessage("cannot write", tmp));
      }
      off += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return Fail("io", ErrnoMessage("cannot fsync", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Fail("io", ErrnoMessage("cannot rename into", path));
  auto dir = path.parent_path();
  return FsyncPath(dir.empty() ? stdfs::path(".") : dir);
}

ExpectedVoid MakeDirs(const stdfs::path& path, int mode) {
  std::error_code ec;
  stdfs::create_directories(path, ec);
  if (ec) return Fail("io", "cannot create " + path.string() + ": " + ec.message());
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
  return {};
}

Expected<std::uint64_t> AvailableBytes(const stdfs::path& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return Fail("io", ErrnoMessage("cannot statvfs", path));
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

}  // namespace gantry::fs
