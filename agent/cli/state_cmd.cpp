// gantryctl state inspect: a bare state, a revision document or a signed envelope, parsed
// offline with the agent's own parser (docs/operator-guide.md).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "cli/command.hpp"
#include "core/fs.hpp"
#include "core/time.hpp"
#include "crypto/jws.hpp"
#include "manifest/json_text.hpp"
#include "manifest/revision.hpp"

namespace gantry::cli {
namespace {

constexpr std::uint64_t kMaxFileBytes = 16u << 20;

[[noreturn]] void Die(int code, const std::string& message) {
  std::cerr << "error: " << message << "\n";
  throw Exit{code};
}

std::string Join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string Size(const manifest::Revision* rev, const std::string& block) {
  if (rev == nullptr) return "-";
  auto it = rev->objects.find(block);
  return it == rev->objects.end() ? "MISSING" : std::to_string(it->second);
}

void PrintState(const manifest::State& st, const manifest::Revision* rev) {
  std::printf("groups (start order):\n");
  for (const auto& g : st.groups)
    std::printf("  %d. %-12s timeout %ds  goal %s  restart %s\n", g.order + 1, g.name.c_str(),
                g.timeout_s, g.status_goal.c_str(), g.restart_policy.c_str());

  std::printf("containers (start order): %zu\n", st.containers.size());
  for (const auto& c : st.containers) {
    std::printf("  %s  group %s  type %s  goal %s  restart %s  strategy %s\n", c.name.c_str(),
                c.group.c_str(), c.type.c_str(), c.status_goal.c_str(), c.restart_policy.c_str(),
                c.update_strategy.c_str());
    std::printf("    config       %s  %s\n", c.config_key.c_str(), c.config_block.c_str());
    std::printf("    root-volume  %s  %s%s\n", c.root_volume.key.c_str(), c.root_volume.block.c_str(),
                c.root_volume.dm_verity ? "  (dm: read as plain squashfs)" : "");
    for (const auto& v : c.volumes)
      std::printf("    volume       %s  %s\n", v.key.c_str(), v.block.c_str());
    for (const auto& [name, persistence] : c.storage)
      std::printf("    storage      %s: %s\n", name.c_str(), persistence.c_str());
    if (c.health)
      std::printf("    health       [%s] every %ds, timeout %ds\n", Join(c.health->argv, " ").c_str(),
                  c.health->interval_s, c.health->timeout_s);
    for (const auto& [path, f] : c.config_files)
      std::printf("    config file  %s  %s\n", path.c_str(),
                  f.block.empty() ? "(inline JSON)" : f.block.c_str());
    std::printf("    content key  %s\n", c.content_key.c_str());
  }

  std::printf("sensors: %zu\n", st.sensors.size());
  for (const auto& s : st.sensors)
    std::printf("  %s  version %s  seq %lld  vid %s  cid %s  targets %s\n    firmware %s  %s bytes\n",
                s.model.c_str(), s.version.c_str(), static_cast<long long>(s.seq),
                s.vid.value_or("-").c_str(), s.cid.value_or("-").c_str(), Join(s.targets).c_str(),
                s.block.c_str(), s.size ? std::to_string(*s.size).c_str() : "-");

  auto used = st.ReferencedBlocks();
  std::printf("blocks: %zu (%zu used by Gantry)\n", st.blocks.size(), used.size());
  for (const auto& [key, block] : st.blocks) {
    bool is_used = std::binary_search(used.begin(), used.end(), block);
    std::printf("  %s  %10s  %s%s\n", block.c_str(), Size(rev, block).c_str(), key.c_str(),
                is_used ? "" : "  (not fetched)");
  }
  std::printf("ignored: %zu\n", st.ignored.size());
  for (const auto& k : st.ignored) std::printf("  %s\n", k.c_str());
}

void PrintWarnings(const std::vector<std::string>& warnings) {
  std::printf("warnings: %zu\n", warnings.size());
  for (const auto& w : warnings) std::printf("  %s\n", w.c_str());
}

void Inspect(const std::string& file, const std::string& bsp) {
  auto text = fs::ReadFile(file, kMaxFileBytes);
  if (!text) Die(kExitUsage, text.error().message);
  auto doc = manifest::ParseJsonText(*text);
  if (!doc) Die(kExitUsage, file + ": " + doc.error().String());
  manifest::StateOptions options;
  options.bsp = bsp == "reject" ? manifest::BspPolicy::kReject : manifest::BspPolicy::kIgnore;

  std::string payload;
  bool is_envelope = doc->is_object() && doc->contains("payload");
  if (is_envelope) {
    auto env = crypto::DecodeJwsUnverified(*doc);
    if (!env) Die(kExitUsage, file + ": " + env.error().String());
    std::printf("file: %s\nkind: signed envelope; payload decoded, signatures NOT verified\n",
                file.c_str());
    for (const auto& s : env->signatures)
      std::printf("signature: kid %s  alg %s\n", s.kid.c_str(), s.alg.c_str());
    payload = std::move(env->payload);
  }
  bool is_revision = is_envelope || (doc->is_object() && doc->contains("state") && !doc->contains("#spec"));
  if (!is_revision) {
    auto st = manifest::ParseState(*doc, options);
    if (!st) Die(kExitUsage, file + ": " + st.error().String());
    std::printf("file: %s\nkind: bare state\n", file.c_str());
    PrintState(*st, nullptr);
    PrintWarnings(st->warnings);
    return;
  }
  auto rev = is_envelope ? manifest::ParseRevision(payload, options)
                         : manifest::ParseRevisionJson(*doc, options);
  if (!rev) Die(kExitUsage, file + ": " + rev.error().String());
  if (!is_envelope) std::printf("file: %s\nkind: revision document\n", file.c_str());
  std::printf("rev: %s  seq: %lld\ntargets: %s\nexpires: %s\nobjects_base: %s\n", rev->rev.c_str(),
              static_cast<long long>(rev->seq), Join(rev->targets).c_str(),
              rev->expires ? Rfc3339(*rev->expires).c_str() : "never",
              rev->objects_base.value_or("(none; the update command must carry one)").c_str());
  std::uint64_t total = 0;
  for (const auto& [id, size] : rev->objects) total += size;
  std::printf("objects: %zu, %llu bytes; a fresh device fetches %llu bytes\n", rev->objects.size(),
              static_cast<unsigned long long>(total),
              static_cast<unsigned long long>(rev->ReferencedBytes()));
  PrintState(rev->state, &*rev);
  auto warnings = rev->warnings;
  for (const auto& w : rev->state.warnings) warnings.push_back("state: " + w);
  PrintWarnings(warnings);
  std::fflush(stdout);
  if (auto c = manifest::CheckRevision(*rev); !c) Die(kExitUsage, file + ": " + c.error().String());
}

void RegisterStateCommands(CLI::App& app) {
  auto* group = app.add_subcommand("state", "Work with Pantavisor states and revisions offline");
  group->require_subcommand(1);
  group->footer("Example:\n  gantryctl state inspect revision.jws");
  auto file = std::make_shared<std::string>();
  auto bsp = std::make_shared<std::string>("ignore");
  auto* sub = group->add_subcommand(
      "inspect",
      "Parse a bare state, a revision document or a signed envelope (not verified) and print its "
      "containers, blocks, sensors and warnings; exit 0 when it parses, 2 otherwise");
  sub->footer("Example:\n  gantryctl state inspect bundle/revision.json\n"
              "  gantryctl state inspect --bsp reject exported-state.json");
  sub->add_option("file", *file, "state, revision or envelope (JSON)")->required();
  sub->add_option("--bsp", *bsp, "what the device does with bsp/* keys (config update.bsp)")
      ->check(CLI::IsMember({"ignore", "reject"}))
      ->capture_default_str();
  sub->callback([file, bsp] { Inspect(*file, *bsp); });
}

const CommandRegistration kRegistration(RegisterStateCommands);

}  // namespace
}  // namespace gantry::cli
