#include "pack/pack.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "chunk/index.hpp"
#include "core/fs.hpp"
#include "core/names.hpp"
#include "digest/sha256.hpp"
#include "manifest/json_text.hpp"
#include "manifest/lxc_config.hpp"
#include "manifest/revision.hpp"
#include "manifest/state.hpp"

namespace gantry::pack {
namespace {

namespace stdfs = std::filesystem;
using json = nlohmann::json;

constexpr char kRootVolume[] = "root.squashfs";
constexpr char kLxcConfig[] = "lxc.container.conf";
constexpr char kBusyboxMarker[] = ".busybox";
constexpr std::uint64_t kMaxJsonBytes = 1u << 20;
// Mount points LXC needs in a busybox rootfs; git cannot carry empty directories.
constexpr const char* kBusyboxDirs[] = {"dev", "proc", "sys", "tmp", "run", "var", "root", "etc"};

Unexpected BadSource(const stdfs::path& where, const std::string& message) {
  return Fail("bad_source", where.string() + ": " + message);
}

Unexpected Io(const stdfs::path& where, const std::error_code& ec) {
  return Fail("io", where.string() + ": " + ec.message());
}

// Entries of a directory, sorted by name, so every walk (and every error) is deterministic.
Expected<std::vector<stdfs::directory_entry>> List(const stdfs::path& dir) {
  std::error_code ec;
  std::vector<stdfs::directory_entry> out;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    out.push_back(*it);
  if (ec) return Io(dir, ec);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
  return out;
}

// Runs argv; returns its exit code (127: could not be started) and its combined output.
Expected<std::pair<int, std::string>> Run(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Fail("tool", std::string("pipe: ") + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return Fail("tool", std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string output;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) output.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return std::make_pair(code, output);
}

Expected<json> ReadJson(const stdfs::path& path) {
  auto text = fs::ReadFile(path, kMaxJsonBytes);
  if (!text) return BadSource(path, "unreadable: " + text.error().message);
  auto j = manifest::ParseJsonText(*text);
  if (!j) return BadSource(path, "not valid JSON: " + j.error().message);
  return j;
}

// Git stores only "executable or not": normalising to that makes an image depend on the
// content alone, not on the umask of whoever checked the tree out.
ExpectedVoid CopyTree(const stdfs::path& src, const stdfs::path& dst, const stdfs::path& shown) {
  auto entries = List(src);
  if (!entries) return Unexpected(entries.error());
  for (const auto& e : *entries) {
    auto name = e.path().filename();
    auto to = dst / name;
    std::error_code ec;
    auto st = e.symlink_status(ec);
    if (ec) return Io(shown / name, ec);
    if (stdfs::is_symlink(st)) {
      auto target = stdfs::read_symlink(e.path(), ec);
      if (!ec) stdfs::create_symlink(target, to, ec);
      if (ec) return Io(shown / name, ec);
    } else if (stdfs::is_directory(st)) {
      if (::mkdir(to.c_str(), 0755) != 0 || ::chmod(to.c_str(), 0755) != 0)
        return Fail("io", fs::ErrnoMessage("mkdir", to));
      if (auto r = CopyTree(e.path(), to, shown / name); !r) return r;
    } else if (stdfs::is_regular_file(st)) {
      if (::access(e.path().c_str(), R_OK) != 0)
        return BadSource(shown / name, std::string("unreadable: ") + std::strerror(errno));
      stdfs::copy_file(e.path(), to, ec);
      if (ec) return BadSource(shown / name, "unreadable: " + ec.message());
      bool exec = (st.permissions() & stdfs::perms::owner_exec) != stdfs::perms::none;
      if (::chmod(to.c_str(), exec ? 0755 : 0644) != 0) return Fail("io", fs::ErrnoMessage("chmod", to));
    } else {
      return BadSource(shown / name, "not a regular file, directory or symlink (devices, fifos "
                                     "and sockets cannot go into an image)");
    }
  }
  return {};
}

// A dynamically linked busybox would start on the host and fail in every container.
ExpectedVoid CheckStatic(const stdfs::path& busybox) {
  auto text = fs::ReadFile(busybox, 64u << 20);
  if (!text) return Fail("tool", "--busybox " + busybox.string() + ": " + text.error().message);
  const std::string& b = *text;
  if (b.size() < 64 || b.compare(0, 4, "\x7f" "ELF") != 0)
    return Fail("tool", "--busybox " + busybox.string() + " is not an ELF executable");
  if (b[4] != 2 || b[5] != 1) return {};  // not ELF64 little endian: trust the operator
  auto u = [&](size_t off, size_t n) {
    std::uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= std::uint64_t(static_cast<unsigned char>(b[off + i])) << (8 * i);
    return v;
  };
  std::uint64_t phoff = u(0x20, 8), phentsize = u(0x36, 2), phnum = u(0x38, 2);
  for (std::uint64_t i = 0; i < phnum; ++i) {
    std::uint64_t at = phoff + i * phentsize;
    if (at + 4 > b.size()) break;
    if (u(at, 4) == 3)  // PT_INTERP
      return Fail("tool", "--busybox " + busybox.string() +
                              " is dynamically linked; containers need a static one "
                              "(apt-get install busybox-static)");
  }
  return {};
}

// busybox at /bin/busybox plus a symlink per applet at the path busybox itself names, unless
// the source tree already has something there (the tree wins).
ExpectedVoid InstallBusybox(const stdfs::path& busybox, const stdfs::path& root) {
  if (auto r = CheckStatic(busybox); !r) return r;
  auto list = Run({busybox.string(), "--list-full"});
  if (!list) return Unexpected(list.error());
  if (list->first != 0)
    return Fail("tool", busybox.string() + " --list-full failed (exit " +
                            std::to_string(list->first) + "): " + list->second);
  std::error_code ec;
  for (const char* d : {"bin", "sbin", "usr", "usr/bin", "usr/sbin"})
    if (!stdfs::exists(root / d, ec) && ::mkdir((root / d).c_str(), 0755) != 0)
      return Fail("io", fs::ErrnoMessage("mkdir", root / d));
  auto target = root / "bin" / "busybox";
  if (!stdfs::exists(target, ec)) {
    stdfs::copy_file(busybox, target, ec);
    if (ec) return Fail("tool", "--busybox " + busybox.string() + ": " + ec.message());
    if (::chmod(target.c_str(), 0755) != 0) return Fail("io", fs::ErrnoMessage("chmod", target));
  }
  size_t start = 0;
  const std::string& out = list->second;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string applet = out.substr(start, end - start);
    start = end + 1;
    auto slash = applet.rfind('/');
    if (slash == std::string::npos || !IsSafeKey(applet)) continue;  // e.g. "linuxrc"
    auto link = root / applet;
    if (stdfs::exists(stdfs::symlink_status(link, ec))) continue;
    std::string dir = applet.substr(0, slash);
    std::string up;
    for (char c : dir)
      if (c == '/') up += "../";
    std::string to = dir == "bin" ? "busybox" : "../" + up + "bin/busybox";
    stdfs::create_directories(link.parent_path(), ec);
    if (!ec) stdfs::create_symlink(to, link, ec);
    if (ec) return Io(link, ec);
  }
  for (const char* d : kBusyboxDirs)
    if (!stdfs::exists(root / d, ec) && ::mkdir((root / d).c_str(), 0755) != 0)
      return Fail("io", fs::ErrnoMessage("mkdir", root / d));
  if (::chmod((root / "tmp").c_str(), 01777) != 0)
    return Fail("io", fs::ErrnoMessage("chmod", root / "tmp"));
  return {};
}

// Owners, times and xattrs fixed, entries in mksquashfs's sorted order, the reproducible
// layout asked for explicitly: the image depends on the tree's content only, so an unchanged
// tree gives identical bytes and a small change leaves most chunks of the image as they were
// (docs/chunked-blocks.md).
ExpectedVoid MakeSquashfs(const std::string& mksquashfs, const stdfs::path& root,
                          const stdfs::path& image) {
  auto r = Run({mksquashfs, root.string(), image.string(), "-all-root", "-noappend", "-mkfs-time",
                "0", "-all-time", "0", "-no-xattrs", "-reproducible", "-no-progress", "-quiet"});
  if (!r) return Unexpected(r.error());
  if (r->first == 127)
    return Fail("tool", mksquashfs + " not found (apt-get install squashfs-tools)");
  if (r->first != 0)
    return Fail("tool", mksquashfs + " failed (exit " + std::to_string(r->first) + "): " + r->second);
  return {};
}

// Removes the scratch directory whatever happens.
struct Scratch {
  stdfs::path path;
  ~Scratch() {
    std::error_code ec;
    if (!path.empty()) stdfs::remove_all(path, ec);
  }
};

class Packer {
 public:
  explicit Packer(const Options& o) : o_(o) {}

