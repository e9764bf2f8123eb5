// The MQTT relay end to end: real mosquitto, the real gantry-relay-mqtt.so, the engine with a
// real store, and gantry-sensor-sim processes as the sensors (docs/protocol.md).
#include <gtest/gtest.h>

#include "relay_harness.hpp"
#include "wire.hpp"
#include "tools/mosquitto.hpp"

using namespace gantry;
using namespace gantry::test;
using namespace std::chrono_literals;

namespace {

const std::string kDevice = "gw-0001";
const std::string kBase = "gantry/" + kDevice + "/sensors/";

std::string SensorId(int n) {
  char id[32];
  std::snprintf(id, sizeof id, "sensor-%04d", n);
  return id;
}

class RelaySystem : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(Sim()))
      FAIL() << "gantry-sensor-sim not built at " << Sim();
    if (!std::filesystem::exists(std::filesystem::path(BuildDir()) / "plugins/gantry-relay-mqtt.so"))
      FAIL() << "gantry-relay-mqtt.so not built under " << BuildDir() << "/plugins";
  }

  static std::string Sim() { return BuildDir() + "/gantry-sensor-sim"; }

  std::unique_ptr<RelayHost> Host(int max_concurrent = 8, std::int64_t link_rate_bps = 0,
                                  std::optional<int> coap_port = std::nullopt) {
    RelayHost::Options o;
    o.coap_port = coap_port;
    o.broker_uri = broker_.uri();
    o.data_dir = data_.path();
    o.max_concurrent = max_concurrent;
    o.link_rate_bps = link_rate_bps;
    return std::make_unique<RelayHost>(o);
  }

  Process StartSim(std::vector<std::string> args, const std::string& name) {
    std::vector<std::string> argv = {Sim(), "--broker", broker_.uri(), "--device", kDevice,
                                     "--state-dir", (sims_.path() / "state").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return Process(argv, (sims_.path() / (name + ".log")).string());
  }
  std::string SimLog(const std::string& name) { return Slurp(sims_.path() / (name + ".log")); }
  std::filesystem::path Slot(const std::string& id) { return sims_.path() / "state" / id / "slot.bin"; }

  Mosquitto broker_;
  TempDir data_, sims_, images_;
};

bool HasAll(const std::set<std::string>& got, int first, int count) {
  for (int i = first; i < first + count; ++i)
    if (!got.count(SensorId(i))) return false;
  return true;
}

}  // namespace

