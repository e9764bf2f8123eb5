#pragma once
// A bound on the messages handed to an MQTT client and not yet written to its socket. QoS 0
// data (the relay's frames) has no acknowledgement to wait for: without a bound, a producer
// faster than the broker reads grows the client's send queue, and the process, without limit
// (docs/relay.md, "Memory"). Thread-safe.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace gantry {

class SendWindow {
 public:
  explicit SendWindow(std::size_t size) : size_(size) {}

  // Takes a place, waiting up to `patience` for one; false when the window stayed full (the
  // connection is not draining: the caller drops the message).
  bool Acquire(std::chrono::milliseconds patience) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, patience, [this] { return used_ < size_; })) return false;
    ++used_;
    return true;
  }
  // The message was written (or lost with the connection).
  void Release() {
    {
      std::lock_guard lock(mutex_);
      if (used_ > 0) --used_;
    }
    cv_.notify_one();
  }
  // The connection is gone and with it what was queued (a client need not report each one).
  void Reset() {
    {
      std::lock_guard lock(mutex_);
      used_ = 0;
    }
    cv_.notify_all();
  }
  std::size_t Used() const {
    std::lock_guard lock(mutex_);
    return used_;
  }

 private:
  const std::size_t size_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t used_ = 0;
};

}  // namespace gantry
