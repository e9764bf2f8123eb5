// The relay under benchmark: the engine with a real store and the real gantry-relay-mqtt.so,
// run the way gantryd runs it (one event-loop thread). Prints one JSON line of figures once
// every sensor reported SUCCEEDED: wall time, payload bytes served, this process's CPU seconds
// and peak RSS.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>

#include "system/relay/relay_harness.hpp"

using namespace gantry;

int main(int argc, char** argv) {
  std::string broker, data_dir, image;
  int count = 200, max_concurrent = 200, timeout_s = 600;
  CLI::App app{"Runs the relay engine and its MQTT plugin until N sensors are updated"};
  app.add_option("--broker", broker, "MQTT broker URI")->required();
  app.add_option("--data-dir", data_dir, "directory for the relay's SQLite store")->required();
  app.add_option("--image", image, "firmware image for model bench-sensor")->required();
  app.add_option("--count", count, "sensors to wait for");
  app.add_option("--max-concurrent", max_concurrent, "relay.max_concurrent");
  app.add_option("--timeout-s", timeout_s, "give up after this long");
  CLI11_PARSE(app, argc, argv);

  try {
    test::RelayHost::Options o;
    o.broker_uri = broker;
    o.data_dir = data_dir;
    o.max_concurrent = max_concurrent;
    o.keep_events = false;
    test::RelayHost host(o);
    relay::Firmware fw;
    fw.model = "bench-sensor";
    fw.sha256 = test::Sha256Of(image);
    fw.size = std::filesystem::file_size(image);
    fw.version = "2.0.0";
    fw.seq = 2;
    fw.image = image;
    if (auto r = host.engine().SetFirmware("bench", {fw}); !r) {
      std::cerr << r.error().String() << "\n";
      return 3;
    }
    std::cout << "ready" << std::endl;
    // The clock starts with the first offer, i.e. once the simulated sensors said hello.
    host.RunUntil([&] { return host.event_count > 0; }, std::chrono::seconds(timeout_s));
    auto start = std::chrono::steady_clock::now();
    bool done = host.RunUntil(
        [&] { return host.SensorsWithStatus("SUCCEEDED").size() >= static_cast<std::size_t>(count); },
        std::chrono::seconds(timeout_s));
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto stats = host.Stats();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    nlohmann::json out = {
        {"succeeded", host.SensorsWithStatus("SUCCEEDED").size()},
        {"failed", host.SensorsWithStatus("FAILED").size()},
        {"elapsed_s", elapsed},
        {"payload_bytes", stats["bytes"]},
        {"gets", stats["gets"]},
        {"frames", stats["frames"]},
        {"errors", stats["errors"]},
        {"coalesced", stats["coalesced"]},
        {"cpu_user_s", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6},
        {"cpu_sys_s", ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6},
        {"max_rss_kib", ru.ru_maxrss}};
    std::cout << out.dump() << std::endl;
    return done ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "relay-bench-host: " << e.what() << "\n";
    return 3;
  }
}
