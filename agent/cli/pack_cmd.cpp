// gantryctl pack: build a bundle (state.json, objects/, revision.json) from a source tree of
// containers (docs/operator-guide.md; format in examples/revisions/README.md).
#include <iostream>
#include <memory>
#include <string>

#include "cli/command.hpp"
#include "pack/pack.hpp"

namespace gantry::cli {
namespace {

struct PackArgs {
  pack::Options options;
  std::string expires;
};

void Pack(PackArgs& a) {
  if (!a.expires.empty()) a.options.expires = a.expires;
  auto r = pack::Pack(a.options);
  if (!r) {
    std::cerr << "error: " << r.error().message << "\n";
    bool usage = r.error().code == "bad_source" || r.error().code == "bad_option" ||
                 r.error().code == "missing_object";
    throw Exit{usage ? kExitUsage : kExitError};
  }
  for (const auto& w : r->warnings) std::cerr << "warning: " << w << "\n";
  std::uint64_t total = 0;
  for (const auto& [id, size] : r->objects) total += size;
  for (const auto& [key, id] : r->blocks)
    std::cout << id << "  " << r->objects.at(id) << "  " << key << "\n";
  auto out = a.options.out.string();
  std::cout << "objects: " << r->objects.size() << " blocks, " << total << " bytes in " << out
            << "/objects/\nstate:   " << out << "/state.json\n";
  if (r->revision) {
    std::cout << "revision: " << out << "/revision.json (rev " << (*r->revision)["rev"].get<std::string>()
              << ", seq " << a.options.seq << ")\nnext:    gantryctl sign --key KEY " << out
              << "/revision.json --out " << out << "/revision.jws\n";
  } else {
    std::cout << "revision.json not written: give --target (a device id or group:<name>)\n";
  }
}

void RegisterPackCommands(CLI::App& app) {
  auto a = std::make_shared<PackArgs>();
  auto* sub = app.add_subcommand(
      "pack", "Build a revision bundle from a source tree: one squashfs per container rootfs/, "
              "every block named by its SHA-256, state.json and the unsigned revision.json");
  sub->footer(
      "Source tree: <c>/rootfs/ <c>/run.json <c>/lxc.container.conf, _config/<c>/<path>,\n"
      "_sensors/<model>/{firmware.bin,sensor.json}, device.json, groups.json; a file\n"
      "rootfs/.busybox installs --busybox with its applet links (see examples/revisions/README.md).\n"
      "Exit codes: 0 packed, 2 bad source tree or option, 3 I/O or tool failure.\n"
      "Example:\n  gantryctl pack examples/revisions/rev1 --out bundle/rev1 --rev rev1 --seq 1 "
      "--target gw-0001\n  gantryctl sign --key keys/ops.key bundle/rev1/revision.json --out "
      "bundle/rev1/revision.jws");
  sub->add_option("source", a->options.source, "source tree (one directory per container)")->required();
  sub->add_option("--out", a->options.out, "bundle directory (created; objects/ accumulates)")->required();
  sub->add_option("--rev", a->options.rev, "revision name (default: the source directory's name)");
  sub->add_option("--seq", a->options.seq, "revision sequence number (> every committed one)")
      ->capture_default_str();
  sub->add_option("--target", a->options.targets,
                  "device id or group:<name>; repeat for more. Without one, revision.json is not written")
      ->allow_extra_args(false);
  sub->add_option("--expires", a->expires, "RFC 3339 time after which devices refuse it");
  sub->add_option("--busybox", a->options.busybox, "static busybox for rootfs/ trees marked .busybox")
      ->capture_default_str();
  sub->add_option("--mksquashfs", a->options.mksquashfs, "mksquashfs to run")->capture_default_str();
  sub->callback([a] { Pack(*a); });
}

const CommandRegistration kRegistration(RegisterPackCommands);

}  // namespace
}  // namespace gantry::cli
