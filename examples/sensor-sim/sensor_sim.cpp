// gantry-sensor-sim: N simulated constrained sensors speaking docs/protocol.md over MQTT.
//
// Each sensor keeps a flash slot (a file) and its progress in <state-dir>/<id>/, so a killed
// and restarted simulator resumes where it stopped. It pulls the offered image window by window
// (sensor-paced), checks every frame's CRC and the whole image's SHA-256, then waits for the
// gateway's update command and "reboots" into the new version (or reverts with --revert).
//
// One Paho connection serves all N sensors; one thread runs them (Paho only queues messages).
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "core/nodelay.hpp"
#include "wire.hpp"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
namespace wire = gantry::relay::wire;

struct Flags {
  std::string broker = "tcp://127.0.0.1:1883", root = "gantry", device = "gw-0001";
  std::string state_dir = "sensor-sim-state", model = "th-sensor", version = "1.0.0";
  std::string prefix = "sensor-";
  int count = 1, first = 1, max_chunk = 1024, window = 4, timeout_ms = 1000;
  std::int64_t seq = 1, slot = 1 << 20, exit_after_bytes = 0;
  double loss = 0;
  bool revert = false, exit_when_done = false, quiet = false;
};

// What survives a restart of the simulator.
struct Persisted {
  std::string version;
  std::int64_t seq = 0, result = 0;
  std::int64_t job = 0, size = 0, off = 0, offer_seq = 0;
  std::string sha256, offer_version;
  bool downloaded = false;
};

std::string Sha256File(const fs::path& path, std::int64_t size) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::ifstream f(path, std::ios::binary);
  std::vector<char> buf(1 << 16);
  std::int64_t left = size;
  while (left > 0 && f) {
    f.read(buf.data(), std::min<std::int64_t>(left, buf.size()));
    auto got = f.gcount();
    if (got <= 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), got);
    left -= got;
  }
  if (left != 0) return "";
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

class Sim;

class Sensor {
 public:
  Sensor(Sim& sim, std::string id);
  const std::string& id() const { return id_; }
  void Start();
  void OnOffer(const std::string& payload);
  void OnData(const std::string& payload);
  void OnErr(const std::string& payload);
  void OnCmd(const std::string& payload);
  void Tick(Clock::time_point now);
  // Updated or reverted, and nothing offered any more.
  bool Settled() const { return !active_ && (p_.result == 1 || p_.result == 8); }

 private:
  std::string Topic(const std::string& leaf) const;
  void Hello();
  void Status(int state, int result);
  void Request();
  void Save() const;
  void WriteWindow() const;
  void Complete();

  Sim& sim_;
  std::string id_;
  fs::path dir_;
  Persisted p_;
  int fd_ = -1;        // the flash slot
  int state_fd_ = -1;  // state.json
  mutable std::size_t saved_size_ = 0;  // its length (see Save)
  // Frames of the current window, written to the slot in one go before the progress that
  // counts them is saved (a write per frame was a tenth of the simulator's system calls).
  mutable std::string window_bytes_;
  mutable std::int64_t window_at_ = 0;
  bool active_ = false;  // an offer we are working on
  std::int64_t chunk_ = 0, window_ = 0;
  // Offsets of the frames the last get asked for and that have not arrived. Frames at other
  // offsets (a get answered twice, a late window) are ignored, so a duplicate never cascades.
  std::set<std::int64_t> expecting_;
  Clock::time_point last_activity_, retry_at_;
  bool retry_pending_ = false;
  // Re-request time-out: --timeout-ms, doubled after each time-out up to 8x, back to the
  // start with the next frame (as a CoAP client backs off): under load, a fixed time-out
  // re-asked for every window that was merely late, and the copies made it later still.
  std::int64_t timeout_ms_ = 0;
  std::int64_t last_status_decile_ = -1;
};

class Sim {
 public:
  explicit Sim(Flags f)
      : flags(std::move(f)),
        // Paho's command queue holds 100 messages by default; N sensors publish in bursts.
        client_(flags.broker,
                "sim-" + flags.prefix + std::to_string(flags.first) + "-" + std::to_string(getpid()),
                mqtt::create_options(MQTTVERSION_3_1_1, 1000000)),
        rng_(std::random_device{}()) {
    for (int i = 0; i < flags.count; ++i) {
      char id[64];
      std::snprintf(id, sizeof id, "%s%04d", flags.prefix.c_str(), flags.first + i);
      sensors_.push_back(std::make_unique<Sensor>(*this, id));
      by_id_[id] = sensors_.back().get();
    }
  }

