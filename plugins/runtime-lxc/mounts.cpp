#include "mounts.hpp"

#include <fcntl.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>

namespace gantry::lxc {

namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool Below(const std::string& mount_point, const std::string& dir) {
  return mount_point == dir || (mount_point.size() > dir.size() &&
                                mount_point.compare(0, dir.size(), dir) == 0 &&
                                mount_point[dir.size()] == '/');
}

int OpenAt2(int dirfd, const std::string& path, uint64_t flags, uint64_t resolve) {
  open_how how{};
  how.flags = flags;
  how.resolve = resolve;
  return static_cast<int>(syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
}

constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

struct Loop {
  fs::Fd fd;
  std::string device;
};

Expected<Loop> AttachLoop(const stdfs::path& image) {
  fs::Fd backing(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!backing) return Fail("io", fs::ErrnoMessage("cannot open image", image));
  fs::Fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return Fail("loop", Errno("cannot open /dev/loop-control"));
  // Another process can take the device between GET_FREE and CONFIGURE: retry on EBUSY.
  for (int attempt = 0; attempt < 20; ++attempt) {
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return Fail("loop", Errno("no free loop device"));
    std::string dev = "/dev/loop" + std::to_string(n);
    fs::Fd loop(::open(dev.c_str(), O_RDONLY | O_CLOEXEC));
    if (!loop && errno == ENOENT) {
      if (::mknod(dev.c_str(), S_IFBLK | 0600, makedev(7, n)) != 0 && errno != EEXIST)
        return Fail("loop", Errno("cannot create " + dev));
      loop = fs::Fd(::open(dev.c_str(), O_RDONLY | O_CLOEXEC));
    }
    if (!loop) return Fail("loop", Errno("cannot open " + dev));
    loop_config config{};
    config.fd = static_cast<uint32_t>(backing.get());
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), image.c_str(),
                 LO_NAME_SIZE - 1);
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) == 0) return Loop{std::move(loop), dev};
    if (errno != EBUSY) return Fail("loop", Errno("cannot attach " + image.string() + " to " + dev));
  }
  return Fail("loop", "no loop device stayed free for " + image.string());
}

}  // namespace

Expected<std::vector<std::string>> MountPoints() {
  auto text = fs::ReadFile("/proc/self/mountinfo");
  if (!text) return Unexpected(text.error());
  std::vector<std::string> out;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    if (fields >> id >> parent >> devno >> root >> mount_point) out.push_back(Unescape(mount_point));
  }
  return out;
}

Expected<bool> IsMountPoint(const stdfs::path& path) {
  auto mounts = MountPoints();
  if (!mounts) return Unexpected(mounts.error());
  return std::find(mounts->begin(), mounts->end(), path.string()) != mounts->end();
}

ExpectedVoid MountSquashfs(const stdfs::path& image, const stdfs::path& target) {
  auto loop = AttachLoop(image);
  if (!loop) return Unexpected(loop.error());
  // The mount holds the device open; closing our fd afterwards lets autoclear detach it at
  // unmount. On failure the fd closes here and autoclear detaches it at once.
  if (::mount(loop->device.c_str(), target.c_str(), "squashfs", MS_RDONLY, nullptr) != 0)
    return Fail("mount", Errno("cannot mount squashfs " + image.string() + " at " +
                               target.string()));
  return {};
}

ExpectedVoid MountOverlay(const stdfs::path& lower, const stdfs::path& upper,
                          const stdfs::path& work, const stdfs::path& target) {
  std::string options = "lowerdir=" + lower.string() + ",upperdir=" + upper.string() +
                        ",workdir=" + work.string();
  if (::mount("overlay", target.c_str(), "overlay", 0, options.c_str()) != 0)
    return Fail("mount", Errno("cannot mount overlay at " + target.string()));
  return {};
}

