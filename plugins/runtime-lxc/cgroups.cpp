#include "cgroups.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>

#include "core/fs.hpp"

namespace gantry::lxc {

namespace stdfs = std::filesystem;

namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

std::string StripSlashes(std::string s) {
  while (!s.empty() && s.front() == '/') s.erase(0, 1);
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

Expected<std::vector<CgroupHierarchy>> OwnCgroups() {
  // /proc/self/cgroup: "4:memory:/a/b", "9:name=systemd:/", "0::/" (the v2 hierarchy).
  auto self = fs::ReadFile("/proc/self/cgroup");
  if (!self) return Unexpected(self.error());
  std::map<std::string, std::string> path_of;  // controllers ("" for v2) -> path
  for (auto& line : Split(*self, '\n')) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    path_of[line.substr(a + 1, b - a - 1)] = line.substr(b + 1);
  }
  auto mountinfo = fs::ReadFile("/proc/self/mountinfo");
  if (!mountinfo) return Unexpected(mountinfo.error());
  std::vector<CgroupHierarchy> out;
  for (auto& line : Split(*mountinfo, '\n')) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream pre(line.substr(0, dash)), post(line.substr(dash + 3));
    std::string id, parent, dev, root, mount_point, fstype, source, super;
    if (!(pre >> id >> parent >> dev >> root >> mount_point) || !(post >> fstype >> source >> super))
      continue;
    std::string path;
    if (fstype == "cgroup2") {
      if (!path_of.count("")) continue;
      path = path_of[""];
    } else if (fstype == "cgroup") {
      auto options = Split(super, ',');
      bool found = false;
      for (auto& [controllers, p] : path_of) {
        if (controllers.empty()) continue;
        auto names = Split(controllers, ',');
        if (std::all_of(names.begin(), names.end(), [&](const std::string& n) {
              return std::find(options.begin(), options.end(), n) != options.end();
            })) {
          path = p;
          found = true;
          break;
        }
      }
      if (!found) continue;
    } else {
      continue;
    }
    // A hierarchy mounted from a sub-cgroup (inside a container) shows paths below its root.
    std::string rel = StripSlashes(path), mroot = StripSlashes(root);
    if (!mroot.empty()) {
      if (rel.compare(0, mroot.size(), mroot) != 0) continue;
      rel = StripSlashes(rel.substr(mroot.size()));
    }
    out.push_back({mount_point, rel});
  }
  return out;
}

ExpectedVoid EnterCgroups(const std::vector<CgroupHierarchy>& hierarchies) {
  std::string pid = std::to_string(::getpid());
  std::string failed;
  for (auto& h : hierarchies) {
    auto procs = h.mount / h.own / "cgroup.procs";
    fs::Fd fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd || ::write(fd.get(), pid.data(), pid.size()) != static_cast<ssize_t>(pid.size()))
      failed += (failed.empty() ? "" : ", ") + procs.string() + " (" + std::strerror(errno) + ")";
  }
  if (!failed.empty()) return Fail("cgroup", "cannot move the runtime helper back into " + failed);
  return {};
}

int SweepMonitorCgroups(const std::vector<CgroupHierarchy>& hierarchies, const std::string& instance) {
  const std::string prefix = "lxc.monitor." + instance;
  int left = 0;
  for (auto& h : hierarchies) {
    std::vector<stdfs::path> bases = {h.mount};
    if (!h.own.empty()) bases.push_back(h.mount / h.own);
    for (auto& base : bases) {
      std::error_code ec;
      for (auto& e : stdfs::directory_iterator(base, ec)) {
        std::string n = e.path().filename();
        bool numbered = n.size() > prefix.size() + 1 && n.compare(0, prefix.size() + 1, prefix + "-") == 0 &&
                        std::all_of(n.begin() + static_cast<long>(prefix.size()) + 1, n.end(),
                                    [](char c) { return c >= '0' && c <= '9'; });
        if ((n == prefix || numbered) && ::rmdir(e.path().c_str()) != 0) ++left;
      }
    }
  }
  return left;
}

}  // namespace gantry::lxc
