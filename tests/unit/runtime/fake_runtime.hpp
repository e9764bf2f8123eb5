#pragma once
// FakeRuntime: an in-memory gantry::runtime::Runtime for unit tests of the code that drives
// containers (the transaction engine). It records every call in order, can fail any call on
// demand, and lets a test make a container "exit" as if its init died. Thread-safe, because
// the agent calls the runtime from a worker thread.
//
//   FakeRuntime rt;
//   rt.FailNext("start", "app-0123456789ab", "lxc", "boom");   // one-shot failure
//   ... engine runs ...
//   EXPECT_EQ(rt.Calls(), (std::vector<std::string>{"prepare app-0123456789ab",
//                                                    "start app-0123456789ab", ...}));
//   rt.Exit("app-0123456789ab");                                // its init exits
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/runtime.hpp"

namespace gantry::runtime {

class FakeRuntime : public Runtime {
 public:
  // ---- Runtime ----
  ExpectedVoid Prepare(const ContainerSpec& spec) override {
    std::lock_guard lock(mu_);
    Record("prepare", spec.instance);
    if (auto e = Injected("prepare", spec.instance)) return *e;
    auto& c = containers_[spec.instance];
    if (!c.prepared) {
      c.spec = spec;
      c.prepared = true;
      c.status = {State::kStopped, -1};
    }
    return {};
  }

  ExpectedVoid Start(const std::string& instance) override {
    std::lock_guard lock(mu_);
    Record("start", instance);
    if (auto e = Injected("start", instance)) return *e;
    auto it = containers_.find(instance);
    if (it == containers_.end() || !it->second.prepared)
      return Fail("not_found", "instance " + instance + " is not prepared");
    auto& c = it->second;
    if (c.status.state == State::kRunning) return {};
    c.status.state = c.start_state;
    c.status.init_pid = c.start_state == State::kRunning ? next_pid_++ : -1;
    ++c.starts;
    return {};
  }

  ExpectedVoid Stop(const std::string& instance, int timeout_s) override {
    std::lock_guard lock(mu_);
    Record("stop", instance);
    last_stop_timeout_[instance] = timeout_s;
    if (auto e = Injected("stop", instance)) return *e;
    auto it = containers_.find(instance);
    if (it != containers_.end()) it->second.status = {State::kStopped, -1};
    return {};  // like the real runtime: stopping a stopped or absent instance succeeds
  }

  Expected<Status> GetStatus(const std::string& instance) override {
    std::lock_guard lock(mu_);
    if (record_status_) Record("status", instance);
    if (auto e = Injected("status", instance)) return *e;
    auto it = containers_.find(instance);
    if (it == containers_.end()) return Status{State::kAbsent, -1};
    return it->second.status;
  }

  Expected<int> Exec(const std::string& instance, const std::vector<std::string>& argv,
                     int /*timeout_s*/) override {
    std::lock_guard lock(mu_);
    Record("exec", instance);
    exec_argv_[instance] = argv;
    if (auto e = Injected("exec", instance)) return *e;
    auto it = containers_.find(instance);
    if (it == containers_.end() || it->second.status.state != State::kRunning)
      return Fail("not_running", "instance " + instance + " is not running");
    return it->second.exec_result;
  }

  ExpectedVoid Release(const std::string& instance) override {
    std::lock_guard lock(mu_);
    Record("release", instance);
    if (auto e = Injected("release", instance)) return *e;
    containers_.erase(instance);
    return {};
  }

  Expected<std::vector<std::string>> List() override {
    std::lock_guard lock(mu_);
    if (auto e = Injected("list", "")) return *e;
    std::vector<std::string> out;
    for (auto& [name, c] : containers_)
      if (c.prepared) out.push_back(name);
    return out;
  }

  // ---- test controls ----

  // Every call so far as "<op> <instance>" in order ("list" and, unless RecordStatus(true),
  // "status" calls are not recorded because pollers make them nondeterministic).
  std::vector<std::string> Calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  void ClearCalls() {
    std::lock_guard lock(mu_);
    calls_.clear();
  }
  void RecordStatus(bool on) {
    std::lock_guard lock(mu_);
    record_status_ = on;
  }

