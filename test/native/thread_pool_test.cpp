// The compute pool's work sharing: every task runs once, and an idle thread takes work off a slow share.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "backend/cpu/thread_pool.h"

namespace pagedlm {
namespace {

TEST(ThreadPool, RunsEveryTaskOnceAcrossManyRounds) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> hits(1000);
  for (int round = 0; round < 200; ++round) {
    pool.parallel_for(hits.size(), [&](size_t i, size_t thread) {
      ASSERT_LT(thread, pool.size());
      hits[i].fetch_add(1);
    });
  }
  for (auto& h : hits) EXPECT_EQ(h.load(), 200);
}

TEST(ThreadPool, FewerTasksThanThreadsRunOnce) {
  ThreadPool pool(4);
  for (size_t count : {2, 3, 5}) {
    std::vector<std::atomic<int>> hits(count);
    pool.parallel_for(count, [&](size_t i, size_t) { hits[i].fetch_add(1); });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1) << count << " tasks";
  }
}

// Each thread starts on its own contiguous share and a thread that runs out takes from the back of the
// other's, so with two threads each one's tasks form one contiguous run, and a slow share is finished by
// the idle thread.
TEST(ThreadPool, IdleThreadTakesTheBackOfASlowShare) {
  ThreadPool pool(2);
  constexpr size_t kTasks = 100;
  std::vector<std::atomic<int>> ran_by(kTasks);
  for (auto& r : ran_by) r.store(-1);
  pool.parallel_for(kTasks, [&](size_t i, size_t thread) {
    // The caller's share (the first half) is slow: 2 ms a task.
    if (i < kTasks / 2) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ran_by[i].store(static_cast<int>(thread));
  });
  size_t by_worker = 0, switches = 0;
  for (size_t i = 0; i < kTasks; ++i) {
    ASSERT_GE(ran_by[i].load(), 0) << "task " << i << " did not run";
    by_worker += ran_by[i].load() == 1;
    if (i > 0 && ran_by[i].load() != ran_by[i - 1].load()) ++switches;
  }
  EXPECT_EQ(ran_by[0].load(), 0);
  EXPECT_EQ(switches, 1u) << "each thread's tasks should be one contiguous run";
  EXPECT_GT(by_worker, kTasks / 2) << "the worker should take slow tasks off the caller's share";
}

}  // namespace
}  // namespace pagedlm