  int Run() {
    client_.set_connected_handler([this](const std::string&) {
      gantry::DisableNagle(gantry::BrokerPort(flags.broker));
      resubscribe_ = true;
    });
    client_.start_consuming();
    auto opts = mqtt::connect_options_builder()
                    .clean_session(true)
                    .keep_alive_interval(std::chrono::seconds(30))
                    .automatic_reconnect(std::chrono::milliseconds(200), std::chrono::seconds(5))
                    .finalize();
    try {
      client_.connect(opts)->wait_for(std::chrono::seconds(10));
    } catch (const mqtt::exception& e) {
      std::cerr << "sensor-sim: cannot connect to " << flags.broker << ": " << e.what() << "\n";
      return 3;
    }
    if (!client_.is_connected()) {
      std::cerr << "sensor-sim: cannot connect to " << flags.broker << "\n";
      return 3;
    }
    // Messages as they come; the sensors' timers every 20 ms, not after every message (a
    // thousand sensors ticked per frame cost the simulator more CPU than the relay it drives).
    // Paho's thread only reads and queues: handling frames there made it read the socket late.
    constexpr auto kTick = std::chrono::milliseconds(20);
    auto next_tick = Clock::now();
    for (;;) {
      if (resubscribe_.exchange(false)) Subscribe();
      mqtt::const_message_ptr m;
      auto wait = std::max(std::chrono::milliseconds(0),
                           std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - Clock::now()));
      if (client_.try_consume_message_for(&m, wait) && m) Dispatch(*m);
      auto now = Clock::now();
      if (now < next_tick) continue;
      next_tick = now + kTick;
      bool all_settled = true;
      for (auto& s : sensors_) {
        s->Tick(now);
        all_settled = all_settled && s->Settled();
      }
      if (flags.exit_when_done && all_settled) break;
    }
    Report();
    // The last statuses and hellos are what tell the gateway its update landed: they are
    // delivered before the simulator leaves (leaving at once lost the last sensors' reports).
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!client_.get_pending_delivery_tokens().empty() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    client_.disconnect()->wait_for(std::chrono::seconds(2));
    return 0;
  }

  void Publish(const std::string& topic, const std::string& payload, int qos, bool retain) {
    try {
      client_.publish(topic, payload.data(), payload.size(), qos, retain);
    } catch (const mqtt::exception& e) {
      std::cerr << "sensor-sim: publish " << topic << ": " << e.what() << "\n";
    }
  }

  bool Drop() { return flags.loss > 0 && std::uniform_real_distribution<>(0, 100)(rng_) < flags.loss; }

  // Counts received payload bytes; ends the process abruptly (no DISCONNECT, as a power cut
  // would) once --exit-after-bytes is reached, after the sensors saved their progress.
  void Received(std::int64_t bytes, bool duplicate) {
    received_ += bytes;
    if (duplicate) duplicate_ += bytes;
    if (flags.exit_after_bytes > 0 && received_ >= flags.exit_after_bytes) {
      Report();
      std::fflush(nullptr);
      _exit(0);
    }
  }
  void Log(const std::string& line) {
    if (!flags.quiet) std::cerr << line << "\n";
  }

  Flags flags;

 private:
  void Subscribe() {
    auto topics = std::make_shared<mqtt::string_collection>();
    std::vector<int> qos;
    for (auto& s : sensors_) {
      std::string base = flags.root + "/" + flags.device + "/sensors/" + s->id() + "/";
      for (auto [leaf, q] : {std::pair{"offer", 1}, {"data", 0}, {"err", 0}, {"cmd", 1}}) {
        topics->push_back(base + leaf);
        qos.push_back(q);
      }
    }
    try {
      client_.subscribe(topics, qos)->wait_for(std::chrono::seconds(10));
    } catch (const mqtt::exception& e) {
      std::cerr << "sensor-sim: subscribe: " << e.what() << "\n";
      return;
    }
    if (!started_) {
      started_ = true;
      for (auto& s : sensors_) s->Start();
    }
  }

  void Dispatch(const mqtt::message& m) {
    const std::string& topic = m.get_topic();
    auto leaf_at = topic.rfind('/');
    auto id_at = topic.rfind('/', leaf_at - 1);
    if (leaf_at == std::string::npos || id_at == std::string::npos) return;
    auto it = by_id_.find(topic.substr(id_at + 1, leaf_at - id_at - 1));
    if (it == by_id_.end()) return;
    std::string leaf = topic.substr(leaf_at + 1);
    const std::string& payload = m.get_payload_ref().str();
    if (leaf == "offer") it->second->OnOffer(payload);
    else if (leaf == "data") it->second->OnData(payload);
    else if (leaf == "err") it->second->OnErr(payload);
    else if (leaf == "cmd") it->second->OnCmd(payload);
  }

  void Report() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    json r = {{"received_bytes", received_}, {"duplicate_bytes", duplicate_}, {"cpu_s", cpu}};
    std::cout << r.dump() << std::endl;
  }

  mqtt::async_client client_;
  std::mt19937 rng_;
  std::vector<std::unique_ptr<Sensor>> sensors_;
  std::map<std::string, Sensor*> by_id_;
  std::atomic<bool> resubscribe_{false};
  bool started_ = false;
  std::int64_t received_ = 0, duplicate_ = 0;
};