TEST_F(RelaySystem, FiftySensorsOfTwoModelsUpdateAndAThirdModelGetsNothing) {
  auto host = Host(8);
  auto th = MakeFirmware(images_.path(), "th-sensor", 5, 48 * 1024 + 17);
  auto hv = MakeFirmware(images_.path(), "hv-sensor", 9, 32 * 1024);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {th, hv}));
  auto a = StartSim({"--model", "th-sensor", "--seq", "1", "--count", "25", "--first", "1",
                     "--exit-when-done", "--quiet"}, "th");
  auto b = StartSim({"--model", "hv-sensor", "--seq", "3", "--count", "25", "--first", "26",
                     "--max-chunk", "512", "--exit-when-done", "--quiet"}, "hv");
  auto c = StartSim({"--model", "zz-sensor", "--seq", "1", "--count", "5", "--first", "51",
                     "--quiet"}, "zz");
  bool done = host->RunUntil([&] {
    return HasAll(host->SensorsWithStatus("SUCCEEDED"), 1, 50) &&
           HasAll(host->SensorsWithStatus("NOT_APPLICABLE"), 51, 5);
  }, 50s);
  ASSERT_TRUE(done) << "succeeded: " << host->SensorsWithStatus("SUCCEEDED").size()
                    << "\nth log:\n" << SimLog("th") << "\nhv log:\n" << SimLog("hv");
  // The rebooted sensors' hellos (new version and seq) follow their final status.
  auto seq_of = [&](int n) {
    for (auto& s : host->engine().SensorsJson())
      if (s["id"] == SensorId(n)) return s["seq"].get<std::int64_t>();
    return std::int64_t{-1};
  };
  EXPECT_TRUE(host->RunUntil([&] {
    for (int i = 1; i <= 50; ++i)
      if (seq_of(i) != (i <= 25 ? 5 : 9)) return false;
    return true;
  }, 10s));
  EXPECT_EQ(a.Wait(10s), 0);
  EXPECT_EQ(b.Wait(10s), 0);
  // Every sensor checked the whole image; check the bytes in its slot independently.
  for (int i = 1; i <= 50; ++i) {
    auto& fw = i <= 25 ? th : hv;
    auto slot = Slurp(Slot(SensorId(i)));
    ASSERT_GE(slot.size(), fw.size) << SensorId(i);
    Spit(sims_.path() / "check.bin", slot.substr(0, fw.size));
    EXPECT_EQ(Sha256Of(sims_.path() / "check.bin"), fw.sha256) << SensorId(i);
  }
  // The third model was never offered anything, and said so once per sensor.
  for (int i = 51; i <= 55; ++i) {
    auto ev = host->EventsOf(SensorId(i));
    ASSERT_EQ(ev.size(), 1u) << SensorId(i);
    EXPECT_EQ(ev[0]["status"], "NOT_APPLICABLE");
    EXPECT_NE(ev[0]["msg"].get<std::string>().find("no firmware for model zz-sensor"),
              std::string::npos);
  }
  auto sensors = host->engine().SensorsJson();
  ASSERT_EQ(sensors.size(), 55u);
  for (auto& s : sensors) {
    int n = std::stoi(s["id"].get<std::string>().substr(7));
    if (n <= 25) EXPECT_EQ(s["seq"], 5) << s.dump();
    else if (n <= 50) EXPECT_EQ(s["seq"], 9) << s.dump();
    else EXPECT_EQ(s["job"]["state"], "NOT_APPLICABLE") << s.dump();
  }
  // Each of the 50 jobs was offered once: jobs are OFFERED → ... → SUCCEEDED exactly once.
  EXPECT_EQ(host->SensorsWithStatus("OFFERED").size(), 50u);
  EXPECT_TRUE(host->SensorsWithStatus("FAILED").empty());
}

TEST_F(RelaySystem, DisconnectedSensorResumesFromItsOffsetResendingAtMostOneWindow) {
  auto host = Host();
  const std::size_t size = 256 * 1024;
  auto fw = MakeFirmware(images_.path(), "th-sensor", 2, size);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
  auto sim = StartSim({"--model", "th-sensor", "--max-chunk", "1024", "--window", "4",
                       "--exit-after-bytes", "100000"}, "first");
  // The simulator cuts itself off after 100000 bytes (no DISCONNECT, like a power cut).
  ASSERT_TRUE(host->RunUntil([&] { return !sim.Running(); }, 30s)) << SimLog("first");
  host->RunUntil([] { return false; }, 300ms);  // let the last status in
  auto before = host->engine().SensorsJson();
  ASSERT_EQ(before[0]["job"]["state"], "DOWNLOADING") << before.dump();
  auto resumed = StartSim({"--model", "th-sensor", "--max-chunk", "1024", "--window", "4",
                           "--exit-when-done"}, "second");
  ASSERT_TRUE(host->RunUntil([&] { return host->SensorsWithStatus("SUCCEEDED").size() == 1; }, 30s))
      << SimLog("second");
  EXPECT_EQ(resumed.Wait(10s), 0);
  EXPECT_NE(SimLog("second").find("resuming job"), std::string::npos) << SimLog("second");
  // One job only, so every byte the plugin served belongs to it.
  auto served = host->Stats()["bytes"].get<std::uint64_t>();
  EXPECT_GE(served, size);
  EXPECT_LE(served - size, 4u * 1024u) << "bytes sent twice exceed one window";
}

