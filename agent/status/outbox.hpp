#pragma once
// The persisted outbox (docs/protocol.md): progress events and the retained state are written to
// SQLite first and deleted only when the broker acknowledged them, so nothing is lost while
// the broker is away and order is kept. Lives on the agent's loop thread.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/event_loop.hpp"
#include "mqtt/client.hpp"
#include "store/db.hpp"

namespace gantry::status {

class Outbox {
 public:
  Outbox(store::Db& db, EventLoop& loop, mqtt::Client& client, size_t window = 64);

  // Persists the message, then publishes it when connected. A retained message replaces any
  // not yet handed to the broker for the same topic (only the newest state matters).
  ExpectedVoid Enqueue(const std::string& topic, const std::string& payload, int qos, bool retain);
  // Publishes committed rows not yet handed to the client, now rather than from the loop's
  // queue. Never inside an open transaction: its rows are not durable yet.
  void Flush();
  // Call on the loop when the connection is (re)established / lost.
  void OnConnected();
  void OnLost();
  // Rows not yet acknowledged.
  std::int64_t Pending();
  // Messages handed to the client whose acknowledgement (and row delete) is not done yet.
  std::size_t InFlight() const { return in_flight_.size() + acked_.size(); }

 private:
  void Pump();
  void OnDone(std::int64_t seq, bool acked);
  void DeleteAcked();

  store::Db& db_;
  EventLoop& loop_;
  mqtt::Client& client_;
  size_t window_;
  bool connected_ = false;
  std::set<std::int64_t> in_flight_;  // handed to Paho, which resends them itself
  std::int64_t handed_up_to_ = 0;     // highest seq handed since the last (re)connect
  // Acknowledged rows to delete: a burst of acknowledgements is one commit, not one each.
  std::vector<std::int64_t> acked_;
};

}  // namespace gantry::status
