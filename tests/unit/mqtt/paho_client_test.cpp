// The Paho adapter against a real mosquitto: what the outbox relies on from Publish().
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <optional>

#include "mqtt/client.hpp"
#include "test_util.hpp"
#include "tools/mosquitto.hpp"

using namespace gantry;
using namespace std::chrono_literals;

namespace {

// Waits for one Publish() outcome.
class Outcome {
 public:
  std::function<void(bool)> Callback() {
    return [this](bool acked) {
      std::lock_guard l(mu_);
      acked_ = acked;
      cv_.notify_all();
    };
  }
  std::optional<bool> Wait(std::chrono::seconds timeout) {
    std::unique_lock l(mu_);
    cv_.wait_for(l, timeout, [this] { return acked_.has_value(); });
    return acked_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<bool> acked_;
};

mqtt::Options ClientOptions(const std::string& uri) {
  mqtt::Options o;
  o.uri = uri;
  o.client_id = "paho-test";
  return o;
}

}  // namespace

// Regression: a message Paho refuses because the connection is down used to lose its
// callback (moved into a listener Paho then dropped), so the outbox never published it again.
TEST(PahoClient, PublishAfterTheBrokerDiedReportsNotAcked) {
  test::Mosquitto broker;
  auto client = mqtt::MakePahoClient(ClientOptions(broker.uri()));
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false, lost = false;
  client->Start({[&] {
                   std::lock_guard l(mu);
                   ready = true;
                   cv.notify_all();
                 },
                 [&](const std::string&) {
                   std::lock_guard l(mu);
                   lost = true;
                   cv.notify_all();
                 },
                 [](mqtt::Message) {}});
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, 20s, [&] { return ready; })) << broker.log();
  }
  Outcome before;
  client->Publish({"t/x", "before", 1, false, "", ""}, before.Callback());
  EXPECT_EQ(before.Wait(10s), std::optional<bool>(true));

  broker.Kill();
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, 20s, [&] { return lost; }));
  }
  Outcome after;
  client->Publish({"t/x", "after", 1, false, "", ""}, after.Callback());
  EXPECT_EQ(after.Wait(10s), std::optional<bool>(false)) << "Publish() never reported its outcome";
  client->Stop();
}

TEST(PahoClient, PublishBeforeAnyConnectionReportsNotAcked) {
  auto client = mqtt::MakePahoClient(ClientOptions("tcp://127.0.0.1:" + std::to_string(test::FreePort())));
  client->Start({[] {}, [](const std::string&) {}, [](mqtt::Message) {}});
  Outcome outcome;
  client->Publish({"t/x", "x", 1, false, "", ""}, outcome.Callback());
  EXPECT_EQ(outcome.Wait(10s), std::optional<bool>(false)) << "Publish() never reported its outcome";
  client->Stop();
}
