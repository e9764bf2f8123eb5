#include "app/agent.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>

#include "app/dispatcher.hpp"
#include "app/relay_host.hpp"
#include "cache/block_cache.hpp"
#include "config/config.hpp"
#include "core/event_loop.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "crypto/jws.hpp"
#include "mqtt/client.hpp"
#include "relay/relay_engine.hpp"
#include "relay/transport.hpp"
#include "runtime/runtime.hpp"
#include "status/outbox.hpp"
#include "store/checkpointer.hpp"
#include "store/db.hpp"
#include "txn/engine.hpp"

namespace gantry::app {
namespace {

std::int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr const char* kLog = "gantryd";

std::optional<std::string> ReadPassword(const std::optional<std::string>& file) {
  if (!file) return std::nullopt;
  auto text = fs::ReadFile(*file, 4096);
  if (!text) return std::nullopt;
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
  return *text;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App cli{"gantryd: the Gantry edge gateway update agent"};
  std::string config_file, device_id, broker, data_dir;
  bool verbose = false;
  cli.add_option("--config", config_file, "configuration file (JSON, schemas/config.schema.json)")->required();
  cli.add_option("--device-id", device_id, "override device_id");
  cli.add_option("--broker", broker, "override mqtt.uri");
  cli.add_option("--data-dir", data_dir, "override data_dir");
  cli.add_flag("-v,--verbose", verbose, "debug logging");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }
  if (verbose) log::SetLevel(log::Level::kDebug);

  // Overrides are checked like keys of the file (a bad --device-id exits 2 too).
  config::Overrides overrides;
  if (!device_id.empty()) overrides.device_id = device_id;
  if (!broker.empty()) overrides.mqtt_uri = broker;
  if (!data_dir.empty()) overrides.data_dir = data_dir;
  auto cfg = config::Load(config_file, overrides);
  if (!cfg) {
    log::Error(kLog, cfg.error().message);
    return 2;
  }

  // Signals are taken by one thread with sigwait; block them before any thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  if (auto r = fs::MakeDirs(cfg->data_dir, 0700); !r) {
    log::Error(kLog, r.error().String());
    return 3;
  }
  auto lock = fs::LockDataDir(cfg->data_dir);  // held until Main returns
  if (!lock) {
    log::Error(kLog, lock.error().String());
    return 3;
  }

  EventLoop loop;
  int exit_code = 0;
  // The runtime plugin forks its liblxc helper: it must happen before any other thread starts.
  // A helper that dies cannot be replaced in a threaded process, so gantryd exits and the
  // service manager restarts it; restart recovery resumes or rolls back what was in flight.
  auto runtime = runtime::LoadRuntimePlugin(
      cfg->plugin_dir, cfg->data_dir,
      {{"idmap", cfg->runtime.idmap}, {"privileged", cfg->runtime.privileged}}, [&loop, &exit_code](const Error& e) {
        loop.Post([&loop, &exit_code, e] {
          log::Error(kLog, e.String() + "; exiting so that gantryd is restarted (containers keep running)");
          exit_code = 3;
          loop.Stop();
        });
      });
  if (!runtime) {
    log::Error(kLog, runtime.error().WithContext("loading the runtime plugin").String());
    return 3;
  }

  // The one database connection: the loop, the runner and the cache's fetch workers all
  // write through it, each statement and transaction under its writer lock
  // (docs/architecture-engine.md).
  auto db = store::Db::Open(cfg->data_dir / "gantry.db");
  if (!db) {
    log::Error(kLog, db.error().String());
    return 3;
  }
  auto checkpointer = store::Checkpointer::Start(*db, cfg->data_dir / "gantry.db");
  if (!checkpointer) {
    log::Error(kLog, checkpointer.error().String());
    return 3;
  }
  cache::Options cache_options;
  cache_options.quota_bytes = cfg->cache.quota_bytes;
  auto cache = cache::BlockCache::Open(cfg->data_dir, std::move(cache_options), *db);
  if (!cache) {
    log::Error(kLog, cache.error().String());
    return 3;
  }
  auto trust = crypto::TrustStore::LoadDir(cfg->trust.keys_dir);
  if (!trust) {
    log::Error(kLog, trust.error().WithContext("trust.keys_dir").String());
    return 3;
  }
  if (trust->size() == 0) log::Warn(kLog, "no trusted keys in " + cfg->trust.keys_dir + ": every update will be refused");

