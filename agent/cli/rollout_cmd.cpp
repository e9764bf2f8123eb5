// gantryctl rollout start|status|pause|resume|abort|retry-failed (docs/rollouts.md).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "core/fs.hpp"
#include "core/names.hpp"
#include "rollout/control.hpp"
#include "rollout/orchestrator.hpp"

namespace gantry::cli {
namespace {

std::atomic<bool> g_stop{false};

std::string DefaultDb() {
  const char* state = std::getenv("XDG_STATE_HOME");
  const char* home = std::getenv("HOME");
  std::string base = state && *state ? state : std::string(home ? home : ".") + "/.local/state";
  return base + "/gantry/rollouts.db";
}

[[noreturn]] void Die(int code, const std::string& message) {
  std::cerr << "error: " << message << "\n";
  throw Exit{code};
}

// "30s", "10m", "2h", "45" (seconds).
int ParseDuration(const std::string& text, const char* option) {
  if (text.empty()) Die(kExitUsage, std::string(option) + " is empty");
  char unit = text.back();
  std::string digits = std::isdigit(static_cast<unsigned char>(unit)) ? text : text.substr(0, text.size() - 1);
  if (digits.empty() || digits.size() > 7 || digits.find_first_not_of("0123456789") != std::string::npos)
    Die(kExitUsage, std::string(option) + " " + text + ": expected a number with s, m or h");
  int n = std::stoi(digits);
  switch (unit) {
    case 'h': return n * 3600;
    case 'm': return n * 60;
    case 's': default: return n;
  }
}

double ParsePercent(std::string text, const char* option) {
  if (!text.empty() && text.back() == '%') text.pop_back();
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end || v < 0 || v > 100) Die(kExitUsage, std::string(option) + ": expected a percentage 0-100");
  return v;
}

int RunAndReport(const std::string& db, const std::string& name) {
  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGTERM, [](int) { g_stop = true; });
  auto r = rollout::Run(db, name, g_stop);
  if (!r) Die(r.error().code == "busy" || r.error().code == "not_found" ? kExitUsage : kExitError, r.error().message);
  std::printf("rollout %s: %s\n", name.c_str(), std::string(rollout::Name(*r)).c_str());
  return *r == rollout::RolloutState::kDone ? kExitOk : kExitCheckFailed;
}

void PrintStatus(const nlohmann::json& s) {
  std::printf("rollout %s  rev %s (seq %lld)  %s  wave %d of %zu\n", s["name"].get<std::string>().c_str(),
              s["rev"].get<std::string>().c_str(), static_cast<long long>(s["seq"].get<std::int64_t>()),
              s["state"].get<std::string>().c_str(), s["wave"].get<int>(), s["waves"].size());
  std::printf("%-5s %-6s %-6s %-9s %-6s %-9s %-7s %s\n", "WAVE", "UP-TO", "SIZE", "SUCCEEDED", "FAILED", "TIMED_OUT",
              "PENDING", "CANCELLED");
  int i = 1;
  for (auto& w : s["waves"])
    std::printf("%-5d %5.0f%% %-6d %-9d %-6d %-9d %-7d %d\n", i++, w.value("percent", 0.0), w["size"].get<int>(),
                w["succeeded"].get<int>(), w["failed"].get<int>(), w["timed_out"].get<int>(),
                w["pending"].get<int>(), w.value("cancelled", 0));
  for (auto& [id, d] : s["devices"].items()) {
    auto status = d["status"].get<std::string>();
    if (status == "FAILED" || status == "TIMED_OUT" || status == "RETRYING")
      std::printf("  %-24s %-9s attempt %d  %s\n", id.c_str(), status.c_str(), d["attempt"].get<int>(),
                  d["reason"].get<std::string>().c_str());
  }
  std::fflush(stdout);
}

