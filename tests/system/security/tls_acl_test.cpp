// A TLS-only broker that requires client certificates and maps each certificate's CN to a
// user (use_identity_as_username) whose ACL allows a device only its own topics. The agent
// works inside it; a client of the same CA with another CN cannot command it, read its
// topics or speak for it; a client without a (trusted) certificate cannot connect at all.
#include <gtest/gtest.h>

#include "system/agent/agent_fixture.hpp"
#include "system/swap/swap_fixture.hpp"  // ShQuote
#include "tools/tally.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;

namespace {

// A CA; a server certificate for 127.0.0.1; client certificates (CN = user) for the device,
// the operator and another device of the same fleet; and a certificate with the device's CN
// from a CA the broker does not trust. Made with the openssl command line.
struct Pki {
  TempDir dir;
  std::string p(const std::string& f) const { return (dir.path() / f).string(); }
  Pki() {
    std::string script =
        "set -e; cd " + dir.path().string() + ";"
        "gen() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.csr -subj /CN=$2; };"
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=gantry-test-ca;"
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue-ca.key -out rogue-ca.crt -days 2 -subj /CN=rogue-ca;"
        "gen server 127.0.0.1; printf 'subjectAltName=IP:127.0.0.1' > san.ext;"
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext;"
        "for c in gw-test operator gw-other s-victim s-rogue; do gen $c $c;"
        "  openssl x509 -req -in $c.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $c.crt -days 2; done;"
        "gen forged gw-test;"
        "openssl x509 -req -in forged.csr -CA rogue-ca.crt -CAkey rogue-ca.key -CAcreateserial -out forged.crt -days 2;";
    auto [rc, out] = Sh("(" + script + ")");
    if (rc != 0) throw std::runtime_error("making test certificates failed: " + out);
    // The device reads its command topics and writes its status topics; its relay plugin
    // (same certificate, client id gw-test-relay) owns gantry/gw-test/sensors/# (docs/protocol.md).
    Spit(p("acl"),
         "user gw-test\n"
         "topic read gantry/gw-test/cmd\n"
         "topic read gantry/group/lab/cmd\n"
         "topic write gantry/gw-test/reply\n"
         "topic write gantry/gw-test/progress\n"
         "topic write gantry/gw-test/state\n"
         "topic write gantry/gw-test/online\n"
         "topic readwrite gantry/gw-test/sensors/#\n"
         "\n"
         "user operator\n"
         "topic write gantry/+/cmd\n"
         "topic write gantry/group/+/cmd\n"
         "topic read gantry/#\n"
         "\n"
         "user gw-other\n"
         "topic read gantry/gw-other/cmd\n"
         "topic read gantry/group/lab/cmd\n"
         "topic write gantry/gw-other/reply\n"
         "topic write gantry/gw-other/progress\n"
         "topic write gantry/gw-other/state\n"
         "topic write gantry/gw-other/online\n"
         "topic readwrite gantry/gw-other/sensors/#\n");
  }
  std::string BrokerConfig() const {
    return "cafile " + p("ca.crt") + "\ncertfile " + p("server.crt") + "\nkeyfile " + p("server.key") +
           "\nrequire_certificate true\nuse_identity_as_username true\nacl_file " + p("acl") + "\n";
  }
  // mosquitto_pub/_sub arguments for a TLS connection with this client certificate ("" = none).
  std::string Client(int port, const std::string& cert) const {
    std::string a = "-h 127.0.0.1 -p " + std::to_string(port) + " -V 5 --cafile " + ShQuote(p("ca.crt"));
    if (!cert.empty()) a += " --cert " + ShQuote(p(cert + ".crt")) + " --key " + ShQuote(p(cert + ".key"));
    return a;
  }
};

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The ACL docs/relay.md tells operators to install (the code block after "# /etc/mosquitto/acl"),
// so this test fails when that block stops confining sensors.
std::string DocumentedRelayAcl() {
  std::string doc = Slurp(SourceDir() + "/docs/relay.md");
  auto start = doc.find("# /etc/mosquitto/acl\n");
  if (start == std::string::npos) throw std::runtime_error("docs/relay.md has no '# /etc/mosquitto/acl' block");
  auto end = doc.find("```", start);
  return doc.substr(start, end - start);
}

}  // namespace