  // The sensor relay's transports are plugins too; they start their own threads, so they load
  // after the runtime plugin's fork.
  // Without relay.mqtt_uri the relay shares the agent's connection through relay_host: its
  // subscriptions join the agent's and its messages are routed to it before the dispatcher.
  app::RelayHost relay_host(loop);
  std::vector<std::unique_ptr<relay::Transport>> transports;
  for (const auto& name : cfg->relay.transports) {
    nlohmann::json options = {{"device_id", cfg->device_id},
                              {"root", cfg->mqtt.root},
                              {"version", cfg->mqtt.version},
                              {"coap_port", cfg->relay.coap_port},
                              {"max_msgs_per_s", cfg->relay.max_msgs_per_s}};
    if (cfg->relay.mqtt_uri) {
      // A separate sensor broker: the device's TLS identity and CA, host name verified.
      options["mqtt_uri"] = *cfg->relay.mqtt_uri;
      if (cfg->mqtt.ca_file) options["ca_file"] = *cfg->mqtt.ca_file;
      if (cfg->mqtt.cert_file) options["cert_file"] = *cfg->mqtt.cert_file;
      if (cfg->mqtt.key_file) options["key_file"] = *cfg->mqtt.key_file;
    }
    auto t = relay::LoadRelayPlugin(cfg->plugin_dir, name, options, relay_host.host());
    if (!t) {
      log::Error(kLog, t.error().WithContext("loading relay transport " + name).String());
      return 3;
    }
    transports.push_back(std::move(*t));
  }
  std::string prefix = cfg->mqtt.root + "/" + cfg->device_id;
  mqtt::Options mo;
  mo.uri = cfg->mqtt.uri;
  mo.servers = cfg->mqtt.uris;  // a cluster's nodes: fail-over (docs/rollouts.md)
  mo.client_id = cfg->device_id;
  mo.version = cfg->mqtt.version;
  mo.ca_file = cfg->mqtt.ca_file;
  mo.cert_file = cfg->mqtt.cert_file;
  mo.key_file = cfg->mqtt.key_file;
  mo.username = cfg->mqtt.username;
  mo.password = ReadPassword(cfg->mqtt.password_file);
  mo.will = mqtt::Message{prefix + "/online", R"({"online":false})", 1, true, "", ""};
  mo.subscriptions.push_back(prefix + "/cmd");
  for (const auto& g : cfg->groups) mo.subscriptions.push_back(cfg->mqtt.root + "/group/" + g + "/cmd");
  for (const auto& f : relay_host.Filters()) mo.subscriptions.push_back(f);
  auto client = mqtt::MakePahoClient(mo);
  status::Outbox outbox(*db, loop, *client);
  relay_host.Attach(*client, outbox);

  Dispatcher dispatcher(*cfg, loop, *db, **cache, *trust, outbox, *client);
  txn::EngineOptions eo;
  eo.data_dir = cfg->data_dir;
  eo.commit_window_s = cfg->update.commit_window_s;
  eo.stop_timeout_s = cfg->update.stop_timeout_s;
  eo.parallel_downloads = cfg->update.parallel_downloads;
  eo.reject_bsp = cfg->update.bsp == "reject";
  eo.allow_lxc_keys = cfg->runtime.allow_lxc_keys;
  eo.ca_file = cfg->mqtt.ca_file;
  txn::Engine engine(*db, **cache, **runtime, dispatcher, eo);
  if (auto r = engine.Open(); !r) {
    log::Error(kLog, r.error().String());
    return 3;
  }
  dispatcher.SetEngine(&engine);
  dispatcher.EmitUnreportedFinals();

