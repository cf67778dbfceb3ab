#include "backend/cpu/thread_pool.h"

namespace pagedlm {

ThreadPool::ThreadPool(size_t threads) {
  const size_t workers = threads > 1 ? threads - 1 : 0;
  workers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this, i] { worker_loop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::run_tasks(size_t thread_index) {
  for (size_t i = next_task_.fetch_add(1); i < task_count_; i = next_task_.fetch_add(1)) (*task_)(i, thread_index);
}

void ThreadPool::parallel_for(size_t count, const Task& task) {
  if (count == 0) return;
  if (workers_.empty() || count == 1) {
    for (size_t i = 0; i < count; ++i) task(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &task;
    task_count_ = count;
    next_task_.store(0);
    busy_workers_ = workers_.size();
    ++generation_;
  }
  work_ready_.notify_all();
  run_tasks(0);
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [this] { return busy_workers_ == 0; });
  task_ = nullptr;
}

void ThreadPool::worker_loop(size_t thread_index) {
  uint64_t seen_generation = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
    }
    run_tasks(thread_index);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--busy_workers_ == 0) work_done_.notify_one();
  }
}

}  // namespace pagedlm