TEST_F(RelaySystem, EngineAndPluginTornDownMidRelayResumeEveryOpenJob) {
  const std::size_t size = 512 * 1024;
  auto fw = MakeFirmware(images_.path(), "th-sensor", 2, size);
  std::map<std::string, int> jobs;
  std::uint64_t done_before = 0;
  {
    // 100 KB/s per link: the transfers are surely in the middle when the host goes away.
    auto host = Host(8, 100 * 1024);
    ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
    auto sim = StartSim({"--model", "th-sensor", "--count", "5", "--exit-when-done",
                         "--timeout-ms", "300"}, "sims");
    // Every sensor is at least 10% in (its status says so) when the host goes away.
    ASSERT_TRUE(host->RunUntil([&] {
      auto sensors = host->engine().SensorsJson();
      if (sensors.size() != 5) return false;
      for (auto& s : sensors)
        if (s["job"].is_null() || s["job"]["offset"].get<std::uint64_t>() < size / 10) return false;
      return true;
    }, 30s)) << SimLog("sims");
    for (auto& s : host->engine().SensorsJson()) {
      jobs[s["id"]] = s["job"]["job"];
      done_before += s["job"]["offset"].get<std::uint64_t>();
    }
    host.reset();  // engine and plugin gone, mid-transfer; the simulators keep asking
    auto again = Host(8);
    ASSERT_TRUE(again->engine().SetFirmware("r1", {fw}));
    ASSERT_TRUE(again->RunUntil([&] { return again->SensorsWithStatus("SUCCEEDED").size() == 5; },
                                40s))
        << SimLog("sims") << "\nevents: " << json(again->events).dump()
        << "\nsensors: " << again->engine().SensorsJson().dump();
    EXPECT_EQ(sim.Wait(10s), 0);
    EXPECT_TRUE(again->RunUntil([&] {  // the rebooted sensors' hellos
      for (auto& s : again->engine().SensorsJson())
        if (s["seq"] != 2) return false;
      return true;
    }, 10s));
    // The same jobs carried on (no new offer), and no sensor started again from byte 0.
    EXPECT_TRUE(again->SensorsWithStatus("OFFERED").empty());
    for (auto& s : again->engine().SensorsJson()) {
      EXPECT_EQ(s["job"]["job"], jobs[s["id"]]) << s.dump();
      EXPECT_EQ(s["job"]["state"], "SUCCEEDED");
      EXPECT_EQ(s["seq"], 2);
    }
    // Resumed where each sensor stood: what the new plugin served is what was missing, give or
    // take a window per sensor.
    EXPECT_LE(again->Stats()["bytes"].get<std::uint64_t>(), 5 * size - done_before + 5 * 4096);
  }
}

TEST_F(RelaySystem, SensorAlreadyAtTheOfferedSeqGetsNothing) {
  auto host = Host();
  auto fw = MakeFirmware(images_.path(), "th-sensor", 4, 8192);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
  auto sim = StartSim({"--model", "th-sensor", "--seq", "4"}, "sim");
  ASSERT_TRUE(host->RunUntil([&] { return !host->events.empty(); }, 20s)) << SimLog("sim");
  host->RunUntil([] { return false; }, 500ms);
  ASSERT_EQ(host->events.size(), 1u);
  EXPECT_EQ(host->events[0]["status"], "NOT_APPLICABLE");
  EXPECT_EQ(host->events[0]["sensor"], SensorId(1));
  Probe probe(broker_.uri());
  probe.Subscribe(kBase + SensorId(1) + "/offer");
  auto offer = probe.Next(1s);
  EXPECT_TRUE(offer == nullptr || offer->get_payload_str().empty()) << offer->get_payload_str();
  EXPECT_EQ(host->Stats()["frames"], 0);
}

TEST_F(RelaySystem, RevertingSensorShowsResult8AndIsNotOfferedAgain) {
  auto host = Host();
  auto fw = MakeFirmware(images_.path(), "th-sensor", 3, 20000);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
  auto sim = StartSim({"--model", "th-sensor", "--version", "1.0.0", "--revert",
                       "--exit-when-done"}, "sim");
  ASSERT_TRUE(host->RunUntil([&] { return !host->SensorsWithStatus("FAILED").empty(); }, 30s))
      << SimLog("sim");
  EXPECT_EQ(sim.Wait(10s), 0);
  auto ev = host->EventsOf(SensorId(1));
  EXPECT_EQ(ev.back()["status"], "FAILED");
  EXPECT_EQ(ev.back()["result"], 8);
  host->RunUntil([] { return false; }, 500ms);  // the reverted hello arrives
  auto s = host->engine().SensorsJson()[0];
  EXPECT_EQ(s["version"], "1.0.0");
  EXPECT_EQ(s["job"]["state"], "FAILED");
  EXPECT_EQ(s["job"]["result"], 8);
  // The same image under the same or a new revision is not offered again.
  ASSERT_TRUE(host->engine().SetFirmware("r2", {fw}));
  host->RunUntil([] { return false; }, 300ms);
  EXPECT_EQ(host->SensorsWithStatus("OFFERED").size(), 1u);
  std::size_t offers = 0;
  for (auto& e : host->EventsOf(SensorId(1))) offers += e["status"] == "OFFERED";
  EXPECT_EQ(offers, 1u);
}

