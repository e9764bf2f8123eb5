// gantry-relay-coap.so: `GET coap://<gw>:<coap_port>/fw/<sha256>` serves the current
// revision's sensor images block-wise (Block2 with Size2 and an ETag), LwM2M Package-URI style
// (docs/protocol.md). libcoap does the block bookkeeping, so any block can be asked for first (resume).
//
// Threads: libcoap is not thread-safe here, so one thread owns the context and every resource.
// call("set-images") hands the new image set over under a mutex and waits until that thread has
// applied it.
#include <arpa/inet.h>
#include <coap3/coap.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/hex.hpp"
#include "plugin/gantry_plugin.h"

namespace gantry::relay_coap {

namespace {

using nlohmann::json;

constexpr std::uint64_t kMaxImage = 64u << 20;  // sensor firmware is small; refuse the absurd

char* Dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

json ErrorReply(const std::string& code, const std::string& message) {
  return {{"ok", false}, {"error", {{"code", code}, {"message", message}}}};
}

using Bytes = std::shared_ptr<const std::string>;

struct ContextFree {
  void operator()(coap_context_t* c) const { coap_free_context(c); }
};

// libcoap keeps the body until the last block went out; each transfer holds a reference.
void ReleaseBody(coap_session_t*, void* app_ptr) { delete static_cast<Bytes*>(app_ptr); }

class Server {
 public:
  Server(std::string bind, int port) : bind_(std::move(bind)), port_(port) {}

  ~Server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    // Resources belong to the context; freeing it releases them and pending transfers.
    ctx_.reset();
  }

  std::string Start() {
    coap_startup();
    coap_set_log_level(LOG_WARNING);
    ctx_.reset(coap_new_context(nullptr));
    if (!ctx_) return "cannot create a CoAP context";
    coap_context_set_block_mode(ctx_.get(), COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_address_t addr;
    coap_address_init(&addr);
    if (inet_pton(AF_INET, bind_.c_str(), &addr.addr.sin.sin_addr) == 1) {
      addr.addr.sin.sin_family = AF_INET;
      addr.addr.sin.sin_port = htons(static_cast<std::uint16_t>(port_));
      addr.size = sizeof(addr.addr.sin);
    } else if (inet_pton(AF_INET6, bind_.c_str(), &addr.addr.sin6.sin6_addr) == 1) {
      addr.addr.sin6.sin6_family = AF_INET6;
      addr.addr.sin6.sin6_port = htons(static_cast<std::uint16_t>(port_));
      addr.size = sizeof(addr.addr.sin6);
    } else {
      return "bind address " + bind_ + " is not an IP address";
    }
    if (!coap_new_endpoint(ctx_.get(), &addr, COAP_PROTO_UDP))
      return "cannot listen on udp " + bind_ + ":" + std::to_string(port_);
    thread_ = std::thread([this] { Run(); });
    return "";
  }

  json SetImages(const json& req) {
    std::map<std::string, Bytes> images;
    for (auto& i : req.at("images")) {
      auto sha = i.at("sha256").get<std::string>();
      auto path = i.at("path").get<std::string>();
      auto size = i.at("size").get<std::uint64_t>();
      if (!IsBlockId(sha)) return ErrorReply("bad_request", "bad image sha256");
      if (size > kMaxImage) return ErrorReply("bad_request", "image " + sha + " is too large");
      if (auto old = Current(sha); old && old->size() == size) {
        images[sha] = old;
        continue;
      }
      std::ifstream f(path, std::ios::binary);
      std::ostringstream data;
      data << f.rdbuf();
      if (!f || data.str().size() != size)
        return ErrorReply("io", "cannot read " + std::to_string(size) + " B from " + path);
      images[sha] = std::make_shared<const std::string>(data.str());
    }
    std::unique_lock lock(mu_);
    wanted_ = std::move(images);
    auto generation = ++wanted_generation_;
    // The CoAP thread applies it within one poll interval.
    if (!cv_.wait_for(lock, std::chrono::seconds(5), [&] { return applied_generation_ >= generation; }))
      return ErrorReply("timeout", "the CoAP thread did not take the new images");
    return {{"ok", true}};
  }

  json Stats() {
    std::lock_guard lock(mu_);
    return {{"ok", true}, {"requests", requests_.load()}, {"images", wanted_.size()}};
  }

 private:
  Bytes Current(const std::string& sha) {
    std::lock_guard lock(mu_);
    auto it = wanted_.find(sha);
    return it == wanted_.end() ? nullptr : it->second;
  }

  void Run() {
    while (!stop_) {
      coap_io_process(ctx_.get(), 100);
      Apply();
    }
  }

  // Makes the context's /fw/<sha> resources match the wanted set (CoAP thread only).
  void Apply() {
    std::unique_lock lock(mu_);
    if (applied_generation_ == wanted_generation_) return;
    for (auto it = served_.begin(); it != served_.end();) {
      if (wanted_.count(it->first)) {
        ++it;
        continue;
      }
      coap_delete_resource(ctx_.get(), it->second.resource);
      it = served_.erase(it);
    }
    for (auto& [sha, bytes] : wanted_) {
      auto& entry = served_[sha];
      entry.bytes = bytes;
      if (entry.resource) continue;
      std::string path = "fw/" + sha;
      auto* uri = coap_new_str_const(reinterpret_cast<const uint8_t*>(path.data()), path.size());
      entry.resource = coap_resource_init(uri, COAP_RESOURCE_FLAGS_RELEASE_URI);
      coap_resource_set_userdata(entry.resource, this);
      coap_register_request_handler(entry.resource, COAP_REQUEST_GET, &Server::OnGet);
      coap_add_resource(ctx_.get(), entry.resource);
    }
    applied_generation_ = wanted_generation_;
    lock.unlock();
    cv_.notify_all();
  }

  static void OnGet(coap_resource_t* resource, coap_session_t* session, const coap_pdu_t* request,
                    const coap_string_t* query, coap_pdu_t* response) {
    auto* self = static_cast<Server*>(coap_resource_get_userdata(resource));
    ++self->requests_;
    Bytes bytes;
    std::uint64_t etag = 0;
    {
      std::lock_guard lock(self->mu_);
      for (auto& [sha, entry] : self->served_) {
        if (entry.resource != resource) continue;
        bytes = entry.bytes;
        // The ETag names the content: the first 8 bytes of its SHA-256.
        etag = std::stoull(sha.substr(0, 16), nullptr, 16);
      }
    }
    if (!bytes) {
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_NOT_FOUND);
      return;
    }
    coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
    coap_add_data_large_response(resource, session, request, response, query,
                                 COAP_MEDIATYPE_APPLICATION_OCTET_STREAM, -1, etag, bytes->size(),
                                 reinterpret_cast<const uint8_t*>(bytes->data()), ReleaseBody,
                                 new Bytes(bytes));
  }

