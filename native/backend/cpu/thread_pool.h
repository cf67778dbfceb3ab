// Persistent compute workers for the CPU backend. parallel_for() is called from one thread at a time
// (the engine thread); that caller works too, so a pool of N threads runs N-1 workers.
// Idle workers sleep on a condition variable: no spinning.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pagedlm {

class ThreadPool {
 public:
  // A task gets its index in [0, count) and the index of the thread running it in [0, size()).
  using Task = std::function<void(size_t task, size_t thread)>;

  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size() + 1; }

  // Runs task(i) for every i in [0, count) and returns when all are done.
  void parallel_for(size_t count, const Task& task);

 private:
  void worker_loop(size_t thread_index);
  void run_tasks(size_t thread_index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  const Task* task_ = nullptr;   // guarded by mutex_ for publication
  size_t task_count_ = 0;
  std::atomic<size_t> next_task_{0};
  size_t busy_workers_ = 0;      // guarded by mutex_
  uint64_t generation_ = 0;      // guarded by mutex_
  bool stopping_ = false;        // guarded by mutex_
};

}  // namespace pagedlm