TEST_F(RelaySystem, MosquittoRrPullsADataFrameThroughTheResponseTopic) {
  auto host = Host();
  auto fw = MakeFirmware(images_.path(), "th-sensor", 2, 5000);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
  Probe probe(broker_.uri());
  const std::string s = kBase + "rr-1/";
  probe.Subscribe(s + "offer");
  probe.Publish(s + "hello", R"({"model":"th-sensor","version":"1.0","seq":1,"slot":65536,)"
                             R"("max_chunk":256,"window":2,"state":0,"result":0})", 1, true);
  ASSERT_TRUE(host->RunUntil([&] { return !host->SensorsWithStatus("OFFERED").empty(); }, 10s));
  auto offer = probe.Next(5s);
  ASSERT_TRUE(offer);
  auto o = json::parse(offer->get_payload_str());
  int job = o["job"];
  EXPECT_EQ(o["chunk"], 256);
  std::string req = "{\"job\":" + std::to_string(job) + ",\"off\":256,\"len\":256,\"n\":1}";
  auto [rc, out] = Sh("mosquitto_rr -V 5 -N -p " + std::to_string(broker_.port()) + " -t '" + s +
                      "get' -e 'rr/reply' -W 10 -m '" + req + "' 2>/dev/null");
  ASSERT_EQ(rc, 0) << out;
  ASSERT_EQ(out.size(), 16u + 256u);
  auto h = relay::wire::Parse(out);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->job, job);
  EXPECT_EQ(h->offset, 256u);
  EXPECT_EQ(h->len, 256);
  EXPECT_TRUE(h->flags & relay::wire::kFlagCrc);
  EXPECT_FALSE(h->flags & relay::wire::kFlagLast);
  auto image = Slurp(fw.image);
  EXPECT_EQ(out.substr(16), image.substr(256, 256));
  EXPECT_EQ(h->crc, relay::wire::Crc32(image.substr(256, 256)));
}