TEST(SecurityTls, DeviceConfinedToItsTopicsAndOthersCannotCommandIt) {
  Tally tally{"security-tls-acl"};
  Pki pki;
  AgentFixture a(5, pki.BrokerConfig());
  a.operator_tls = Tls{pki.p("ca.crt"), pki.p("operator.crt"), pki.p("operator.key")};
  a.config["mqtt"]["uri"] = a.broker().uri("ssl");
  a.config["mqtt"]["ca_file"] = pki.p("ca.crt");
  a.config["mqtt"]["cert_file"] = pki.p("gw-test.crt");
  a.config["mqtt"]["key_file"] = pki.p("gw-test.key");
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog() << a.broker().log();
  const int port = a.broker().port();

  // The agent works within its ACL: an update goes to DONE, its state is readable.
  std::string fw1(20000, '1');
  auto id1 = a.PutBlock(fw1);
  a.Send({{"id", "op-1"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("t1", 1, FirmwareState({{"m1", id1}}), {{id1, fw1}}))}});
  ASSERT_EQ(a.WaitFinal("op-1")["status"], "DONE") << a.AgentLog();
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return a.LastState().value("rev", json()) == "t1"; }))
      << a.AgentLog();

  // Another device of the same CA: a correctly signed update, addressed to gw-test, sent to
  // gw-test's command topic and to its group; spoofed status on gw-test's topics.
  std::string fw2(20000, '2');
  auto id2 = a.PutBlock(fw2);
  json rogue_update = {{"id", "rogue-1"}, {"op", "update"},
                       {"revision", a.Sign(a.Revision("rogue", 2, FirmwareState({{"m1", id2}}), {{id2, fw2}}))}};
  Spit(a.dir() / "rogue-1.json", rogue_update.dump());
  json rogue_group = rogue_update;
  rogue_group["id"] = "rogue-2";
  Spit(a.dir() / "rogue-2.json", rogue_group.dump());
  json get_state = {{"id", "rogue-3"}, {"op", "get-state"}};
  std::string other = pki.Client(port, "gw-other");
  std::vector<std::pair<std::string, std::string>> publishes = {
      {"-t gantry/gw-test/cmd -f " + ShQuote((a.dir() / "rogue-1.json").string()), "command"},
      {"-t gantry/group/lab/cmd -f " + ShQuote((a.dir() / "rogue-2.json").string()), "group command"},
      {"-t gantry/gw-test/cmd -m " + ShQuote(get_state.dump()), "get-state"},
      {"-r -t gantry/gw-test/state -m '{\"rev\":\"spoofed\",\"seq\":99}'", "spoofed state"},
      {"-t gantry/gw-test/reply -m '{\"id\":\"op-2\",\"ok\":true,\"spoofed\":true}'", "spoofed reply"},
      {"-r -t gantry/gw-test/online -m '{\"online\":false,\"spoofed\":true}'", "spoofed online"},
  };
  for (auto& [args, what] : publishes) {
    auto [rc, out] = Sh("mosquitto_pub " + other + " -i gw-other -q 1 " + args);
    ++tally.inputs;
    std::printf("gw-other publishes a %s: mosquitto_pub exit %d %s\n", what.c_str(), rc, out.c_str());
  }

  // Clients that must not get in at all, each trying to command the device.
  json no_cert_cmd = {{"id", "rogue-4"}, {"op", "get-state"}};
  struct Outsider {
    std::string args, what;
  };
  std::vector<Outsider> outsiders = {
      {pki.Client(port, ""), "TLS without a client certificate"},
      {"-h 127.0.0.1 -p " + std::to_string(port) + " -V 5", "plain TCP on the TLS port"},
      {"-h 127.0.0.1 -p " + std::to_string(port) + " -V 5 --cafile " + ShQuote(pki.p("ca.crt")) + " --cert " +
           ShQuote(pki.p("forged.crt")) + " --key " + ShQuote(pki.p("forged.key")),
       "a certificate with CN gw-test from an untrusted CA"},
  };
  for (auto& o : outsiders) {
    auto [rc, out] = Sh("timeout 10 mosquitto_pub " + o.args + " -i outsider -q 1 -t gantry/gw-test/cmd -m " +
                        ShQuote(no_cert_cmd.dump()));
    ++tally.inputs;
    EXPECT_NE(rc, 0) << o.what << " connected: " << out;
    if (rc == 0) ++tally.lost;
  }

  // The operator's own command after all of the above is answered: by then the broker has
  // routed (or dropped) everything sent before it. A few seconds more for stragglers.
  a.Send({{"id", "op-probe"}, {"op", "get-state"}});
  ASSERT_TRUE(a.WaitReply("op-probe").value("ok", false)) << a.AgentLog();
  std::this_thread::sleep_for(std::chrono::seconds(3));

  // Nothing from outside reached the agent, and nothing the others sent reached the operator.
  for (std::string id : {"rogue-1", "rogue-2", "rogue-3", "rogue-4"}) {
    auto replies = a.Replies(id);
    auto progress = a.Progress(id);
    EXPECT_TRUE(replies.empty() && progress.empty()) << id << " was handled by the agent";
    EXPECT_FALSE(Contains(a.AgentLog(), id)) << id << " reached the agent:\n" << a.AgentLog();
    if (!replies.empty() || !progress.empty() || Contains(a.AgentLog(), id)) ++tally.lost;
  }
  for (auto& r : a.op().Log()) {
    bool spoofed = r.body.is_object() && (r.body.contains("spoofed") || r.body.value("rev", json()) == "spoofed");
    EXPECT_FALSE(spoofed) << "the operator received a spoofed " << r.topic << ": " << r.body.dump();
    if (spoofed) ++tally.lost;
  }

  // gw-other cannot read gw-test's topics; the same subscription with the operator's
  // certificate does see gw-test's retained state (so the probe could see something).
  auto [sub_rc, sub_out] = Sh("timeout 10 mosquitto_sub " + other + " -i gw-other-reader -v -W 3 -t 'gantry/gw-test/#'");
  ++tally.inputs;
  EXPECT_FALSE(Contains(sub_out, "gantry/gw-test/")) << "gw-other read gw-test's topics:\n" << sub_out;
  if (Contains(sub_out, "gantry/gw-test/")) ++tally.lost;
  auto [op_rc, op_out] = Sh("timeout 10 mosquitto_sub " + pki.Client(port, "operator") +
                            " -i operator-reader -v -W 3 -t 'gantry/gw-test/state'");
  EXPECT_TRUE(Contains(op_out, "gantry/gw-test/state")) << "the operator cannot read gw-test's state:\n" << op_out;

  // The device still takes the operator's commands; seq 2 is free, so rogue-1 never ran.
  a.Send({{"id", "op-2"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("t2", 2, FirmwareState({{"m1", id2}}), {{id2, fw2}}))}});
  EXPECT_EQ(a.WaitFinal("op-2")["status"], "DONE") << a.AgentLog();
  EXPECT_FALSE(Contains(a.AgentLog(), "subscription refused")) << a.AgentLog();
  EXPECT_EQ(a.SchemaProblems(), "");
  EXPECT_EQ(tally.lost, 0);
  tally.Print();
}

