#include "backend/cpu/thread_pool.h"

#include <chrono>
#include <stdexcept>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pagedlm {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

}  // namespace

ThreadPool::ThreadPool(size_t threads) : shares_(threads > 1 ? threads : 1) {
  const size_t workers = threads > 1 ? threads - 1 : 0;
  workers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this, i] { worker_loop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

bool ThreadPool::take_task(Share& share, bool from_front, size_t* task) {
  uint64_t range = share.range.load(std::memory_order_relaxed);
  for (;;) {
    const auto front = static_cast<uint32_t>(range), back = static_cast<uint32_t>(range >> 32);
    if (front >= back) return false;
    const uint64_t taken = from_front ? pack_range(front + 1, back) : pack_range(front, back - 1);
    if (share.range.compare_exchange_weak(range, taken, std::memory_order_relaxed)) {
      *task = from_front ? front : back - 1;
      return true;
    }
  }
}

void ThreadPool::run_tasks(size_t thread_index) {
  size_t task;
  while (take_task(shares_[thread_index], true, &task)) (*task_)(task, thread_index);
  for (size_t k = 1; k < shares_.size(); ++k) {
    Share& other = shares_[(thread_index + k) % shares_.size()];
    while (take_task(other, false, &task)) (*task_)(task, thread_index);
  }
}

void ThreadPool::parallel_for(size_t count, const Task& task) {
  if (count == 0) return;
  if (workers_.empty() || count == 1) {
    for (size_t i = 0; i < count; ++i) task(i, 0);
    return;
  }
  if (count > UINT32_MAX) throw std::length_error("ThreadPool::parallel_for: too many tasks");
  task_ = &task;
  const size_t threads = shares_.size();
  for (size_t t = 0; t < threads; ++t) {
    shares_[t].range.store(pack_range(static_cast<uint32_t>(count * t / threads), static_cast<uint32_t>(count * (t + 1) / threads)),
                           std::memory_order_relaxed);
  }
  unfinished_workers_.store(workers_.size(), std::memory_order_relaxed);
  round_.fetch_add(1, std::memory_order_release);
  {
    // Under the lock: a worker about to sleep either sees the new round or is counted in sleepers_.
    std::lock_guard<std::mutex> lock(mutex_);
    if (sleepers_ > 0) wake_.notify_all();
  }
  run_tasks(0);
  // The workers are finishing their last tasks: wait for them without a system call.
  for (int spins = 0; unfinished_workers_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < 4096) {
      cpu_relax();
    } else {
      std::this_thread::yield();  // a descheduled worker: give it the core
    }
  }
  task_ = nullptr;
}

uint64_t ThreadPool::wait_for_round(uint64_t seen) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
  for (int spins = 0;; ++spins) {
    const uint64_t round = round_.load(std::memory_order_acquire);
    if (round != seen || stopping_.load(std::memory_order_relaxed)) return round;
    if ((spins & 63) == 63 && std::chrono::steady_clock::now() > deadline) break;
    cpu_relax();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  ++sleepers_;
  wake_.wait(lock, [&] { return stopping_.load() || round_.load(std::memory_order_acquire) != seen; });
  --sleepers_;
  return round_.load(std::memory_order_acquire);
}

void ThreadPool::worker_loop(size_t thread_index) {
  uint64_t seen = 0;
  for (;;) {
    seen = wait_for_round(seen);
    if (stopping_.load()) return;
    run_tasks(thread_index);
    unfinished_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace pagedlm
