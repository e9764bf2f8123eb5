#include "dashboard/server.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <sys/random.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "dashboard/fleet.hpp"

namespace gantry::dashboard {
namespace {

constexpr const char* kLog = "dashboard";
using json = nlohmann::json;

// Each open event stream holds one worker thread; the rest serve files and API calls.
constexpr int kWorkers = 40;
constexpr int kMaxStreams = 32;
constexpr std::size_t kBatchesKept = 32;  // a stream further behind gets a fresh snapshot
constexpr auto kKeepalive = std::chrono::seconds(15);

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool SameToken(const std::string& a, const std::string& b) {
  // Constant time in the content: a guess learns nothing from how long the answer took.
  unsigned char diff = a.size() != b.size();
  for (std::size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return diff == 0 && !b.empty();
}

std::string SseEvent(const char* name, const std::string& data) {
  return std::string("event: ") + name + "\ndata: " + data + "\n\n";
}

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void Refuse(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  Reply(res, status, {{"ok", false}, {"error", {{"code", code}, {"message", message}}}});
}

}  // namespace

Expected<std::pair<std::string, int>> ParseListen(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return Fail("usage", "--listen " + text + ": expected HOST:PORT, e.g. 127.0.0.1:8080");
  std::string host = text.substr(0, colon), port_text = text.substr(colon + 1);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, host.c_str(), &a4) != 1 && inet_pton(AF_INET6, host.c_str(), &a6) != 1)
    return Fail("usage", "--listen " + text + ": " + host + " is not an IP address");
  int port = -1;
  if (!port_text.empty() && port_text.size() <= 5 &&
      port_text.find_first_not_of("0123456789") == std::string::npos)
    port = std::stoi(port_text);
  if (port < 0 || port > 65535) return Fail("usage", "--listen " + text + ": bad port \"" + port_text + "\"");
  return std::pair{host, port};
}

bool IsLoopback(const std::string& host) {
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  return inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

std::optional<std::filesystem::path> FindWww(const std::filesystem::path& exe) {
  auto dir = exe.parent_path();
  for (auto candidate : {dir / "share/gantry/dashboard", dir / "../share/gantry/dashboard"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate / "index.html", ec))
      return std::filesystem::weakly_canonical(candidate, ec);
  }
  return std::nullopt;
}

Expected<std::string> RandomToken() {
  std::uint8_t bytes[32];
  if (getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes))
    return Fail("io", "getrandom failed");
  return ToHex(bytes, sizeof bytes);
}

struct Server::Impl {
  explicit Impl(Options o) : options(std::move(o)), fleet(options.root), loopback(IsLoopback(options.host)) {}

  Options options;
  httplib::Server http;
  std::unique_ptr<mqtt::Client> client;
  std::thread listener, batcher;

  // mu guards the fleet, the batches and the broker flag; cv wakes the streams and batcher.
  std::mutex mu;
  std::condition_variable cv;
  Fleet fleet;
  std::deque<std::pair<std::uint64_t, std::string>> batches;  // (seq, delta event)
  std::uint64_t batch_seq = 0;
  bool broker_connected = false, broker_changed = false, stopping = false;
  std::atomic<int> streams{0};
  const bool loopback;
  int port = 0;

  json Broker() const { return {{"connected", broker_connected}, {"uri", options.mqtt.uri}}; }

  // A page loaded from a name that resolves to loopback but is not ours (DNS rebinding)
  // must not read the fleet: on loopback only the loopback host names are served.
  bool HostAllowed(const httplib::Request& req) const {
    if (!loopback) return true;
    std::string host = req.get_header_value("Host");
    auto colon = host.rfind(':');
    if (colon != std::string::npos && host.find(']', colon) == std::string::npos) host = host.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return host == "localhost" || IsLoopback(host);
  }

