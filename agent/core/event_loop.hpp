#pragma once
// The one thread that owns agent state. Other threads (Paho, curl workers, plugin helpers)
// only Post() work to it; they never touch state directly.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>

namespace gantry {

class EventLoop {
 public:
  using Task = std::function<void()>;
  using Clock = std::chrono::steady_clock;
  using TimerId = std::uint64_t;

  // Thread-safe: queue a task to run on the loop thread.
  void Post(Task task);
  // Thread-safe: queue a task that runs before every ordinary task and timer already waiting
  // (in order among themselves). For command intake, which must not wait behind a backlog of
  // progress reports and acknowledgements (docs/architecture-engine.md).
  void PostUrgent(Task task);
  // Thread-safe: run task once after delay. Returns an id for Cancel().
  TimerId After(Clock::duration delay, Task task);
  void Cancel(TimerId id);
  // Runs until Stop(); returns once the queue stops being served.
  void Run();
  // Runs until pred() is true or the timeout passes; returns pred(). For tests and tools.
  bool RunUntil(const std::function<bool()>& pred, Clock::duration timeout);
  void Stop();
  bool Stopped() const;
  // Serves again after Stop() (a stopping agent drains its last work with RunUntil).
  void Resume();
  // Tasks posted (ordinary or urgent) and not yet run (timers not counted).
  std::size_t ReadyTasks() const;

 private:
  bool RunOnce(Clock::time_point deadline);

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Task> urgent_;
  std::deque<Task> tasks_;
  std::multimap<Clock::time_point, std::pair<TimerId, Task>> timers_;
  TimerId next_timer_ = 1;
  bool stopped_ = false;
};

}  // namespace gantry
