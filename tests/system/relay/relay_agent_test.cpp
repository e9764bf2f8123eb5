// The relay inside a real gantryd (docs/relay.md): one MQTT client per device, jobs of silent
// sensors timed out, a flood of fake hellos bounded in memory and in P/state. Real mosquitto,
// the real plugins, gantry-sensor-sim as the well-behaved sensor.
#include <gtest/gtest.h>

#include <mqtt/async_client.h>

#include <fstream>

#include "system/agent/agent_fixture.hpp"

using namespace gantry;
using namespace gantry::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

json Hello(const std::string& model, int seq) {
  return {{"model", model}, {"version", "0.9.0"}, {"seq", seq}, {"slot", 1 << 20},
          {"max_chunk", 256}, {"window", 4}, {"state", 0}, {"result", 0}};
}

class RelayAgent : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(BuildDir() + "/gantry-sensor-sim"))
      FAIL() << "gantry-sensor-sim not built under " << BuildDir();
    a_.config["relay"] = {{"transports", {"mqtt"}}, {"job_timeout_s", 3}, {"max_concurrent", 8}};
  }

  // A plain MQTT 5 client for fake sensors.
  std::unique_ptr<::mqtt::async_client> Client(const std::string& id) {
    auto c = std::make_unique<::mqtt::async_client>(a_.broker().uri(), id, ::mqtt::create_options(MQTTVERSION_5));
    c->connect(::mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize())
        ->wait_for(10s);
    if (!c->is_connected()) throw std::runtime_error(id + " cannot connect");
    return c;
  }

  // Commits a revision with firmware for model "th" (seq 1); returns its size.
  std::size_t CommitFirmware() {
    std::string image(24 * 1024, '\0');
    for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<char>(i * 131 % 251);
    auto id = a_.PutBlock(image);
    a_.Send({{"id", "c1"}, {"op", "update"},
             {"revision", a_.Sign(a_.Revision("r1", 1, FirmwareState({{"th", id}}), {{id, image}}))}});
    auto final_event = a_.WaitFinal("c1");
    EXPECT_EQ(final_event["status"], "DONE") << final_event.dump();
    return image.size();
  }

  std::vector<json> SensorEvents(const std::string& sensor) {
    std::vector<json> out;
    for (auto& r : a_.op().Log())
      if (r.topic == a_.Prefix() + "/progress" && r.body.is_object() && r.body.value("sensor", "") == sensor)
        out.push_back(r.body);
    return out;
  }
  bool HasStatus(const std::string& sensor, const std::string& status) {
    for (auto& e : SensorEvents(sensor))
      if (e["status"] == status) return true;
    return false;
  }

  AgentFixture a_;
  TempDir sims_;
};

}  // namespace

TEST_F(RelayAgent, SilentSensorsAreTimedOutAndANinthIsUpdatedOnTheAgentsOneConnection) {
  a_.StartAgent();
  ASSERT_TRUE(a_.WaitOnline());
  CommitFirmware();
  // Eight sensors say hello and then never answer their offers: they hold every slot.
  auto silent = Client("silent-sensors");
  for (int i = 1; i <= 8; ++i) {
    auto topic = a_.Prefix() + "/sensors/silent-" + std::to_string(i) + "/hello";
    auto body = Hello("th", 0).dump();
    silent->publish(topic, body.data(), body.size(), 1, true)->wait_for(10s);
  }
  ASSERT_TRUE(a_.op().WaitFor([&](auto&) {
    for (int i = 1; i <= 8; ++i)
      if (!HasStatus("silent-" + std::to_string(i), "OFFERED")) return false;
    return true;
  }, 30s)) << a_.AgentLog();
  // The ninth, well-behaved sensor waits for a slot, which the time-outs free.
  Process sim({BuildDir() + "/gantry-sensor-sim", "--broker", a_.broker().uri(), "--device", a_.device,
               "--state-dir", (sims_.path() / "state").string(), "--model", "th", "--seq", "0",
               "--count", "1", "--first", "9", "--exit-when-done"},
              (sims_.path() / "sim.log").string());
  ASSERT_TRUE(a_.op().WaitFor([&](auto&) { return HasStatus("sensor-0009", "SUCCEEDED"); }, 60s))
      << "sim log:\n" << Slurp(sims_.path() / "sim.log") << "\nagent log:\n" << a_.AgentLog();
  auto timed_out_all = [&] {
    for (int i = 1; i <= 8; ++i) {
      bool found = false;
      for (auto& e : SensorEvents("silent-" + std::to_string(i)))
        if (e["status"] == "FAILED" && e["msg"].get<std::string>().find("no progress for 3 s") != std::string::npos)
          found = true;
      if (!found) return false;
    }
    return true;
  };
  a_.op().WaitFor([&](auto&) { return timed_out_all(); }, 20s);
  for (int i = 1; i <= 8; ++i) {
    auto id = "silent-" + std::to_string(i);
    bool timed_out = false;
    for (auto& e : SensorEvents(id))
      if (e["status"] == "FAILED" && e["msg"].get<std::string>().find("no progress for 3 s") != std::string::npos)
        timed_out = true;
    std::string seen;
    for (auto& e : SensorEvents(id)) seen += e.dump() + "\n";
    EXPECT_TRUE(timed_out) << id << ":\n" << seen;
  }
  EXPECT_EQ(sim.Wait(20s), 0);
  // gantryd holds one connection to the broker: the relay rides on the agent's.
  auto [rc, sockets] = Sh("ss -tnpH state established dst 127.0.0.1:" + std::to_string(a_.broker().port()));
  ASSERT_EQ(rc, 0) << sockets;
  EXPECT_EQ(Count(sockets, "pid=" + std::to_string(a_.agent().pid()) + ","), 1) << sockets;
  auto state = a_.LastState();
  ASSERT_TRUE(state.contains("sensor_counts")) << state.dump();
  EXPECT_EQ(state["sensor_counts"]["tracked"], 9) << state.dump();
  EXPECT_EQ(a_.SchemaProblems(), "");
}