// docs/relay.md's ACL on a TLS broker where each certificate's CN is the username: a sensor
// (CN = its sensor id) cannot speak for another sensor of the same gateway or read its offer,
// while the same message on its own topics is acted on; the gateway's relay works inside it.
TEST(SecurityTls, SensorsSpeakOnlyForThemselvesUnderTheDocumentedRelayAcl) {
  Tally tally{"security-relay-acl"};
  Pki pki;
  std::string acl = DocumentedRelayAcl() + "\nuser operator\ntopic readwrite gantry/#\n";
  Spit(pki.p("relay.acl"), acl);
  std::string broker_config = pki.BrokerConfig();
  broker_config.replace(broker_config.find(pki.p("acl")), pki.p("acl").size(), pki.p("relay.acl"));
  AgentFixture a(5, broker_config);
  a.operator_tls = Tls{pki.p("ca.crt"), pki.p("operator.crt"), pki.p("operator.key")};
  a.config["mqtt"]["uri"] = a.broker().uri("ssl");
  a.config["mqtt"]["ca_file"] = pki.p("ca.crt");
  a.config["mqtt"]["cert_file"] = pki.p("gw-test.crt");
  a.config["mqtt"]["key_file"] = pki.p("gw-test.key");
  a.config["relay"] = {{"transports", {"mqtt"}}, {"job_timeout_s", 600}};
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog() << a.broker().log();
  const int port = a.broker().port();

  std::string image(16 * 1024, '\0');
  for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<char>(i * 131 % 251);
  auto fw = a.PutBlock(image);
  a.Send({{"id", "c1"}, {"op", "update"},
          {"revision", a.Sign(a.Revision("r1", 1, FirmwareState({{"th", fw}}), {{fw, image}}))}});
  ASSERT_EQ(a.WaitFinal("c1")["status"], "DONE") << a.AgentLog();

  auto sensor_events = [&](const std::string& sensor) {
    std::vector<json> out;
    for (auto& r : a.op().Log())
      if (r.topic == a.Prefix() + "/progress" && r.body.is_object() && r.body.value("sensor", "") == sensor)
        out.push_back(r.body);
    return out;
  };
  auto has_status = [&](const std::string& sensor, const std::string& status) {
    for (auto& e : sensor_events(sensor))
      if (e.value("status", "") == status) return true;
    return false;
  };
  auto pub = [&](const std::string& cert, const std::string& topic, const json& body, bool retain) {
    auto [rc, out] = Sh("timeout 10 mosquitto_pub " + pki.Client(port, cert) + " -i " + cert + " -q 1 " +
                        (retain ? "-r " : "") + "-t " + ShQuote(topic) + " -m " + ShQuote(body.dump()) + " 2>&1");
    ++tally.inputs;
    return std::pair{rc, out};
  };
  json hello = {{"model", "th"}, {"version", "0.9.0"}, {"seq", 0}, {"slot", 1 << 20},
                {"max_chunk", 256}, {"window", 4}, {"state", 0}, {"result", 0}};
  const std::string victim = a.Prefix() + "/sensors/s-victim";
  const std::string rogue = a.Prefix() + "/sensors/s-rogue";

  // The victim says hello and is offered the image; it reads its own offer.
  auto [hrc, hout] = pub("s-victim", victim + "/hello", hello, true);
  ASSERT_EQ(hrc, 0) << hout;
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return has_status("s-victim", "OFFERED"); }, std::chrono::seconds(30)))
      << a.AgentLog();
  auto [orc, offer_out] = Sh("timeout 10 mosquitto_sub " + pki.Client(port, "s-victim") +
                             " -i s-victim-reader -C 1 -W 5 -t " + ShQuote(victim + "/offer"));
  json offer = json::parse(offer_out, nullptr, false);
  ASSERT_TRUE(offer.is_object() && offer.contains("job")) << "the victim cannot read its offer: " << offer_out;

  // The rogue, a sensor of the same fleet, cannot read that offer...
  auto [src, spied] = Sh("timeout 10 mosquitto_sub " + pki.Client(port, "s-rogue") + " -i s-rogue-reader -v -W 3 -t " +
                         ShQuote(victim + "/#"));
  ++tally.inputs;
  EXPECT_FALSE(Contains(spied, victim)) << "s-rogue read s-victim's topics:\n" << spied;
  if (Contains(spied, victim)) ++tally.lost;
  // ...nor, knowing the job id, report "reverted" (result 8, which blocks the image for the
  // victim for good) or a fresh hello in the victim's name.
  json reverted = {{"job", offer["job"]}, {"state", 0}, {"result", 8}};
  auto [rrc, rout] = pub("s-rogue", victim + "/status", reverted, true);
  std::printf("s-rogue publishes s-victim's status: mosquitto_pub exit %d %s\n", rrc, rout.c_str());
  json downgrade = hello;
  downgrade["model"] = "other";
  pub("s-rogue", victim + "/hello", downgrade, true);
  // Its own hello goes through (after the spoofs, on the same broker: the agent has seen
  // whatever of them the broker passed on by the time it offers to the rogue).
  auto [own_rc, own_out] = pub("s-rogue", rogue + "/hello", hello, true);
  ASSERT_EQ(own_rc, 0) << own_out;
  ASSERT_TRUE(a.op().WaitFor([&](auto&) { return has_status("s-rogue", "OFFERED"); }, std::chrono::seconds(30)))
      << a.AgentLog() << a.broker().log();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  bool harmed = has_status("s-victim", "FAILED") || has_status("s-victim", "NOT_APPLICABLE") ||
                has_status("s-victim", "CANCELLED");
  std::string seen;
  for (auto& e : sensor_events("s-victim")) seen += e.dump() + "\n";
  EXPECT_FALSE(harmed) << "s-rogue's messages reached the victim's job:\n" << seen;
  if (harmed) ++tally.lost;

  // The same "reverted" from the victim itself is acted on: the spoof was refused by the
  // broker, not ignored by the agent for being malformed.
  auto [vrc, vout] = pub("s-victim", victim + "/status", reverted, true);
  ASSERT_EQ(vrc, 0) << vout;
  EXPECT_TRUE(a.op().WaitFor([&](auto&) { return has_status("s-victim", "FAILED"); }, std::chrono::seconds(30)))
      << "the victim's own status was not acted on:\n" << a.AgentLog();
  // The relay used the device's one connection and identity throughout.
  EXPECT_FALSE(Contains(a.AgentLog(), "subscription refused")) << a.AgentLog();
  EXPECT_FALSE(Contains(a.broker().log(), "gw-test-relay")) << a.broker().log();
  EXPECT_EQ(a.SchemaProblems(), "");
  EXPECT_EQ(tally.lost, 0);
  tally.Print();
}