void RegisterRollout(CLI::App& app) {
  auto* rollout = app.add_subcommand("rollout", "Staged fleet rollouts: waves, soak, abort condition, retries");
  rollout->require_subcommand(1);
  {
    auto* sub = rollout->add_subcommand("start", "Start (or continue) a rollout; runs until DONE, PAUSED or ABORTED");
    sub->footer("Example:\n  gantryctl rollout start r42 --revision rev42.jws.json --group lab \\\n"
                "      --waves 1,10,50,100 --soak 30s --abort-failed 5% --broker tcp://10.0.0.2:1883");
    struct Args {
      std::string name, revision, group, devices, waves = "1,10,50,100", soak = "30s", abort_failed = "5%",
                                                timeout = "10m", on_abort = "pause", root = "gantry", db = DefaultDb();
      int min_executed = 20, retries = 2, max_inflight = 200;
      std::vector<std::string> brokers;
    };
    auto a = std::make_shared<Args>();
    sub->add_option("name", a->name, "rollout name (letters, digits, . _ -)")->required();
    sub->add_option("--revision", a->revision, "signed revision (gantryctl sign)")->required()->check(CLI::ExistingFile);
    auto* g = sub->add_option("--group", a->group, "every device of this group (found from retained P/state)");
    auto* d = sub->add_option("--devices", a->devices, "file with one device id a line")->check(CLI::ExistingFile);
    g->excludes(d);
    sub->add_option("--waves", a->waves, "cumulative percentages of the fleet")->capture_default_str();
    sub->add_option("--soak", a->soak, "time a final wave must stay below the abort condition")->capture_default_str();
    sub->add_option("--abort-failed", a->abort_failed, "failed + timed out share that stops the rollout")->capture_default_str();
    sub->add_option("--min-executed", a->min_executed, "final devices before the abort condition applies")->capture_default_str();
    sub->add_option("--timeout", a->timeout, "time a device has for a final status")->capture_default_str();
    sub->add_option("--retries", a->retries, "retries of transient failures and time-outs")->capture_default_str();
    sub->add_option("--max-inflight", a->max_inflight, "devices updating at once")->capture_default_str();
    sub->add_option("--on-abort", a->on_abort, "pause | cancel | rollback")
        ->check(CLI::IsMember({"pause", "cancel", "rollback"}))->capture_default_str();
    sub->add_option("--broker", a->brokers, "broker URI; repeat for each node of a cluster");
    sub->add_option("--root", a->root, "topic root")->capture_default_str();
    sub->add_option("--db", a->db, "rollout database")->capture_default_str();
    sub->callback([a] {
      if (!IsSafeName(a->name)) Die(kExitUsage, "rollout name '" + a->name + "' is not a safe name (a-z 0-9 . _ -)");
      if (a->group.empty() && a->devices.empty()) Die(kExitUsage, "give --group or --devices");
      rollout::Plan p;
      p.name = a->name;
      auto env = fs::ReadFile(a->revision, 1u << 20);
      if (!env) Die(kExitUsage, env.error().message);
      p.envelope = *env;
      if (!a->group.empty()) p.group = a->group;
      if (!a->devices.empty()) {
        auto text = fs::ReadFile(a->devices, 64u << 20);
        if (!text) Die(kExitUsage, text.error().message);
        size_t pos = 0;
        while (pos < text->size()) {
          size_t nl = text->find('\n', pos);
          if (nl == std::string::npos) nl = text->size();
          std::string id = text->substr(pos, nl - pos);
          pos = nl + 1;
          while (!id.empty() && (id.back() == '\r' || id.back() == ' ')) id.pop_back();
          if (id.empty()) continue;
          if (!IsSafeName(id)) Die(kExitUsage, a->devices + ": '" + id + "' is not a device id");
          p.devices.push_back(id);
        }
        if (p.devices.empty()) Die(kExitUsage, a->devices + " names no device");
      }
      p.waves.clear();
      size_t pos = 0;
      while (pos <= a->waves.size()) {
        size_t c = a->waves.find(',', pos);
        if (c == std::string::npos) c = a->waves.size();
        p.waves.push_back(ParsePercent(a->waves.substr(pos, c - pos), "--waves"));
        pos = c + 1;
      }
      p.soak_s = ParseDuration(a->soak, "--soak");
      p.abort_failed_pct = ParsePercent(a->abort_failed, "--abort-failed");
      p.min_executed = a->min_executed;
      p.timeout_s = ParseDuration(a->timeout, "--timeout");
      p.retries = a->retries;
      p.max_inflight = std::max(1, a->max_inflight);
      p.on_abort = a->on_abort;
      if (!a->brokers.empty()) p.brokers = a->brokers;
      p.root = a->root;
      if (auto r = rollout::CreateRollout(a->db, p); !r)
        Die(r.error().code == "db" || r.error().code == "io" ? kExitError : kExitUsage, r.error().message);
      throw Exit{RunAndReport(a->db, a->name)};
    });
  }
  struct Common {
    std::string name, db = DefaultDb();
    bool watch = false, json = false;
  };
  {
    auto* sub = rollout->add_subcommand("status", "Show a rollout's waves and devices (from --db)");
    auto c = std::make_shared<Common>();
    sub->add_option("name", c->name, "rollout name")->required();
    sub->add_option("--db", c->db, "rollout database")->capture_default_str();
    sub->add_flag("--watch", c->watch, "print again every second until the rollout stops running");
    sub->add_flag("--json", c->json, "print the summary JSON (as on <root>/rollouts/<name>/status)");
    sub->callback([c] {
      while (true) {
        auto s = rollout::Summary(c->db, c->name);
        if (!s) Die(s.error().code == "not_found" ? kExitUsage : kExitError, s.error().message);
        if (c->json) std::printf("%s\n", s->dump().c_str()), std::fflush(stdout);
        else PrintStatus(*s);
        if (!c->watch || (*s)["state"] != "RUNNING") break;
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      throw Exit{kExitOk};
    });
  }
  struct ActionDef {
    const char* name;
    const char* help;
    rollout::RolloutAction action;
    bool runs;  // continues the rollout in this process when no orchestrator runs it
  };
  for (auto def : {ActionDef{"pause", "Stop sending; devices already updating are still tracked", rollout::RolloutAction::kPause, false},
                   ActionDef{"resume", "Continue a paused rollout (runs it here unless an orchestrator does)", rollout::RolloutAction::kResume, true},
                   ActionDef{"abort", "Stop for good; --on-abort decides what happens to updated devices", rollout::RolloutAction::kAbort, false},
                   ActionDef{"retry-failed", "Give failed and timed-out devices another attempt (runs it here unless an orchestrator does)", rollout::RolloutAction::kRetryFailed, true}}) {
    auto* sub = rollout->add_subcommand(def.name, def.help);
    auto c = std::make_shared<Common>();
    sub->add_option("name", c->name, "rollout name")->required();
    sub->add_option("--db", c->db, "rollout database")->capture_default_str();
    sub->add_flag("--watch", c->watch, "(resume, retry-failed) print the status when the rollout stops");
    sub->add_flag("--json", c->json, "print the summary JSON afterwards");
    sub->callback([c, def] {
      auto r = rollout::RequestAction(c->db, c->name, def.action);
      if (!r) Die(r.error().code == "db" || r.error().code == "io" ? kExitError : kExitUsage, r.error().message);
      int code = kExitOk;
      if (def.runs) {
        auto run = rollout::Run(c->db, c->name, g_stop);
        if (!run && run.error().code != "busy") Die(kExitError, run.error().message);
        if (run) code = *run == rollout::RolloutState::kDone ? kExitOk : kExitCheckFailed;
        else std::printf("%s: a running orchestrator picks it up\n", def.name);
      }
      if (c->json || c->watch) {
        auto s = rollout::Summary(c->db, c->name);
        if (s) c->json ? (void)std::printf("%s\n", s->dump().c_str()) : PrintStatus(*s);
      } else {
        std::printf("rollout %s: %s requested\n", c->name.c_str(), def.name);
      }
      throw Exit{code};
    });
  }
}

CommandRegistration registration(RegisterRollout);

}  // namespace
}  // namespace gantry::cli