TEST_F(RelaySystem, MalformedGetHelloAndStatusGetAnErrOrAreDroppedAndNoJobIsHarmed) {
  auto host = Host();
  auto fw = MakeFirmware(images_.path(), "th-sensor", 2, 3000);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
  Probe probe(broker_.uri());
  const std::string s = kBase + SensorId(1) + "/";
  probe.Subscribe(s + "offer");
  probe.Subscribe(s + "err", 0);
  probe.Subscribe(s + "data", 0);
  probe.Publish(s + "hello", R"({"model":"th-sensor","version":"1.0","seq":1,"slot":65536,)"
                             R"("max_chunk":1024,"window":2,"state":0,"result":0})", 1, true);
  ASSERT_TRUE(host->RunUntil([&] { return !host->SensorsWithStatus("OFFERED").empty(); }, 10s));
  auto offer = probe.Next(5s);
  ASSERT_TRUE(offer);
  int job = json::parse(offer->get_payload_str())["job"];
  auto j = std::to_string(job);
  auto expect_err = [&](const std::string& get, const std::string& code) {
    probe.Publish(s + "get", get, 0);
    auto m = probe.Next(5s);
    ASSERT_TRUE(m) << "no answer to " << get;
    ASSERT_EQ(m->get_topic(), s + "err") << get;
    auto e = json::parse(m->get_payload_str());
    EXPECT_EQ(e["code"], code) << get;
  };
  expect_err(R"({"job":)" + j + R"(,"off":3000,"len":1024,"n":1})", "OutOfRange");   // past end
  expect_err(R"({"job":)" + j + R"(,"off":-1,"len":1024,"n":1})", "OutOfRange");     // negative
  expect_err(R"({"job":)" + j + R"(,"off":0,"len":2048,"n":1})", "OutOfRange");      // > chunk
  expect_err(R"({"job":)" + j + R"(,"off":0,"len":1024,"n":0})", "OutOfRange");      // no frames
  expect_err(R"({"job":65000,"off":0,"len":1024,"n":1})", "UnknownJob");
  // Dropped with a log line: not JSON, not an object, missing or non-integer fields.
  for (auto bad : {"nonsense{", "[1,2]", R"({"job":"x","off":0,"len":1,"n":1})", R"({"off":0})"})
    probe.Publish(s + "get", bad, 0);
  // A huge n is capped by the window (2) and by what remains.
  probe.Publish(s + "get", R"({"job":)" + j + R"(,"off":0,"len":1024,"n":1000000})", 0);
  for (int i = 0; i < 2; ++i) {
    auto m = probe.Next(5s);
    ASSERT_TRUE(m);
    ASSERT_EQ(m->get_topic(), s + "data") << m->get_payload_str();
  }
  EXPECT_EQ(probe.Next(500ms), nullptr) << "more frames than the window";
  // Malformed hello and status are dropped; the job is untouched.
  probe.Publish(s + "hello", "{not json", 1, false);
  probe.Publish(s + "hello", R"({"model":"../etc","seq":"x"})", 1, false);
  probe.Publish(s + "status", R"({"job":"abc","state":9})", 1, false);
  probe.Publish(s + "status", "\x01\x02", 1, false);
  host->RunUntil([] { return false; }, 500ms);
  EXPECT_EQ(host->engine().SensorsJson()[0]["job"]["state"], "OFFERED");
  EXPECT_EQ(host->events.size(), 1u);
  // And a real sensor can still finish the job.
  auto sim = StartSim({"--model", "th-sensor", "--exit-when-done"}, "sim");
  ASSERT_TRUE(host->RunUntil([&] { return !host->SensorsWithStatus("SUCCEEDED").empty(); }, 20s))
      << SimLog("sim");
  EXPECT_EQ(host->engine().SensorsJson()[0]["job"]["job"], job);
}

TEST_F(RelaySystem, CoapClientPullsAnImageBlockwiseAndResumesFromABlock) {
  if (std::system("command -v coap-client-notls >/dev/null") != 0)
    FAIL() << "coap-client-notls is not installed (Debian package libcoap3-bin)";
  int port = FreePort();
  auto host = Host(8, 0, port);
  auto fw = MakeFirmware(images_.path(), "th-sensor", 2, 40000 + 123);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
  auto uri = "coap://127.0.0.1:" + std::to_string(port) + "/fw/" + fw.sha256;
  auto whole = sims_.path() / "whole.bin";
  auto [rc, out] = Sh("coap-client-notls -B 20 -b 256 -o '" + whole.string() + "' " + uri);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(Sha256Of(whole), fw.sha256);
  // Resume: a sensor that holds the first 150 blocks asks for block 150, 151, ... itself
  // (coap-client fetches exactly the block it is given a number for).
  auto image = Slurp(fw.image);
  std::string resumed;
  const std::size_t last_block = (image.size() - 1) / 256;
  for (std::size_t block = 150; block <= last_block; ++block) {
    auto part = sims_.path() / ("part-" + std::to_string(block));
    std::tie(rc, out) = Sh("coap-client-notls -B 20 -b " + std::to_string(block) + ",256 -o '" +
                           part.string() + "' " + uri);
    ASSERT_EQ(rc, 0) << out;
    resumed += Slurp(part);
  }
  EXPECT_TRUE(resumed == image.substr(150 * 256))
      << resumed.size() << " B resumed vs " << image.size() - 150 * 256 << " B expected";
  // The ETag names the content (the first 8 bytes of its sha256), so a sensor can tell that
  // the image under a resumed transfer did not change.
  std::tie(rc, out) = Sh("coap-client-notls -v 7 -B 20 -b 256 -o /dev/null " + uri);
  EXPECT_NE(out.find("ETag:0x" + fw.sha256.substr(0, 16)), std::string::npos)
      << out.substr(0, 2000);
  // Images of no current revision are not served.
  std::tie(rc, out) = Sh("coap-client-notls -B 5 coap://127.0.0.1:" + std::to_string(port) +
                         "/fw/" + std::string(64, '0'));
  EXPECT_NE(out.find("4.04"), std::string::npos) << out;
  // A new revision without that image stops serving it.
  auto other = MakeFirmware(images_.path(), "th-sensor", 3, 1000);
  ASSERT_TRUE(host->engine().SetFirmware("r2", {other}));
  std::tie(rc, out) = Sh("coap-client-notls -B 5 " + uri);
  EXPECT_NE(out.find("4.04"), std::string::npos) << out;
}