  // The next call of op ("prepare", "start", "stop", "status", "exec", "release", "list") on
  // instance ("" = any instance) fails with {code, message}. FailAlways: every such call.
  void FailNext(const std::string& op, const std::string& instance, std::string code = "lxc",
                std::string message = "injected failure") {
    std::lock_guard lock(mu_);
    failures_.push_back({op, instance, Error{std::move(code), std::move(message)}, true});
  }
  void FailAlways(const std::string& op, const std::string& instance, std::string code = "lxc",
                  std::string message = "injected failure") {
    std::lock_guard lock(mu_);
    failures_.push_back({op, instance, Error{std::move(code), std::move(message)}, false});
  }
  void ClearFailures() {
    std::lock_guard lock(mu_);
    failures_.clear();
  }

  // The container's init exits: it shows STOPPED (as the real runtime does).
  void Exit(const std::string& instance) {
    std::lock_guard lock(mu_);
    auto it = containers_.find(instance);
    if (it != containers_.end()) it->second.status = {State::kStopped, -1};
  }
  // Forces a state, e.g. kFailed or kStarting.
  void SetState(const std::string& instance, State state) {
    std::lock_guard lock(mu_);
    auto& c = containers_[instance];
    c.status.state = state;
    c.status.init_pid = state == State::kRunning ? next_pid_++ : -1;
  }
  // State a later Start() leaves the instance in (default kRunning), e.g. kStarting to model
  // a container that never comes up.
  void SetStartState(const std::string& instance, State state) {
    std::lock_guard lock(mu_);
    containers_[instance].start_state = state;
  }
  // Exit code Exec() returns for this instance (default 0).
  void SetExecResult(const std::string& instance, int code) {
    std::lock_guard lock(mu_);
    containers_[instance].exec_result = code;
  }
  // A container that is already prepared and running, as a freshly started agent finds one
  // left by its predecessor (adoption). Not recorded as a call.
  void AddRunning(const ContainerSpec& spec) {
    std::lock_guard lock(mu_);
    auto& c = containers_[spec.instance];
    c.spec = spec;
    c.prepared = true;
    c.status = {State::kRunning, next_pid_++};
  }

  std::optional<ContainerSpec> SpecOf(const std::string& instance) const {
    std::lock_guard lock(mu_);
    auto it = containers_.find(instance);
    if (it == containers_.end() || !it->second.prepared) return std::nullopt;
    return it->second.spec;
  }
  int StartCount(const std::string& instance) const {
    std::lock_guard lock(mu_);
    auto it = containers_.find(instance);
    return it == containers_.end() ? 0 : it->second.starts;
  }
  std::optional<int> LastStopTimeout(const std::string& instance) const {
    std::lock_guard lock(mu_);
    auto it = last_stop_timeout_.find(instance);
    if (it == last_stop_timeout_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::vector<std::string>> LastExecArgv(const std::string& instance) const {
    std::lock_guard lock(mu_);
    auto it = exec_argv_.find(instance);
    if (it == exec_argv_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> Running() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (auto& [name, c] : containers_)
      if (c.status.state == State::kRunning) out.push_back(name);
    return out;
  }

 private:
  struct Container {
    ContainerSpec spec;
    bool prepared = false;
    Status status{State::kAbsent, -1};
    State start_state = State::kRunning;
    int exec_result = 0;
    int starts = 0;
  };
  struct Failure {
    std::string op, instance;
    Error error;
    bool once;
  };

  void Record(const std::string& op, const std::string& instance) {
    calls_.push_back(op + " " + instance);
  }
  std::optional<Unexpected> Injected(const std::string& op, const std::string& instance) {
    for (auto it = failures_.begin(); it != failures_.end(); ++it) {
      if (it->op != op || (!it->instance.empty() && it->instance != instance)) continue;
      Unexpected e(it->error);
      if (it->once) failures_.erase(it);
      return e;
    }
    return std::nullopt;
  }

  mutable std::mutex mu_;
  std::map<std::string, Container> containers_;
  std::vector<std::string> calls_;
  std::vector<Failure> failures_;
  std::map<std::string, int> last_stop_timeout_;
  std::map<std::string, std::vector<std::string>> exec_argv_;
  bool record_status_ = false;
  int next_pid_ = 1000;
};

}  // namespace gantry::runtime