  struct Served {
    Bytes bytes;
    coap_resource_t* resource = nullptr;
  };

  std::string bind_;
  int port_;
  std::unique_ptr<coap_context_t, ContextFree> ctx_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> requests_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Bytes> wanted_;
  std::uint64_t wanted_generation_ = 0, applied_generation_ = 0;
  std::map<std::string, Served> served_;  // written by the CoAP thread, read under mu_
};

void* Create(const GantryHostV1* host, const char* config_json, char** error) {
  auto fail = [&](const std::string& why) -> void* {
    if (error) *error = Dup(why);
    return nullptr;
  };
  if (!host || host->abi_version != GANTRY_PLUGIN_ABI_V1 || !host->log)
    return fail("relay-coap needs a v1 host");
  auto config = json::parse(config_json ? config_json : "", nullptr, false);
  if (!config.is_object()) return fail("relay-coap options are not a JSON object");
  int port = 5683;
  std::string bind = "0.0.0.0";
  try {
    port = config.value("coap_port", 5683);
    bind = config.value("bind", bind);
  } catch (const json::exception& e) {
    return fail(std::string("relay-coap options: ") + e.what());
  }
  if (port < 1 || port > 65535) return fail("relay-coap options: coap_port out of range");
  auto server = std::make_unique<Server>(bind, port);
  if (auto why = server->Start(); !why.empty()) return fail("relay-coap: " + why);
  host->log(host->ctx, GANTRY_LOG_INFO,
            ("serving /fw/<sha256> on udp " + bind + ":" + std::to_string(port)).c_str());
  return server.release();
}

void Destroy(void* instance) { delete static_cast<Server*>(instance); }

char* CallOp(void* instance, const char* op_c, const char* request_json) {
  auto* server = static_cast<Server*>(instance);
  std::string op = op_c ? op_c : "";
  auto req = json::parse(request_json ? request_json : "", nullptr, false);
  json reply;
  try {
    if (req.is_discarded()) reply = ErrorReply("bad_request", "request is not JSON");
    else if (op == "set-images") reply = server->SetImages(req);
    else if (op == "stats") reply = server->Stats();
    // CoAP pulls by sha256 (set-images' images); jobs are the MQTT transport's.
    else if (op == "update-jobs") reply = {{"ok", true}};
    // CoAP sensors pull by sha256; there is no channel to push offers or commands to them.
    else if (op == "offer" || op == "clear-offer" || op == "cmd")
      reply = ErrorReply("unsupported", "relay-coap cannot " + op + ": sensors pull by sha256");
    else reply = ErrorReply("unknown_op", "relay-coap has no operation " + op);
  } catch (const json::exception& e) {
    reply = ErrorReply("bad_request", op + ": " + e.what());
  }
  return Dup(reply.dump());
}

void FreeString(char* s) { std::free(s); }

const GantryPluginV1 kPlugin = {GANTRY_PLUGIN_ABI_V1, "relay", "coap", Create, Destroy, CallOp,
                                FreeString};

}  // namespace

}  // namespace gantry::relay_coap

extern "C" __attribute__((visibility("default"))) const GantryPluginV1* gantry_plugin_v1(void) {
  return &gantry::relay_coap::kPlugin;
}
