#pragma once
#include <algorithm>
#include <chrono>

namespace gantry {

// Exponential backoff: first, 2*first, ... capped at max.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds first, std::chrono::milliseconds max) : first_(first), max_(max) {}
  std::chrono::milliseconds Next() {
    std::chrono::milliseconds d = std::min<std::chrono::milliseconds>(max_, first_ * (1LL << std::min(attempt_, 20)));
    ++attempt_;
    return d;
  }
  void Reset() { attempt_ = 0; }
  int Attempts() const { return attempt_; }

 private:
  std::chrono::milliseconds first_, max_;
  int attempt_ = 0;
};

}  // namespace gantry