  static std::string RequestToken(const httplib::Request& req) {
    std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) return auth.substr(7);
    // EventSource cannot set headers: the stream takes the token as a query parameter.
    return req.get_param_value("token");
  }

  bool CanView(const httplib::Request& req) const {
    return !options.view_token || SameToken(RequestToken(req), *options.view_token);
  }

  void OnMessage(mqtt::Message m) {
    std::lock_guard l(mu);
    fleet.Apply(m.topic, m.payload, NowMs());
  }

  void SetBroker(bool connected) {
    std::lock_guard l(mu);
    broker_connected = connected;
    broker_changed = true;
  }

  // Every batch interval: what changed becomes one delta event for every stream.
  void BatchLoop() {
    std::unique_lock l(mu);
    while (!stopping) {
      cv.wait_for(l, options.batch_interval, [this] { return stopping; });
      if (stopping) break;
      auto changes = fleet.TakeChanges();
      if (!changes && !broker_changed) continue;
      if (!changes) changes = json{{"devices", json::array()}, {"rollouts", json::array()}};
      (*changes)["broker"] = Broker();
      (*changes)["sent_ms"] = NowMs();
      broker_changed = false;
      batches.emplace_back(++batch_seq, SseEvent("delta", Dump(*changes)));
      while (batches.size() > kBatchesKept) batches.pop_front();
      cv.notify_all();
    }
  }

  std::string SnapshotEvent() {  // mu held
    json snap = fleet.Snapshot();
    snap["broker"] = Broker();
    snap["sent_ms"] = NowMs();
    return SseEvent("snapshot", Dump(snap));
  }

  // One call per chunk of a stream: the snapshot first, then every batch as it comes.
  bool Pump(std::uint64_t& seen, bool& started, httplib::DataSink& sink) {
    std::string out;
    {
      std::unique_lock l(mu);
      if (!started) {
        started = true;
        seen = batch_seq;
        out = "retry: 2000\n\n" + SnapshotEvent();
      } else {
        cv.wait_for(l, kKeepalive, [&] { return stopping || batch_seq != seen; });
        if (stopping) {
          l.unlock();
          sink.done();
          return true;
        }
        if (batch_seq == seen) {
          out = ": keepalive\n\n";
        } else if (batches.empty() || batches.front().first > seen + 1) {
          out = SnapshotEvent();  // this browser fell behind the batches kept
        } else {
          for (auto& [seq, text] : batches)
            if (seq > seen) out += text;
        }
        seen = batch_seq;
      }
    }
    return sink.write(out.data(), out.size());
  }

  void Routes() {
    http.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
    http.set_keep_alive_timeout(2);
    http.set_read_timeout(10);
    http.set_write_timeout(10);
    http.set_payload_max_length(64 * 1024);
    // The page runs only its own files: even if text from a device ever reached the DOM as
    // markup, no inline script or foreign source would run.
    http.set_default_headers({{"Content-Security-Policy",
                               "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
                              {"X-Content-Type-Options", "nosniff"},
                              {"Referrer-Policy", "no-referrer"},
                              {"Cache-Control", "no-store"}});
    http.set_file_extension_and_mimetype_mapping("js", "text/javascript; charset=utf-8");
    http.set_file_extension_and_mimetype_mapping("css", "text/css; charset=utf-8");
    http.set_file_extension_and_mimetype_mapping("html", "text/html; charset=utf-8");

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (HostAllowed(req)) return httplib::Server::HandlerResponse::Unhandled;
      Refuse(res, 403, "bad_host", "this dashboard answers only to loopback host names");
      return httplib::Server::HandlerResponse::Handled;
    });

    http.Get("/api/info", [this](const httplib::Request&, httplib::Response& res) {
      Reply(res, 200, {{"root", options.root}, {"view_token", options.view_token.has_value()},
                       {"actions", static_cast<bool>(options.act)}, {"batch_ms", options.batch_interval.count()}});
    });

    http.Get("/api/events", [this](const httplib::Request& req, httplib::Response& res) {
      if (!CanView(req)) return Refuse(res, 401, "unauthorized", "a valid token is needed");
      if (++streams > kMaxStreams) {
        --streams;
        return Refuse(res, 503, "busy", "too many open dashboards");
      }
      auto seen = std::make_shared<std::uint64_t>(0);
      auto started = std::make_shared<bool>(false);
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, seen, started](std::size_t, httplib::DataSink& sink) { return Pump(*seen, *started, sink); },
          [this](bool) { --streams; });
    });

    http.Get(R"(/api/devices/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (!CanView(req)) return Refuse(res, 401, "unauthorized", "a valid token is needed");
      std::optional<json> details;
      {
        std::lock_guard l(mu);
        details = fleet.DeviceDetails(req.matches[1]);
      }
      if (!details) return Refuse(res, 404, "not_found", "no such device");
      Reply(res, 200, *details);
    });

    http.Post(R"(/api/rollouts/([^/]+)/(pause|resume|abort))", [this](const httplib::Request& req,
                                                                      httplib::Response& res) {
      if (!SameToken(RequestToken(req), options.action_token))
        return Refuse(res, 401, "unauthorized", "rollout actions need the dashboard's token");
      if (!options.act) return Refuse(res, 501, "unsupported", "this dashboard cannot act on rollouts");
      std::string name = req.matches[1], action = req.matches[2];
      auto r = options.act(name, action);
      if (!r) {
        log::Warn(kLog, action + " " + name + ": " + r.error().String());
        return Refuse(res, r.error().code == "not_found" ? 404 : 400, r.error().code, r.error().message);
      }
      log::Info(kLog, action + " requested for rollout " + name);
      Reply(res, 200, {{"ok", true}});
    });

    // Static files; "/" serves index.html.
    http.set_mount_point("/", options.www.string());
  }
};

Server::Server(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() { Stop(); }

Expected<int> Server::Start() {
  auto& m = *impl_;
  m.Routes();
  if (m.options.port == 0) {
    m.port = m.http.bind_to_any_port(m.options.host);
    if (m.port < 0) return Fail("io", "cannot bind " + m.options.host);
  } else {
    if (!m.http.bind_to_port(m.options.host, m.options.port))
      return Fail("io", "cannot listen on " + m.options.host + ":" + std::to_string(m.options.port) +
                            " (in use? pick another --listen)");
    m.port = m.options.port;
  }
  auto mo = m.options.mqtt;
  mo.subscriptions = m.fleet.Subscriptions();
  mo.clean_session = true;
  m.client = mqtt::MakePahoClient(mo);
  m.client->Start({[&m] {
                     log::Info(kLog, "subscribed on " + m.options.mqtt.uri);
                     m.SetBroker(true);
                   },
                   [&m](const std::string& cause) {
                     log::Warn(kLog, "broker connection lost: " + cause);
                     m.SetBroker(false);
                   },
                   [&m](mqtt::Message msg) { m.OnMessage(std::move(msg)); }});
  m.batcher = std::thread([&m] { m.BatchLoop(); });
  m.listener = std::thread([&m] { m.http.listen_after_bind(); });
  return m.port;
}

void Server::Stop() {
  auto& m = *impl_;
  {
    std::lock_guard l(m.mu);
    if (m.stopping) return;
    m.stopping = true;
    m.cv.notify_all();
  }
  if (m.client) m.client->Stop();
  m.http.stop();
  if (m.listener.joinable()) m.listener.join();
  if (m.batcher.joinable()) m.batcher.join();
}

}  // namespace gantry::dashboard
