// An EventSink that stores events and lets a test wait for requests to finish. Test-only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "engine/engine.h"

namespace pagedlm::testing {

class EventCollector : public EventSink {
 public:
  void deliver(std::vector<EngineEvent> events) override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& e : events) {
      if (e.kind != EngineEvent::Kind::kToken) done_.insert(e.request);
      by_request_[e.request].push_back(std::move(e));
    }
    changed_.notify_all();
  }

  // The request's final event (kFinished or kFailed); fails the test after `timeout`.
  EngineEvent wait(RequestId id, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return done_.count(id) != 0; })) return EngineEvent{EngineEvent::Kind::kFailed, id, -1, "timeout"};
    return by_request_[id].back();
  }

  std::vector<EngineEvent> events(RequestId id) {
    std::lock_guard<std::mutex> lock(mutex_);
    return by_request_[id];
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<RequestId, std::vector<EngineEvent>> by_request_;
  std::set<RequestId> done_;
};

}  // namespace pagedlm::testing
