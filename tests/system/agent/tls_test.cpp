// TLS with client certificates: mosquitto with require_certificate true.
#include <gtest/gtest.h>

#include "agent_fixture.hpp"

using namespace gantry;
using namespace gantry::test;
using nlohmann::json;

namespace {

// A CA, a server certificate for 127.0.0.1, a client certificate from that CA, and a client
// certificate from an unrelated CA, made with the openssl command line.
struct Pki {
  TempDir dir;
  std::string p(const std::string& f) const { return (dir.path() / f).string(); }
  Pki() {
    std::string d = dir.path().string();
    std::string script =
        "set -e; cd " + d + ";"
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=gantry-test-ca;"
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue-ca.key -out rogue-ca.crt -days 2 -subj /CN=rogue-ca;"
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1;"
        "printf 'subjectAltName=IP:127.0.0.1' > san.ext;"
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext;"
        "for c in gw-test operator; do openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $c.key -out $c.csr -subj /CN=$c;"
        "  openssl x509 -req -in $c.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $c.crt -days 2; done;"
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue.key -out rogue.csr -subj /CN=gw-test;"
        "openssl x509 -req -in rogue.csr -CA rogue-ca.crt -CAkey rogue-ca.key -CAcreateserial -out rogue.crt -days 2;";
    auto [rc, out] = Sh(script);
    if (rc != 0) throw std::runtime_error("making test certificates failed: " + out);
  }
  std::string BrokerConfig() const {
    return "cafile " + p("ca.crt") + "\ncertfile " + p("server.crt") + "\nkeyfile " + p("server.key") +
           "\nrequire_certificate true\n";
  }
};

}  // namespace

TEST(AgentTls, ClientCertificateAcceptedAndUpdateCompletes) {
  Pki pki;
  AgentFixture a(5, pki.BrokerConfig());
  a.operator_tls = Tls{pki.p("ca.crt"), pki.p("operator.crt"), pki.p("operator.key")};
  a.config["mqtt"]["uri"] = a.broker().uri("ssl");
  a.config["mqtt"]["ca_file"] = pki.p("ca.crt");
  a.config["mqtt"]["cert_file"] = pki.p("gw-test.crt");
  a.config["mqtt"]["key_file"] = pki.p("gw-test.key");
  a.StartAgent();
  ASSERT_TRUE(a.WaitOnline()) << a.AgentLog() << a.broker().log();
  std::string fw(10000, 't');
  auto id = a.PutBlock(fw);
  a.Send({{"id", "tls1"}, {"op", "update"}, {"revision", a.Sign(a.Revision("t1", 1, FirmwareState({{"m1", id}}), {{id, fw}}))}});
  EXPECT_EQ(a.WaitFinal("tls1")["status"], "DONE") << a.AgentLog();
}

TEST(AgentTls, WrongClientCertificateIsRefused) {
  Pki pki;
  AgentFixture a(5, pki.BrokerConfig());
  a.operator_tls = Tls{pki.p("ca.crt"), pki.p("operator.crt"), pki.p("operator.key")};
  a.config["mqtt"]["uri"] = a.broker().uri("ssl");
  a.config["mqtt"]["ca_file"] = pki.p("ca.crt");
  a.config["mqtt"]["cert_file"] = pki.p("rogue.crt");  // signed by a CA the broker does not trust
  a.config["mqtt"]["key_file"] = pki.p("rogue.key");
  a.StartAgent();
  // The operator (valid certificate) is connected; the agent must never come online.
  EXPECT_FALSE(a.WaitOnline(std::chrono::seconds(8))) << a.AgentLog();
  EXPECT_TRUE(a.agent().Running()) << "the agent keeps retrying instead of exiting";
  auto log = a.AgentLog();
  EXPECT_NE(log.find("cannot connect"), std::string::npos) << log;
}
