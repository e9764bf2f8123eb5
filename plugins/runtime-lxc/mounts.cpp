#include "mounts.hpp"

#include <fcntl.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/xattr.h>
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

namespace {

bool WriteProcFile(const std::string& path, const std::string& text) {
  fs::Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

// A user namespace with range's mapping, as an open /proc/<pid>/ns/user descriptor: a child
// unshares, the parent writes its maps, keeps the namespace open and lets the child go. The
// helper is single-threaded, so fork is safe here.
Expected<fs::Fd> UserNamespace(const IdRange& range) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return Fail("idmap", Errno("pipe"));
  fs::Fd rd(ready[0]), wr(ready[1]);
  pid_t pid = ::fork();
  if (pid < 0) return Fail("idmap", Errno("fork"));
  if (pid == 0) {
    char c = ::unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
    (void)!::write(wr.get(), &c, 1);
    ::pause();  // killed by the parent once the namespace is open
    ::_exit(0);
  }
  wr = fs::Fd();
  char c = 'n';
  (void)!::read(rd.get(), &c, 1);
  auto finish = [&](Expected<fs::Fd> r) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return r;
  };
  if (c != 'y') return finish(Fail("idmap", "cannot create a user namespace"));
  std::string base = "/proc/" + std::to_string(pid) + "/";
  std::string map = std::to_string(range.inside) + " " + std::to_string(range.outside) + " " +
                    std::to_string(range.count) + "\n";
  for (auto [file, text] : {std::pair<const char*, std::string>{"uid_map", map}, {"setgroups", "deny"}, {"gid_map", map}}) {
    if (!WriteProcFile(base + file, text)) return finish(Fail("idmap", Errno("cannot write " + base + file)));
  }
  fs::Fd ns(::open((base + "ns/user").c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return finish(Fail("idmap", Errno("cannot open " + base + "ns/user")));
  return finish(std::move(ns));
}

}  // namespace

Expected<IdRange> ParseIdRange(const std::string& text) {
  std::istringstream in(text);
  long long inside = -1, outside = -1, count = -1;
  std::string rest;
  if (!(in >> inside >> outside >> count) || (in >> rest) || inside < 0 || outside <= 0 ||
      count <= 0 || inside + count > 4294967295LL || outside + count > 4294967295LL)
    return Fail("bad_config", "\"" + text + "\" is not \"<container id> <host id> <count>\" with a host id above 0");
  return IdRange{static_cast<unsigned>(inside), static_cast<unsigned>(outside), static_cast<unsigned>(count)};
}

ExpectedVoid GrantSearch(const stdfs::path& dir, unsigned uid) {
  for (stdfs::path p = dir; !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return Fail("io", fs::ErrnoMessage("cannot stat", p));
    if ((st.st_mode & S_IXOTH) == 0) {
      unsigned char existing[1024];
      ssize_t n = ::getxattr(p.c_str(), "system.posix_acl_access", existing, sizeof existing);
      if (n >= 0 || errno != ENODATA) {
        // An ACL already there: fine if it grants uid search (ours, from an earlier prepare).
        bool granted = false;
        for (ssize_t off = 4; n > 0 && off + 8 <= n; off += 8) {
          uint16_t tag, perm;
          uint32_t id;
          std::memcpy(&tag, existing + off, 2);
          std::memcpy(&perm, existing + off + 2, 2);
          std::memcpy(&id, existing + off + 4, 4);
          granted = granted || (tag == 0x02 && id == uid && (perm & 1));
        }
        if (!granted)
          return Fail("idmap", p.string() + " has an ACL without search (x) for uid " +
                                   std::to_string(uid) + ", which unprivileged containers need");
      }
      {
        // Written (again) in any case: a chmod since (gantryd's 0700 on its data dir) masks
        // the entry out, which the mask entry below restores.
        // posix_acl_xattr: version 2, then {tag, perm, id} entries sorted by tag.
        struct Entry {
          uint16_t tag, perm;
          uint32_t id;
        };
        struct {
          uint32_t version = 2;
          Entry e[5];
        } acl;
        unsigned m = st.st_mode;
        acl.e[0] = {0x01, static_cast<uint16_t>((m >> 6) & 7), 0xffffffffu};  // owner
        acl.e[1] = {0x02, 1, uid};                                            // uid: search
        acl.e[2] = {0x04, static_cast<uint16_t>((m >> 3) & 7), 0xffffffffu};  // group
        acl.e[3] = {0x10, static_cast<uint16_t>(((m >> 3) & 7) | 1), 0xffffffffu};  // mask
        acl.e[4] = {0x20, static_cast<uint16_t>(m & 7), 0xffffffffu};         // others
        if (::setxattr(p.c_str(), "system.posix_acl_access", &acl, sizeof acl, 0) != 0)
          return Fail("idmap", Errno("cannot grant uid " + std::to_string(uid) + " search on " + p.string()));
      }
    }
    if (p == p.root_path()) break;
  }
  return {};
}

ExpectedVoid IdmapMount(const stdfs::path& target, const IdRange& range) {
  auto ns = UserNamespace(range);
  if (!ns) return Unexpected(ns.error());
  fs::Fd tree(static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, target.c_str(),
                                         OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
  if (!tree) return Fail("idmap", Errno("open_tree " + target.string()));
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(ns->get());
  if (::syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    return Fail("idmap", Errno("the kernel cannot idmap the mount at " + target.string()));
  // The clone keeps the file system (and its loop device) alive while the original goes.
  if (::umount2(target.c_str(), MNT_DETACH) != 0) return Fail("idmap", Errno("umount " + target.string()));
  if (::syscall(SYS_move_mount, tree.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    return Fail("idmap", Errno("move_mount to " + target.string()));
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

Expected<fs::Fd> OpenDirInRoot(const stdfs::path& root, const std::string& rel,
                               std::optional<unsigned> owner) {
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
    if (::mkdirat(dir.get(), part.c_str(), 0755) == 0) {
      if (owner && ::fchownat(dir.get(), part.c_str(), *owner, *owner, AT_SYMLINK_NOFOLLOW) != 0)
        return Fail("io", Errno("cannot hand " + so_far.string() + " in " + root.string() + " to the container"));
    } else if (errno != EEXIST) {
      return Fail("io", Errno("cannot create " + so_far.string() + " in " + root.string()));
    }
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

ExpectedVoid CopyInRoot(const stdfs::path& source, const stdfs::path& root, const std::string& rel,
                        std::optional<unsigned> owner) {
  stdfs::path p(rel);
  if (!p.has_filename()) return Fail("bad_path", "config file path " + rel + " names no file");
  auto parent = OpenDirInRoot(root, p.relative_path().parent_path().string(), owner);
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
  if (owner && ::fchown(out.get(), *owner, *owner) != 0)
    return Fail("io", Errno("cannot hand " + rel + " to the container"));
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

void WarmInRoot(const stdfs::path& root, const std::string& path) {
  fs::Fd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return;
  std::string next = path;
  // The init, then its interpreter (a script's "#!/bin/sh"), then that one's: at most three.
  for (int hop = 0; hop < 3 && !next.empty(); ++hop) {
    fs::Fd file(OpenAt2(root_fd.get(), next, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, kInRoot));
    struct stat st {};
    if (!file || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    char buf[64 * 1024];
    std::string head;
    ssize_t n;
    std::uint64_t total = 0;
    while (total < (256u << 20) && (n = ::read(file.get(), buf, sizeof buf)) > 0) {
      if (head.size() < 256) head.append(buf, std::min<size_t>(static_cast<size_t>(n), 256 - head.size()));
      total += static_cast<std::uint64_t>(n);
    }
    next.clear();
    if (head.rfind("#!", 0) == 0) {
      std::istringstream line(head.substr(2, head.find('\n') - 2));  // npos - 2 still means "to the end"
      line >> next;
    }
  }
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