Expected<fs::Fd> OpenDirInRoot(const stdfs::path& root, const std::string& rel) {
  fs::Fd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return Fail("io", fs::ErrnoMessage("cannot open", root));
  fs::Fd dir(::fcntl(root_fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!dir) return Fail("io", Errno("cannot duplicate a descriptor"));
  stdfs::path so_far;
  for (auto& part : stdfs::path(rel).relative_path()) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return Fail("bad_path", "path " + rel + " contains ..");
    so_far /= part;
    // mkdirat does not follow a final symlink; the open below resolves any symlink as if
    // root were "/", so the image cannot point us outside it.
    if (::mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST)
      return Fail("io", Errno("cannot create " + so_far.string() + " in " + root.string()));
    fs::Fd next(OpenAt2(root_fd.get(), so_far.string(), O_PATH | O_DIRECTORY | O_CLOEXEC, kInRoot));
    if (!next) return Fail("io", Errno("cannot open " + so_far.string() + " in " + root.string()));
    dir = std::move(next);
  }
  return dir;
}

ExpectedVoid BindInRoot(const stdfs::path& source, const stdfs::path& root, const std::string& rel) {
  auto target = OpenDirInRoot(root, rel);
  if (!target) return Unexpected(target.error());
  if (::mount(source.c_str(), FdPath(target->get()).c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Fail("mount", Errno("cannot bind " + source.string() + " to " + rel));
  return {};
}

ExpectedVoid CopyInRoot(const stdfs::path& source, const stdfs::path& root, const std::string& rel) {
  stdfs::path p(rel);
  if (!p.has_filename()) return Fail("bad_path", "config file path " + rel + " names no file");
  auto parent = OpenDirInRoot(root, p.relative_path().parent_path().string());
  if (!parent) return Unexpected(parent.error());
  auto data = fs::ReadFile(source);
  if (!data) return Unexpected(data.error());
  // O_PATH fds cannot be used with openat for creation; reopen the directory for real.
  fs::Fd dir(::open(FdPath(parent->get()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Fail("io", Errno("cannot open the directory of " + rel));
  ::unlinkat(dir.get(), p.filename().c_str(), 0);
  fs::Fd out(::openat(dir.get(), p.filename().c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!out) return Fail("io", Errno("cannot create " + rel + " in the container"));
  size_t off = 0;
  while (off < data->size()) {
    ssize_t n = ::write(out.get(), data->data() + off, data->size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail("io", Errno("cannot write " + rel + " in the container"));
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

ExpectedVoid UnmountBelow(const stdfs::path& dir) {
  // A mount can be stacked several times on one point: repeat until none is left.
  for (int round = 0; round < 64; ++round) {
    auto mounts = MountPoints();
    if (!mounts) return Unexpected(mounts.error());
    std::vector<std::string> below;
    for (auto& m : *mounts)
      if (Below(m, dir.string())) below.push_back(m);
    if (below.empty()) return {};
    for (auto it = below.rbegin(); it != below.rend(); ++it) {
      int rc = -1;
      // A container that just stopped may hold a mount busy for a moment.
      for (int attempt = 0; attempt < 50; ++attempt) {
        rc = ::umount2(it->c_str(), UMOUNT_NOFOLLOW);
        if (rc == 0 || errno == EINVAL || errno == ENOENT || errno != EBUSY) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (rc != 0 && errno != EINVAL && errno != ENOENT)
        return Fail("mount", Errno("cannot unmount " + *it));
    }
  }
  return Fail("mount", "mounts below " + dir.string() + " keep reappearing");
}

ExpectedVoid ClearDir(const stdfs::path& dir) {
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) return Fail("io", "cannot create " + dir.string() + ": " + ec.message());
  auto mounts = MountPoints();
  if (!mounts) return Unexpected(mounts.error());
  for (auto& m : *mounts)
    if (Below(m, dir.string()) && m != dir.string())
      return Fail("busy", "cannot clear " + dir.string() + ": " + m + " is mounted inside");
  for (auto& entry : stdfs::directory_iterator(dir, ec)) {
    stdfs::remove_all(entry.path(), ec);
    if (ec) return Fail("io", "cannot clear " + entry.path().string() + ": " + ec.message());
  }
  if (ec) return Fail("io", "cannot list " + dir.string() + ": " + ec.message());
  return {};
}

}  // namespace gantry::lxc
