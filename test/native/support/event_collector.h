// An EventSink that stores events and lets a test wait for requests to finish. Test-only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "engine/engine.h"

namespace pagedlm::testing {

class EventCollector : public EventSink {
 public:
  void deliver(std::vector<EngineEvent> events) override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& e : events) {
      if (e.kind == EngineEvent::Kind::kToken && by_request_[e.request].empty()) first_token_order_.push_back(e.request);
      if (e.kind != EngineEvent::Kind::kToken) ++ended_[e.request];
      by_request_[e.request].push_back(std::move(e));
    }
    changed_.notify_all();
  }

  // The final events (kFinished or kFailed) of a request's `choices` completions, by choice; a kFailed
  // "timeout" event after `timeout`.
  std::vector<EngineEvent> wait_all(RequestId id, int choices, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return ended_[id] >= choices; })) {
      EngineEvent timed_out;
      timed_out.kind = EngineEvent::Kind::kFailed;
      timed_out.request = id;
      timed_out.error = Status(ErrorCode::kInternal, "timeout");
      return std::vector<EngineEvent>(choices, timed_out);
    }
    std::vector<EngineEvent> ends(choices);
    for (const EngineEvent& e : by_request_[id]) {
      if (e.kind != EngineEvent::Kind::kToken && e.choice < choices) ends[e.choice] = e;
    }
    return ends;
  }

  EngineEvent wait(RequestId id, std::chrono::seconds timeout = std::chrono::seconds(120)) { return wait_all(id, 1, timeout)[0]; }

  // Requests in the order their first token arrived.
  std::vector<RequestId> first_token_order() {
    std::lock_guard<std::mutex> lock(mutex_);
    return first_token_order_;
  }

  std::vector<EngineEvent> events(RequestId id) {
    std::lock_guard<std::mutex> lock(mutex_);
    return by_request_[id];
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<RequestId, std::vector<EngineEvent>> by_request_;
  std::map<RequestId, int> ended_;
  std::vector<RequestId> first_token_order_;
};

}  // namespace pagedlm::testing