  Expected<Result> Run() {
    std::error_code ec;
    if (!stdfs::is_directory(o_.source, ec))
      return BadSource(o_.source, "not a directory (the source tree of a revision)");
    if (auto r = fs::MakeDirs(o_.out / "objects"); !r) return Unexpected(r.error());
    std::string tmpl = (o_.out / ".pack-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) return Fail("io", fs::ErrnoMessage("mkdtemp", tmpl));
    scratch_.path = tmpl;

    state_ = {{"#spec", manifest::kStateSpec}};
    auto entries = List(o_.source);
    if (!entries) return Unexpected(entries.error());
    std::vector<stdfs::path> containers;
    const stdfs::directory_entry *config_dir = nullptr, *sensors_dir = nullptr;
    for (const auto& e : *entries) {
      std::string name = e.path().filename().string();
      bool dir = e.is_directory(ec);
      if (dir && name == "_config") config_dir = &e;
      else if (dir && name == "_sensors") sensors_dir = &e;
      else if (!dir && (name == "device.json" || name == "groups.json")) {
        auto j = ReadJson(e.path());
        if (!j) return Unexpected(j.error());
        state_[name] = std::move(*j);
      } else if (dir && name == "bsp") {
        return BadSource(e.path(), "bsp/ parts are not packed (Gantry does not flash them)");
      } else if (dir) {
        if (!IsSafeName(name))
          return BadSource(e.path(), "container directory name \"" + name +
                                         "\" must match ^[a-z0-9][a-z0-9._-]{0,62}$");
        containers.push_back(e.path());
      } else {
        return BadSource(e.path(), "unexpected entry (a source tree holds container directories, "
                                   "_config/, _sensors/, device.json and groups.json)");
      }
    }
    if (containers.empty() && sensors_dir == nullptr)
      return BadSource(o_.source, "no container directories and no _sensors/: nothing to pack");
    for (const auto& c : containers)
      if (auto r = PackContainer(c); !r) return Unexpected(r.error());
    if (config_dir != nullptr)
      if (auto r = PackConfig(config_dir->path(), containers); !r) return Unexpected(r.error());
    if (sensors_dir != nullptr)
      if (auto r = PackSensors(sensors_dir->path()); !r) return Unexpected(r.error());
    return Finish();
  }

 private:
  // Moves (or copies) a file into objects/ under its hash; returns the block id.
  Expected<std::string> AddBlock(const stdfs::path& file, bool move) {
    auto id = digest::Sha256File(file);
    if (!id) return BadSource(file, "unreadable: " + id.error().message);
    std::error_code ec;
    auto size = stdfs::file_size(file, ec);
    if (ec) return Io(file, ec);
    auto dest = o_.out / "objects" / *id;
    auto tmp = scratch_.path / ("block-" + *id);
    if (move) stdfs::rename(file, tmp, ec);
    else stdfs::copy_file(file, tmp, stdfs::copy_options::overwrite_existing, ec);
    if (ec) return Io(file, ec);
    if (::chmod(tmp.c_str(), 0644) != 0) return Fail("io", fs::ErrnoMessage("chmod", tmp));
    stdfs::rename(tmp, dest, ec);
    if (ec) return Io(dest, ec);
    result_.objects[*id] = size;
    if (size >= chunk::kIndexThreshold)
      if (auto r = WriteChunks(dest, *id); !r) return Unexpected(r.error());
    return *id;
  }

  // The chunk index objects/<id>.chunks and the chunks as objects/chunks/<sha>, for agents
  // that assemble blocks from what they hold (docs/chunked-blocks.md). Chunks already there
  // (from another block or an earlier pack into the same directory) are left alone.
  ExpectedVoid WriteChunks(const stdfs::path& block, const std::string& id) {
    auto chunks = chunk::ChunkFile(block);
    if (!chunks) return Unexpected(chunks.error());
    auto dir = o_.out / "objects" / "chunks";
    if (auto r = fs::MakeDirs(dir); !r) return r;
    auto bytes = fs::ReadFile(block, std::uint64_t{1} << 40);
    if (!bytes) return Unexpected(bytes.error());
    std::uint64_t offset = 0;
    std::error_code ec;
    for (const auto& c : *chunks) {
      auto path = dir / c.sha;
      if (!stdfs::exists(path, ec))
        if (auto r = fs::WriteFileAtomic(path, std::string_view(*bytes).substr(offset, c.size)); !r)
          return r;
      offset += c.size;
    }
    return fs::WriteFileAtomic(o_.out / "objects" / (id + ".chunks"), chunk::WriteIndex(*chunks));
  }

  ExpectedVoid SetBlock(const std::string& key, const stdfs::path& file, bool move) {
    auto id = AddBlock(file, move);
    if (!id) return Unexpected(id.error());
    state_[key] = *id;
    result_.blocks[key] = *id;
    return {};
  }

  ExpectedVoid PackContainer(const stdfs::path& dir) {
    const std::string c = dir.filename().string();
    std::error_code ec;
    auto entries = List(dir);
    if (!entries) return Unexpected(entries.error());
    for (const auto& e : *entries) {
      auto n = e.path().filename().string();
      if (n != "rootfs" && n != "run.json" && n != kLxcConfig)
        return BadSource(e.path(), std::string("unexpected entry (a container directory holds "
                                               "rootfs/, run.json and ") + kLxcConfig + ")");
    }
    if (!stdfs::is_directory(dir / "rootfs", ec))
      return BadSource(dir / "rootfs", "missing (the container's root file system, a directory)");
    if (!stdfs::is_regular_file(dir / "run.json", ec)) return BadSource(dir / "run.json", "missing");
    if (!stdfs::is_regular_file(dir / kLxcConfig, ec)) return BadSource(dir / kLxcConfig, "missing");

    auto run = ReadJson(dir / "run.json");
    if (!run) return Unexpected(run.error());
    if (!run->is_object()) return BadSource(dir / "run.json", "must be a JSON object");
    for (const char* owned : {"root-volume", "config"})
      if (run->contains(owned))
        return BadSource(dir / "run.json", std::string("\"") + owned +
                                               "\" is filled in by pack; remove it");
    if (auto n = run->find("name"); n != run->end() && *n != c)
      return BadSource(dir / "run.json", "\"name\" must equal the directory name \"" + c + "\"");
    if (!run->contains("#spec")) (*run)["#spec"] = manifest::kRunSpec;
    if (!run->contains("name")) (*run)["name"] = c;
    if (!run->contains("type")) (*run)["type"] = "lxc";
    (*run)["root-volume"] = kRootVolume;
    (*run)["config"] = kLxcConfig;

    auto lxc = fs::ReadFile(dir / kLxcConfig, kMaxJsonBytes);
    if (!lxc) return BadSource(dir / kLxcConfig, "unreadable: " + lxc.error().message);
    if (auto r = manifest::CheckLxcConfig(*lxc, {}); !r) {
      if (r.error().code != "lxc_key") return BadSource(dir / kLxcConfig, r.error().message);
      result_.warnings.push_back(c + "/" + kLxcConfig + ": " + r.error().message +
                                 " (devices refuse it unless runtime.allow_lxc_keys lists it)");
    }

    auto root = scratch_.path / ("rootfs-" + c);
    if (::mkdir(root.c_str(), 0755) != 0 || ::chmod(root.c_str(), 0755) != 0)
      return Fail("io", fs::ErrnoMessage("mkdir", root));
    if (auto r = CopyTree(dir / "rootfs", root, dir / "rootfs"); !r) return r;
    if (stdfs::exists(stdfs::symlink_status(root / kBusyboxMarker, ec))) {
      stdfs::remove(root / kBusyboxMarker, ec);
      if (auto r = InstallBusybox(o_.busybox, root); !r) return r;
    }
    // Bind-mount targets of the container's storage, so the image needs no placeholder files.
    if (auto storage = run->find("storage"); storage != run->end() && storage->is_object())
      for (const auto& [path, spec] : storage->items()) {
        if (path == "lxc-overlay" || path == "/" || !IsSafeKey(path)) continue;
        if (!stdfs::exists(stdfs::symlink_status(root / path, ec))) {
          stdfs::create_directories(root / path, ec);
          if (ec) return Io(root / path, ec);
          for (auto p = stdfs::path(path); !p.empty(); p = p.parent_path())
            ::chmod((root / p).c_str(), 0755);
        }
      }
    auto image = scratch_.path / ("image-" + c);
    if (auto r = MakeSquashfs(o_.mksquashfs, root, image); !r)
      return Unexpected(r.error().WithContext(c + "/rootfs"));
    stdfs::remove_all(root, ec);

    state_[c + "/run.json"] = std::move(*run);
    if (auto r = SetBlock(c + "/" + kLxcConfig, dir / kLxcConfig, false); !r) return r;
    return SetBlock(c + "/" + kRootVolume, image, true);
  }

  ExpectedVoid PackConfigFiles(const std::string& c, const stdfs::path& dir, const std::string& rel) {
    auto entries = List(dir);
    if (!entries) return Unexpected(entries.error());
    std::error_code ec;
    for (const auto& e : *entries) {
      std::string r = rel.empty() ? e.path().filename().string() : rel + "/" + e.path().filename().string();
      if (!IsSafeKey(r)) return BadSource(e.path(), "not a safe relative path");
      if (e.is_directory(ec)) {
        if (auto x = PackConfigFiles(c, e.path(), r); !x) return x;
      } else if (e.is_regular_file(ec)) {
        if (auto x = SetBlock("_config/" + c + "/" + r, e.path(), false); !x) return x;
      } else {
        return BadSource(e.path(), "not a regular file or directory");
      }
    }
    return {};
  }

  ExpectedVoid PackConfig(const stdfs::path& dir, const std::vector<stdfs::path>& containers) {
    auto entries = List(dir);
    if (!entries) return Unexpected(entries.error());
    std::error_code ec;
    for (const auto& e : *entries) {
      std::string c = e.path().filename().string();
      if (!e.is_directory(ec))
        return BadSource(e.path(), "_config/ holds one directory per container");
      bool known = std::any_of(containers.begin(), containers.end(),
                               [&](const auto& p) { return p.filename() == c; });
      if (!known) return BadSource(e.path(), "no container directory \"" + c + "\" in the tree");
      if (auto r = PackConfigFiles(c, e.path(), ""); !r) return r;
    }
    return {};
  }

  ExpectedVoid PackSensors(const stdfs::path& dir) {
    auto entries = List(dir);
    if (!entries) return Unexpected(entries.error());
    std::error_code ec;
    for (const auto& e : *entries) {
      std::string model = e.path().filename().string();
      if (!e.is_directory(ec)) return BadSource(e.path(), "_sensors/ holds one directory per model");
      if (!IsSafeName(model))
        return BadSource(e.path(), "sensor model \"" + model + "\" must match ^[a-z0-9][a-z0-9._-]{0,62}$");
      auto files = List(e.path());
      if (!files) return Unexpected(files.error());
      for (const auto& f : *files) {
        auto n = f.path().filename().string();
        if (n != "firmware.bin" && n != "sensor.json")
          return BadSource(f.path(), "unexpected entry (a model directory holds firmware.bin and sensor.json)");
      }
      if (!stdfs::is_regular_file(e.path() / "firmware.bin", ec))
        return BadSource(e.path() / "firmware.bin", "missing");
      if (!stdfs::is_regular_file(e.path() / "sensor.json", ec))
        return BadSource(e.path() / "sensor.json", "missing");
      auto meta = ReadJson(e.path() / "sensor.json");
      if (!meta) return Unexpected(meta.error());
      state_["_sensors/" + model + "/sensor.json"] = std::move(*meta);
      if (auto r = SetBlock("_sensors/" + model + "/firmware.bin", e.path() / "firmware.bin", false); !r)
        return r;
    }
    return {};
  }

  Expected<Result> Finish() {
    auto st = manifest::ParseState(state_);
    if (!st) return Fail("bad_source", "the state built from " + o_.source.string() +
                                           " does not parse: " + st.error().String());
    for (const auto& w : st->warnings) result_.warnings.push_back("state: " + w);
    result_.state = state_;
    if (auto w = fs::WriteFileAtomic(o_.out / "state.json", state_.dump(2) + "\n"); !w)
      return Unexpected(w.error());
    if (o_.targets.empty()) return std::move(result_);

    json objects = json::object();
    for (const auto& [id, size] : result_.objects) objects[id] = {{"size", size}};
    json doc = {{"rev", o_.rev}, {"seq", o_.seq}, {"targets", o_.targets},
                {"objects", objects}, {"state", state_}};
    if (o_.expires) doc["expires"] = *o_.expires;
    auto rev = manifest::ParseRevisionJson(doc);
    if (!rev) return Fail("bad_option", "the revision document would not parse: " + rev.error().String());
    if (auto c = manifest::CheckRevision(*rev); !c) return Unexpected(c.error());
    if (auto w = fs::WriteFileAtomic(o_.out / "revision.json", doc.dump(2) + "\n"); !w)
      return Unexpected(w.error());
    result_.revision = std::move(doc);
    return std::move(result_);
  }

  const Options& o_;
  Scratch scratch_;
  json state_;
  Result result_;
};

}  // namespace

Expected<Result> Pack(const Options& options) {
  Options o = options;
  if (o.rev.empty()) o.rev = stdfs::absolute(o.source).lexically_normal().filename().string();
  if (o.rev.empty()) o.rev = stdfs::absolute(o.source).lexically_normal().parent_path().filename().string();
  if (!o.targets.empty() && !IsSafeName(o.rev))
    return Fail("bad_option", "rev \"" + o.rev + "\" must match ^[a-z0-9][a-z0-9._-]{0,62}$ (give --rev)");
  if (o.seq < 1) return Fail("bad_option", "seq must be >= 1");
  return Packer(o).Run();
}

}  // namespace gantry::pack
