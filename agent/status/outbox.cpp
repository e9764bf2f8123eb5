#include "status/outbox.hpp"

#include <algorithm>

#include "core/log.hpp"

namespace gantry::status {

Outbox::Outbox(store::Db& db, EventLoop& loop, mqtt::Client& client, size_t window)
    : db_(db), loop_(loop), client_(client), window_(window) {}

ExpectedVoid Outbox::Enqueue(const std::string& topic, const std::string& payload, int qos,
                             bool retain) {
  auto r = db_.InTransaction([&]() -> ExpectedVoid {
    if (retain) {
      auto del = db_.Prepare("DELETE FROM outbox WHERE topic = ? AND retain = 1 AND seq > ?");
      if (!del) return Unexpected(del.error());
      if (auto e = del->BindAll(topic, handed_up_to_).Run(); !e) return e;
    }
    auto ins = db_.Prepare("INSERT INTO outbox(topic, payload, qos, retain) VALUES (?, ?, ?, ?)");
    if (!ins) return Unexpected(ins.error());
    ins->Bind(1, topic).BindBlob(2, payload).Bind(3, qos).Bind(4, retain ? 1 : 0);
    return ins->Run();
  });
  if (!r) return Unexpected(r.error().WithContext("outbox"));
  // Inside a caller's transaction the row is not durable yet (and vanishes on rollback):
  // publishing it now could tell the operator about a command a power cut then forgets. The
  // caller's handler commits before the loop runs the next task.
  if (db_.InTransactionNow())
    loop_.Post([this] { Pump(); });
  else
    Pump();
  return {};
}

void Outbox::Flush() {
  if (!db_.InTransactionNow()) Pump();
}

void Outbox::OnConnected() {
  connected_ = true;
  // Paho resends what it still holds in flight itself; everything else (refused while
  // disconnected, or left from a previous run) is published again from the oldest row.
  if (in_flight_.empty()) handed_up_to_ = 0;
  if (!acked_.empty()) DeleteAcked();  // so that no acknowledged row is sent again
  Pump();
}

void Outbox::OnLost() { connected_ = false; }

std::int64_t Outbox::Pending() {
  auto st = db_.Prepare("SELECT count(*) FROM outbox");
  if (!st || !st->Step().value_or(false)) return -1;
  return st->Int(0);
}

void Outbox::Pump() {
  if (!connected_ || in_flight_.size() >= window_) return;
  auto st = db_.Prepare("SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?");
  if (!st) {
    log::Error("outbox", st.error().String());
    return;
  }
  st->BindAll(handed_up_to_, static_cast<std::int64_t>(window_ - in_flight_.size()));
  while (st->Step().value_or(false)) {
    std::int64_t seq = st->Int(0);
    if (std::find(acked_.begin(), acked_.end(), seq) != acked_.end()) {
      handed_up_to_ = seq;  // acknowledged already; its delete is pending
      continue;
    }
    mqtt::Message m;
    m.topic = st->Text(1);
    m.payload = st->Text(2);
    m.qos = static_cast<int>(st->Int(3));
    m.retain = st->Int(4) != 0;
    handed_up_to_ = seq;
    in_flight_.insert(seq);
    client_.Publish(m, [this, seq](bool acked) { loop_.Post([this, seq, acked] { OnDone(seq, acked); }); });
  }
}

void Outbox::DeleteAcked() {
  auto r = db_.InTransaction([&]() -> ExpectedVoid {
    auto del = db_.Prepare("DELETE FROM outbox WHERE seq = ?");
    if (!del) return Unexpected(del.error());
    for (auto seq : acked_) {
      del->Reset();
      if (auto e = del->Bind(1, seq).Run(); !e) return e;
    }
    return {};
  }, store::Durability::kDeferred);  // a power cut before the next fsync sends them again
  if (!r) log::Error("outbox", r.error().String());
  acked_.clear();
}

void Outbox::OnDone(std::int64_t seq, bool acked) {
  in_flight_.erase(seq);
  if (acked) {
    acked_.push_back(seq);
    if (acked_.size() == 1) loop_.Post([this] { DeleteAcked(); });
  } else {
    // Refused before it reached the broker: publish it again, in order, once reconnected.
    // Waiting for OnConnected() also keeps a refusing client from spinning this loop.
    handed_up_to_ = std::min(handed_up_to_, seq - 1);
    connected_ = false;
  }
  Pump();
}

}  // namespace gantry::status
