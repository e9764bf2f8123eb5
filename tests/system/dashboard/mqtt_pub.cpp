// A line-driven MQTT publisher for the dashboard's browser test, on the project's own MQTT
// client (Paho): publishing thousands of retained states from Python without a client
// library there. Reads stdin:
//   P <retain 0|1> <topic> <payload...>   publish at QoS 1 (payload: the rest of the line)
//   SYNC                                  wait for every acknowledgement, then print
//                                         "SYNCED <n acked> <unix ms>"
// Exits 1 when a publish is not acknowledged, 2 on a bad line, 3 when it cannot connect.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

#include "mqtt/client.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s BROKER_URI < commands\n", argv[0]);
    return 2;
  }
  gantry::mqtt::Options o;
  o.uri = argv[1];
  o.client_id = "dashboard-test-pub-" + std::to_string(getpid());
  o.clean_session = true;
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  long sent = 0, acked = 0, lost = 0;
  auto client = gantry::mqtt::MakePahoClient(o);
  client->Start({[&] {
                   std::lock_guard l(mu);
                   ready = true;
                   cv.notify_all();
                 },
                 [](const std::string&) {}, [](gantry::mqtt::Message) {}});
  {
    std::unique_lock l(mu);
    if (!cv.wait_for(l, std::chrono::seconds(20), [&] { return ready; })) {
      std::fprintf(stderr, "cannot connect to %s\n", argv[1]);
      return 3;
    }
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "SYNC") {
      std::unique_lock l(mu);
      cv.wait(l, [&] { return acked + lost == sent; });
      if (lost) {
        std::fprintf(stderr, "%ld publishes were not acknowledged\n", lost);
        return 1;
      }
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
      std::printf("SYNCED %ld %lld\n", acked, static_cast<long long>(ms));
      std::fflush(stdout);
      continue;
    }
    // P <retain> <topic> <payload>
    auto a = line.find(' '), b = line.find(' ', a + 1), c = line.find(' ', b + 1);
    if (line.rfind("P ", 0) != 0 || b == std::string::npos || c == std::string::npos) {
      std::fprintf(stderr, "bad line: %s\n", line.substr(0, 200).c_str());
      return 2;
    }
    gantry::mqtt::Message m;
    m.retain = line.substr(a + 1, b - a - 1) == "1";
    m.topic = line.substr(b + 1, c - b - 1);
    m.payload = line.substr(c + 1);
    {
      // Paho refuses more than its in-flight window; keep well below it.
      std::unique_lock l(mu);
      cv.wait(l, [&] { return sent - acked - lost < 64; });
      ++sent;
    }
    client->Publish(m, [&](bool ok) {
      std::lock_guard l(mu);
      ++(ok ? acked : lost);
      cv.notify_all();
    });
  }
  client->Stop();
  return 0;
}