TEST_F(RelayAgent, TwentyThousandFakeHellosAreCountedNotTracked) {
  int fakes = std::getenv("GANTRY_LONG") ? 50000 : 20000;
  a_.config["relay"]["max_sensors"] = 1024;
  a_.StartAgent();
  ASSERT_TRUE(a_.WaitOnline());
  CommitFirmware();
  auto latency = [&](const std::string& id) {
    auto start = std::chrono::steady_clock::now();
    a_.Send({{"id", id}, {"op", "get-state"}});
    a_.WaitReply(id);
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  };
  auto before_ms = latency("s1");
  long rss_before = RssKiB(a_.agent().pid());
  ASSERT_GT(rss_before, 0);
  // Distinct ids, each a hello of a model the revision has no firmware for, at QoS 0.
  auto faker = Client("faker");
  auto body = Hello("zz", 0).dump();
  for (int i = 0; i < fakes; ++i) {
    auto topic = a_.Prefix() + "/sensors/fake-" + std::to_string(i) + "/hello";
    auto tok = faker->publish(topic, body.data(), body.size(), 0, false);
    if (i % 20 == 19) tok->wait_for(10s);  // Paho's send buffer, not the agent
  }
  // Every hello was read: tracked + ignored + dropped-by-the-loop-queue adds up, or the agent
  // settles (its state stops changing) within the wait.
  ASSERT_TRUE(a_.op().WaitFor([&](auto&) {
    auto s = a_.LastState();
    return s.contains("sensor_counts") && s["sensor_counts"]["tracked"] == 1024;
  }, 120s)) << a_.LastState().dump().substr(0, 2000);
  std::this_thread::sleep_for(2s);  // the coalesced state after the last events
  auto after_ms = latency("s2");
  long rss_after = RssKiB(a_.agent().pid());
  std::string state_text;
  for (auto& r : a_.op().Log())
    if (r.topic == a_.Prefix() + "/state") state_text = r.body.dump();
  auto state = json::parse(state_text);
  std::printf("[relay-hellos] fakes=%d rss_before_kib=%ld rss_after_kib=%ld growth_kib=%ld state_bytes=%zu "
              "listed=%zu tracked=%s ignored=%s dropped_by_loop=%s get_state_ms_before=%lld after=%lld\n",
              fakes, rss_before, rss_after, rss_after - rss_before, state_text.size(), state["sensors"].size(),
              state["sensor_counts"]["tracked"].dump().c_str(), state["sensor_counts"]["ignored_hellos"].dump().c_str(),
              state["sensor_counts"]["dropped_events"].dump().c_str(),
              static_cast<long long>(before_ms), static_cast<long long>(after_ms));
  EXPECT_LT(rss_after - rss_before, 8 * 1024);
  EXPECT_LT(state_text.size(), 64u * 1024);
  EXPECT_EQ(state["sensors"].size(), 256u);
  EXPECT_EQ(state["sensor_counts"]["tracked"], 1024);
  EXPECT_GT(state["sensor_counts"]["ignored_hellos"].get<std::int64_t>(), 0);
  // Hellos the loop's queue had no room for are counted in P/state, not only in the log.
  ASSERT_TRUE(state["sensor_counts"].contains("dropped_events")) << state["sensor_counts"].dump();
  EXPECT_LE(state["sensor_counts"]["tracked"].get<std::int64_t>() +
                state["sensor_counts"]["ignored_hellos"].get<std::int64_t>() +
                state["sensor_counts"]["dropped_events"].get<std::int64_t>(),
            fakes);
  EXPECT_EQ(a_.SchemaProblems(), "");
}
