#include "core/event_loop.hpp"

namespace gantry {

void EventLoop::Post(Task task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void EventLoop::PostUrgent(Task task) {
  {
    std::lock_guard lock(mutex_);
    urgent_.push_back(std::move(task));
  }
  cv_.notify_one();
}

EventLoop::TimerId EventLoop::After(Clock::duration delay, Task task) {
  std::lock_guard lock(mutex_);
  TimerId id = next_timer_++;
  timers_.emplace(Clock::now() + delay, std::make_pair(id, std::move(task)));
  cv_.notify_one();
  return id;
}

void EventLoop::Cancel(TimerId id) {
  std::lock_guard lock(mutex_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.first == id) {
      timers_.erase(it);
      return;
    }
  }
}

void EventLoop::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
  }
  cv_.notify_all();
}

void EventLoop::Resume() {
  std::lock_guard lock(mutex_);
  stopped_ = false;
}

std::size_t EventLoop::ReadyTasks() const {
  std::lock_guard lock(mutex_);
  return urgent_.size() + tasks_.size();
}

bool EventLoop::Stopped() const {
  std::lock_guard lock(mutex_);
  return stopped_;
}

// Serves at most one task; returns false when stopped or the deadline passed.
bool EventLoop::RunOnce(Clock::time_point deadline) {
  Task task;
  {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (stopped_) return false;
      if (!urgent_.empty()) {
        task = std::move(urgent_.front());
        urgent_.pop_front();
        break;
      }
      auto now = Clock::now();
      if (!timers_.empty() && timers_.begin()->first <= now) {
        task = std::move(timers_.begin()->second.second);
        timers_.erase(timers_.begin());
        break;
      }
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
        break;
      }
      if (now >= deadline) return false;
      auto wake = deadline;
      if (!timers_.empty() && timers_.begin()->first < wake) wake = timers_.begin()->first;
      cv_.wait_until(lock, wake);
    }
  }
  task();
  return true;
}

void EventLoop::Run() {
  while (RunOnce(Clock::time_point::max())) {
  }
}

bool EventLoop::RunUntil(const std::function<bool()>& pred, Clock::duration timeout) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (!RunOnce(deadline) && (Stopped() || Clock::now() >= deadline)) return pred();
  }
  return true;
}

}  // namespace gantry