TEST_F(RelaySystem, ASensorFloodingGetsIsServedAtItsBudgetWhileAnotherProgresses) {
  RelayHost::Options o;
  o.broker_uri = broker_.uri();
  o.data_dir = data_.path();
  o.max_msgs_per_s = 50;
  auto host = std::make_unique<RelayHost>(o);
  auto fw = MakeFirmware(images_.path(), "th-sensor", 5, 16 * 1024);
  ASSERT_TRUE(host->engine().SetFirmware("r1", {fw}));
  // The flooder says hello like a sensor and is offered a job.
  Probe flooder(broker_.uri());
  flooder.Subscribe(kBase + "flood-1/data", 0);
  json hello = {{"model", "th-sensor"}, {"version", "1"}, {"seq", 1}, {"slot", 1 << 20},
                {"max_chunk", 256}, {"window", 1}, {"state", 0}, {"result", 0}};
  flooder.Publish(kBase + "flood-1/hello", hello.dump(), 1, true);
  ASSERT_TRUE(host->RunUntil([&] { return host->SensorsWithStatus("OFFERED").count("flood-1") > 0; }, 20s));
  std::int64_t job = 0;
  for (auto& e : host->EventsOf("flood-1"))
    if (e["status"] == "OFFERED") job = e["job"];
  // 10,000 gets as fast as the client sends them, from another thread, while a well-behaved
  // sensor updates.
  std::atomic<bool> sent{false};
  auto start = std::chrono::steady_clock::now();
  std::thread flood([&] {
    ::mqtt::async_client c(broker_.uri(), "flooder-gets", ::mqtt::create_options(MQTTVERSION_5));
    c.connect(::mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize())->wait();
    std::string get = json({{"job", job}, {"off", 0}, {"len", 256}, {"n", 1}}).dump();
    for (int i = 0; i < 10000; ++i) {
      auto tok = c.publish(kBase + "flood-1/get", get.data(), get.size(), 0, false);
      if (i % 20 == 19) tok->wait();
    }
    c.disconnect()->wait();
    sent = true;
  });
  auto sim = StartSim({"--model", "th-sensor", "--seq", "1", "--count", "1", "--first", "2",
                       "--max-chunk", "256", "--exit-when-done", "--quiet"}, "good");
  bool good_done = host->RunUntil([&] { return host->SensorsWithStatus("SUCCEEDED").count(SensorId(2)) > 0; }, 60s);
  host->RunUntil([&] { return sent.load(); }, 60s);
  flood.join();
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  host->RunUntil([] { return false; }, 1s);  // frames in flight arrive
  int frames = 0;
  while (flooder.Next(200ms)) ++frames;
  auto stats = host->Stats();
  std::printf("[relay-get-flood] gets=10000 seconds=%.1f frames_to_flooder=%d dropped=%s budget=50/s\n",
              seconds, frames, stats["dropped"].dump().c_str());
  EXPECT_TRUE(good_done) << SimLog("good");
  // Served at its budget: one second of burst plus 50 a second, never the 10,000 it asked for.
  EXPECT_LE(frames, static_cast<int>(50 * (seconds + 2)));
  EXPECT_GT(frames, 0);
  EXPECT_GE(stats["dropped"].get<std::int64_t>(), 10000 - static_cast<std::int64_t>(50 * (seconds + 2)));
  EXPECT_EQ(sim.Wait(20s), 0);
}