  std::unique_ptr<relay::RelayEngine> relay;
  if (!transports.empty()) {
    relay::Limits limits;
    limits.max_concurrent = cfg->relay.max_concurrent;
    limits.job_timeout = std::chrono::seconds(cfg->relay.job_timeout_s);
    limits.max_sensors = cfg->relay.max_sensors;
    relay = std::make_unique<relay::RelayEngine>(*db, std::move(transports), limits,
                                                 [&](const nlohmann::json& e) { dispatcher.EmitSensor(e); });
    relay_host.SetEngine(relay.get());
    relay->SetDroppedEvents([&relay_host] { return relay_host.DroppedEvents(); });
  }

  std::atomic<std::int64_t> stop_requested_ms{0};
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    log::Info(kLog, std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    stop_requested_ms = SteadyMs();
    loop.Stop();
  });
  signal_thread.detach();

  // Job time-outs, once a second while a sensor job is active; an idle relay sets no timer
  // (the engine calls back when a job becomes active). Both live as long as the loop.
  std::function<void()> relay_tick;
  bool relay_tick_armed = false;
  if (relay) {
    relay_tick = [&] {
      relay->Tick();
      relay_tick_armed = relay->HasActiveJobs();
      if (relay_tick_armed) loop.After(std::chrono::seconds(1), relay_tick);
    };
    relay->SetOnFirstActiveJob([&] {
      if (relay_tick_armed) return;
      relay_tick_armed = true;
      loop.After(std::chrono::seconds(1), relay_tick);
    });
    loop.Post([&] { dispatcher.SetRelay(relay.get()); });
  }
  engine.Start();
  client->Start({
      [&] { loop.Post([&] { dispatcher.OnConnected(); }); },
      [&](const std::string&) { loop.Post([&] { outbox.OnLost(); }); },
      [&](mqtt::Message m) {
        if (relay_host.Route(m)) return;  // sensor traffic, handled on this thread by the plugin
        // Ahead of queued reports and acknowledgements: intake never waits on the update.
        loop.PostUrgent([&, m = std::move(m)] { dispatcher.OnMessage(m); });
      },
      // Retrying cannot help: a configuration error like a bad key (exit 2, not restarted).
      [&](const std::string& reason) {
        loop.Post([&loop, &exit_code, reason] {
          log::Error(kLog, "mqtt.version: " + reason);
          exit_code = 2;
          loop.Stop();
        });
      },
  });

  // systemd: READY once the loop runs; the watchdog is fed from the loop itself, so a stuck
  // loop is restarted.
  std::uint64_t watchdog_us = 0;
  std::function<void()> feed_watchdog;  // lives as long as the loop runs
  if (sd_watchdog_enabled(0, &watchdog_us) > 0 && watchdog_us > 0) {
    auto period = std::chrono::microseconds(watchdog_us / 2);
    feed_watchdog = [&loop, period, &feed_watchdog] {
      sd_notify(0, "WATCHDOG=1");
      loop.After(period, feed_watchdog);
    };
    loop.Post(feed_watchdog);
  }
  loop.Post([] { sd_notify(0, "READY=1\nSTATUS=running"); });
  log::Info(kLog, "device " + cfg->device_id + " on " + cfg->mqtt.uri + ", data in " + cfg->data_dir.string());
  loop.Run();

  sd_notify(0, "STOPPING=1");
  // Clean stop within update.stop_timeout_s of the signal: cancel the runner's downloads and
  // waits, then serve the loop once more so that what the runner reported is queued and
  // every message handed to the broker has its acknowledgement (and outbox delete) taken;
  // otherwise the next start would publish those messages a second time.
  engine.Stop();
  auto started = stop_requested_ms.load() ? stop_requested_ms.load() : SteadyMs();
  auto budget_ms = std::max<std::int64_t>(500, cfg->update.stop_timeout_s * 1000 - (SteadyMs() - started) - 250);
  loop.Resume();
  bool drained = loop.RunUntil([&] { return loop.ReadyTasks() == 0 && outbox.InFlight() == 0; },
                               std::chrono::milliseconds(budget_ms));
  if (!drained) log::Warn(kLog, "stopping with messages not yet acknowledged; they are sent again at the next start");
  client->Stop();
  relay_host.SetEngine(nullptr);
  return exit_code;
}

}  // namespace gantry::app