Sensor::Sensor(Sim& sim, std::string id)
    : sim_(sim), id_(std::move(id)), dir_(fs::path(sim.flags.state_dir) / id_) {
  fs::create_directories(dir_);
  p_.version = sim.flags.version;
  p_.seq = sim.flags.seq;
  std::ifstream f(dir_ / "state.json");
  if (f) {
    auto j = json::parse(f, nullptr, false);
    if (j.is_object()) {
      p_.version = j.value("version", p_.version);
      p_.seq = j.value("seq", p_.seq);
      p_.result = j.value("result", std::int64_t{0});
      p_.job = j.value("job", std::int64_t{0});
      p_.size = j.value("size", std::int64_t{0});
      p_.off = j.value("off", std::int64_t{0});
      p_.offer_seq = j.value("offer_seq", std::int64_t{0});
      p_.sha256 = j.value("sha256", "");
      p_.offer_version = j.value("offer_version", "");
      p_.downloaded = j.value("downloaded", false);
    }
  }
  timeout_ms_ = sim.flags.timeout_ms;
  fd_ = open((dir_ / "slot.bin").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  state_fd_ = open((dir_ / "state.json").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0 || state_fd_ < 0) std::perror(dir_.c_str());
  // A restarted simulator writes over what the last one left: never shorter than that.
  if (state_fd_ >= 0) saved_size_ = static_cast<std::size_t>(std::max<off_t>(0, lseek(state_fd_, 0, SEEK_END)));
}

std::string Sensor::Topic(const std::string& leaf) const {
  return sim_.flags.root + "/" + sim_.flags.device + "/sensors/" + id_ + "/" + leaf;
}

void Sensor::WriteWindow() const {
  if (window_bytes_.empty()) return;
  if (pwrite(fd_, window_bytes_.data(), window_bytes_.size(), window_at_) !=
      static_cast<ssize_t>(window_bytes_.size()))
    std::perror("pwrite");
  window_bytes_.clear();
}

void Sensor::Save() const {
  WriteWindow();
  json j = {{"version", p_.version}, {"seq", p_.seq},          {"result", p_.result},
            {"job", p_.job},         {"size", p_.size},        {"off", p_.off},
            {"sha256", p_.sha256},   {"offer_seq", p_.offer_seq}, {"offer_version", p_.offer_version},
            {"downloaded", p_.downloaded}};
  // Rewritten in place, padded with blanks to the longest text written before (JSON allows
  // trailing blanks): one write per window, no rename, no truncation (a new file and a rename
  // per window cost more CPU than the relay it exercises). A killed process loses no
  // page-cache write, and nothing here simulates a power cut of the sensor.
  auto text = j.dump();
  if (text.size() < saved_size_) text.resize(saved_size_, ' ');
  saved_size_ = text.size();
  if (pwrite(state_fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    std::perror("state.json");
}

void Sensor::Start() { Hello(); }

void Sensor::Hello() {
  int state = p_.downloaded ? 2 : (p_.job && p_.off > 0 ? 1 : 0);
  json h = {{"model", sim_.flags.model},  {"version", p_.version},
            {"seq", p_.seq},              {"slot", sim_.flags.slot},
            {"max_chunk", sim_.flags.max_chunk}, {"window", sim_.flags.window},
            {"state", state},             {"result", p_.result}};
  if (p_.job) {
    h["sha256"] = p_.sha256;
    h["off"] = p_.off;
  }
  sim_.Publish(Topic("hello"), h.dump(), 1, true);
}

void Sensor::Status(int state, int result) {
  json s = {{"job", p_.job}, {"state", state}, {"result", result}, {"off", p_.off}};
  sim_.Publish(Topic("status"), s.dump(), 1, true);
}

void Sensor::OnOffer(const std::string& payload) {
  if (payload.empty()) {  // the gateway closed the job
    active_ = false;
    return;
  }
  auto o = json::parse(payload, nullptr, false);
  if (!o.is_object()) return;
  auto job = o.value("job", std::int64_t{0});
  auto seq = o.value("seq", std::int64_t{0});
  auto size = o.value("size", std::int64_t{0});
  std::string sha = o.value("sha256", "");
  if (job <= 0 || size <= 0 || sha.size() != 64) return;
  if (seq <= p_.seq) return;  // nothing newer than what runs
  chunk_ = std::min<std::int64_t>(o.value("chunk", 64), sim_.flags.max_chunk);
  window_ = std::min<std::int64_t>(o.value("window", 1), sim_.flags.window);
  active_ = true;
  bool resume = p_.job == job && p_.sha256 == sha && p_.size == size;
  if (!resume) {
    window_bytes_.clear();  // frames of the old job
    p_.job = job;
    p_.sha256 = sha;
    p_.size = size;
    p_.off = 0;
    p_.downloaded = false;
    p_.offer_seq = seq;
    p_.offer_version = o.value("version", "");
    if (ftruncate(fd_, 0) != 0) std::perror("ftruncate");
    Save();
  }
  if (size > sim_.flags.slot) {
    Status(0, 2);  // not enough flash
    active_ = false;
    return;
  }
  if (p_.downloaded) {
    last_activity_ = Clock::now();
    Status(2, 0);
    return;
  }
  if (resume && !expecting_.empty()) return;  // the same offer again: the pull is under way
  sim_.Log(id_ + (resume ? ": resuming job " : ": starting job ") + std::to_string(job) +
           " at " + std::to_string(p_.off));
  Status(1, 0);
  Request();
}

void Sensor::Request() {
  if (!active_ || p_.downloaded || p_.off >= p_.size) return;
  json g = {{"job", p_.job}, {"off", p_.off}, {"len", chunk_}, {"n", window_}};
  std::int64_t remaining_frames = (p_.size - p_.off + chunk_ - 1) / chunk_;
  expecting_.clear();
  for (std::int64_t i = 0; i < std::min(window_, remaining_frames); ++i)
    expecting_.insert(p_.off + i * chunk_);
  last_activity_ = Clock::now();
  retry_pending_ = false;
  sim_.Publish(Topic("get"), g.dump(), 0, false);
}

void Sensor::OnData(const std::string& payload) {
  auto h = wire::Parse(payload);
  if (!h || !active_ || h->job != p_.job) return;
  std::string_view bytes = std::string_view(payload).substr(wire::kHeaderSize);
  if (!expecting_.erase(h->offset)) {
    sim_.Received(bytes.size(), true);
    return;
  }
  last_activity_ = Clock::now();
  timeout_ms_ = sim_.flags.timeout_ms;
  bool dropped = sim_.Drop();
  bool fresh = static_cast<std::int64_t>(h->offset) == p_.off;
  if (!dropped && fresh && (!(h->flags & wire::kFlagCrc) || wire::Crc32(bytes) == h->crc)) {
    if (window_bytes_.empty()) window_at_ = p_.off;
    window_bytes_.append(bytes);
    p_.off += bytes.size();
  }
  sim_.Received(bytes.size(), false);
  if (p_.off >= p_.size) return Complete();
  if (expecting_.empty()) {
    Save();
    auto decile = p_.off * 10 / p_.size;
    if (decile != last_status_decile_) {
      last_status_decile_ = decile;
      Status(1, 0);
    }
    Request();
  }
}

void Sensor::Complete() {
  expecting_.clear();
  WriteWindow();
  auto got = Sha256File(dir_ / "slot.bin", p_.size);
  if (got != p_.sha256) {
    sim_.Log(id_ + ": image hash mismatch, starting over");
    p_.off = 0;
    Save();
    Status(0, 5);  // integrity check failure
    active_ = false;
    return;
  }
  p_.downloaded = true;
  last_activity_ = Clock::now();
  Save();
  sim_.Log(id_ + ": image verified (" + got + ")");
  Status(2, 0);
}

void Sensor::OnErr(const std::string& payload) {
  auto e = json::parse(payload, nullptr, false);
  if (!e.is_object() || e.value("job", std::int64_t{0}) != p_.job) return;
  expecting_.clear();
  std::string code = e.value("code", "");
  if (code == "Busy") {
    retry_pending_ = true;
    retry_at_ = Clock::now() + std::chrono::milliseconds(e.value("retry_ms", 100));
  } else {
    sim_.Log(id_ + ": gateway says " + code + "; waiting for a new offer");
    active_ = false;
  }
}

void Sensor::OnCmd(const std::string& payload) {
  auto c = json::parse(payload, nullptr, false);
  if (!c.is_object() || c.value("job", std::int64_t{0}) != p_.job) return;
  std::string op = c.value("op", "");
  if (op == "update" && p_.downloaded) {
    p_.downloaded = false;
    if (sim_.flags.revert) {
      p_.result = 8;
      sim_.Log(id_ + ": new image failed to boot, reverted to " + p_.version);
    } else {
      p_.version = p_.offer_version;
      p_.seq = p_.offer_seq;
      p_.result = 1;
      sim_.Log(id_ + ": rebooted into " + p_.version);
    }
    p_.off = 0;
    Save();
    Status(0, static_cast<int>(p_.result));
    Hello();
    active_ = false;
  } else if (op == "cancel" || op == "reset") {
    window_bytes_.clear();
    p_.off = 0;
    p_.downloaded = false;
    Save();
    active_ = false;
  }
}

void Sensor::Tick(Clock::time_point now) {
  if (!active_) return;
  // Verified and waiting for the update command: say so again now and then, in case the
  // command was lost while one side reconnected.
  if (p_.downloaded) {
    if (now - last_activity_ > std::chrono::seconds(2)) {
      last_activity_ = now;
      Status(2, 0);
    }
    return;
  }
  if (retry_pending_ && now >= retry_at_) return Request();
  // A get or its frames went missing (loss, a reconnect): ask again from where we are.
  if (!retry_pending_ && now - last_activity_ > std::chrono::milliseconds(timeout_ms_)) {
    timeout_ms_ = std::min<std::int64_t>(2 * timeout_ms_, 8 * std::int64_t{sim_.flags.timeout_ms});
    Request();
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Two descriptors per simulated sensor (slot and state): a thousand need more than the usual
  // soft limit of 1,024.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  Flags f;
  CLI::App app{"Simulated sensors for the Gantry MQTT relay (docs/protocol.md)"};
  app.add_option("--broker", f.broker, "MQTT broker URI");
  app.add_option("--root", f.root, "topic root");
  app.add_option("--device", f.device, "gateway device id");
  app.add_option("--state-dir", f.state_dir, "where each sensor keeps its flash slot and progress");
  app.add_option("--count", f.count, "number of sensors");
  app.add_option("--first", f.first, "number of the first sensor (ids are <prefix>NNNN)");
  app.add_option("--prefix", f.prefix, "sensor id prefix");
  app.add_option("--model", f.model, "sensor model");
  app.add_option("--version", f.version, "firmware version at first start");
  app.add_option("--seq", f.seq, "firmware seq at first start");
  app.add_option("--slot", f.slot, "flash slot size in bytes");
  app.add_option("--max-chunk", f.max_chunk, "largest frame payload the sensor accepts");
  app.add_option("--window", f.window, "frames per request");
  app.add_option("--loss", f.loss, "percentage of data frames to drop (then re-request)");
  app.add_option("--timeout-ms", f.timeout_ms,
                 "re-request after this long without a frame (doubling, up to 8x, while none comes)");
  app.add_option("--exit-after-bytes", f.exit_after_bytes,
                 "exit abruptly after receiving this many payload bytes (0 = never)");
  app.add_flag("--revert", f.revert, "report result 8 after an update and keep the old version");
  app.add_flag("--exit-when-done", f.exit_when_done, "exit once every sensor updated or reverted");
  app.add_flag("--quiet", f.quiet, "no per-sensor log lines");
  app.footer("Example: gantry-sensor-sim --broker tcp://127.0.0.1:1883 --device gw-0001 "
             "--count 10 --model th-sensor --seq 1 --state-dir /tmp/sensors --exit-when-done");
  CLI11_PARSE(app, argc, argv);
  if (f.count < 1 || f.max_chunk < 1 || f.window < 1) {
    std::cerr << "sensor-sim: --count, --max-chunk and --window must be positive\n";
    return 2;
  }
  return Sim(f).Run();
}
