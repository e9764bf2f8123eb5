// Symlinks a container controls cannot redirect the agent's writes onto the host: links in the
// image under a config overlay path (_config/<c>/<path>), and links the running container
// writes into its permanent storage that a later revision's nested volume ("data" and
// "data/sub") would pass through. All point at a host canary directory that must stay empty;
// nothing appears below the test's directory outside the data dir.
#include <gtest/gtest.h>

#include <set>

#include "system/swap/swap_fixture.hpp"
#include "tools/tally.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;
namespace stdfs = std::filesystem;

namespace {

std::set<std::string> TreeOutside(const stdfs::path& root, const stdfs::path& skip) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(root, ec); it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->path() == skip) it.disable_recursion_pending();
    out.insert(stdfs::relative(it->path(), root).string());
  }
  return out;
}

}  // namespace

TEST(SecuritySymlinks, ContainerLinksCannotRedirectWritesToTheHost) {
  Tally tally{"security-symlinks"};
  SwapFixture f;
  ASSERT_EQ(f.reason(), "") << "LXC cannot run here: " << f.reason();
  auto canary = f.a.dir() / "canary";
  stdfs::create_directories(canary);
  // The canary's path also exists inside the image, so every link resolves there too.
  std::string init = "ln -s " + canary.string() + " /data/sub 2>/dev/null; echo escaped > /data/sub/x; " + kServe;
  auto image_path = f.a.dir() / "links.squashfs";
  auto [rc, out] = Sh(ShQuote(GANTRY_MKROOTFS) + " " + ShQuote(image_path.string()) + " --init " + ShQuote(init) +
                      " --text " + ShQuote(canary.string() + "/inside=inside") + " --link " +
                      ShQuote("etc/app=" + canary.string()) + " --link " + ShQuote("etc/pw=" + canary.string() + "/pw"));
  ASSERT_EQ(rc, 0) << out;
  auto image = Slurp(image_path);
  f.a.StartAgent();
  ASSERT_TRUE(f.a.WaitOnline()) << f.a.AgentLog();
  auto outside_before = TreeOutside(f.a.dir(), f.a.data_dir());

  json permanent = {{"persistence", "permanent"}};
  std::string conf = "lxc.init.cmd = /sbin/gantry-init\n", file = "written by the agent\n";
  auto conf_id = f.a.PutBlock(conf), root_id = f.a.PutBlock(image), file_id = f.a.PutBlock(file);
  struct Step {
    json storage;
    std::vector<std::string> overlays;  // _config/c/<path>
    bool may_refuse;  // contained either way: resolved inside the storage tree, or WONTGO
  };
  std::vector<Step> steps = {
      {{{"data", permanent}}, {}, false},  // its init writes /data/sub -> canary
      {{{"data", permanent}}, {"etc/app/app.conf", "etc/pw"}, false},
      {{{"data", permanent}, {"data/sub/newdir", permanent}}, {}, true},
      {{{"data", permanent}, {"data/sub", permanent}}, {"etc/app/other.conf"}, true},
  };
  int seq = 0;
  for (auto& step : steps) {
    ++seq;
    SCOPED_TRACE("revision " + std::to_string(seq) + " storage " + step.storage.dump());
    json run = {{"#spec", "service-manifest-run@1"}, {"name", "c"}, {"type", "lxc"},
                {"config", "lxc.container.conf"}, {"root-volume", "root.squashfs"}, {"group", "app"},
                {"storage", step.storage}};
    json st = {{"#spec", "pantavisor-service-system@1"}, {"c/run.json", run}, {"c/lxc.container.conf", conf_id},
               {"c/root.squashfs", root_id}};
    for (auto& o : step.overlays) st["_config/c/" + o] = file_id;
    std::string id = "link-" + std::to_string(seq);
    f.a.Send({{"id", id}, {"op", "update"},
              {"revision", f.a.Sign(f.a.Revision("l" + std::to_string(seq), seq, st,
                                                 {{conf_id, conf}, {root_id, image}, {file_id, file}}))}});
    tally.inputs += 1 + static_cast<long>(step.overlays.size());
    auto final_event = f.a.WaitFinal(id, std::chrono::seconds(40));
    auto status = final_event.value("status", "");
    if (step.may_refuse && status == "WONTGO") {
      EXPECT_NE(f.RunningInstance("c"), "") << "a refused revision stopped the running one";
    } else {
      EXPECT_EQ(status, "DONE") << final_event.dump() << f.a.AgentLog();
    }
    std::printf("revision %d (storage %s): %s %s\n", seq, step.storage.dump().c_str(), status.c_str(),
                final_event.value("msg", "").c_str());
    // The container's init has run (its first event is written after the link).
    f.a.op().WaitFor([&](auto&) { return !f.Events("c").empty() || stdfs::exists(canary / "x"); },
                     std::chrono::seconds(10));
    std::vector<std::string> escaped;
    for (auto& e : stdfs::recursive_directory_iterator(canary)) escaped.push_back(e.path().string());
    std::string list;
    for (auto& e : escaped) list += e + "\n";
    EXPECT_TRUE(escaped.empty()) << "written through a container's link onto the host:\n" << list;
    tally.lost += static_cast<long>(escaped.size());
  }
  for (auto& p : TreeOutside(f.a.dir(), f.a.data_dir()))
    if (!outside_before.count(p)) {
      ADD_FAILURE() << "written outside the data dir: " << p;
      ++tally.lost;
    }
  EXPECT_EQ(tally.lost, 0);
  f.Cleanup();
  tally.Print();
}
