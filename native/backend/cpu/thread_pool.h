// Persistent compute workers for the CPU backend. parallel_for() is called from one thread at a time
// (the engine thread); that caller works too, so a pool of N threads runs N-1 workers.
// A decode step calls parallel_for ~65 times (Llama 1B), so handing out work must cost microseconds, not a
// futex wake-up each time: after finishing, a worker spins for a short while (kSpinMicros) watching for the
// next round, then sleeps on a condition variable. An idle pool sleeps: no spinning when there is no work.
// Each thread owns a contiguous share of a round's tasks and runs it front to back; a thread done with its
// own share takes tasks from the back of another's. Matmul tasks are consecutive rows of consecutive
// matrices, so each thread streams one run of memory (which the hardware prefetchers follow) and the round
// still ends within one small task of even.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pagedlm {

class ThreadPool {
 public:
  // A task gets its index in [0, count) and the index of the thread running it in [0, size()).
  using Task = std::function<void(size_t task, size_t thread)>;
  static constexpr int kSpinMicros = 200;

  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size() + 1; }

  // Runs task(i) for every i in [0, count) and returns when all are done.
  void parallel_for(size_t count, const Task& task);

 private:
  // One thread's share of the round's tasks: [front, back), packed in one word so that the owner taking
  // the front and another thread taking the back never both get the last task.
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};
  };
  static uint64_t pack_range(uint32_t front, uint32_t back) { return static_cast<uint64_t>(back) << 32 | front; }
  // The next task of a share from its front (owner) or back (anyone else); false when it is empty.
  static bool take_task(Share& share, bool from_front, size_t* task);

  void worker_loop(size_t thread_index);
  void run_tasks(size_t thread_index);
  // Returns the first round number other than `seen` (or `seen` when stopping).
  uint64_t wait_for_round(uint64_t seen);

  std::vector<std::thread> workers_;
  // A round's task and count are written before `round_` is bumped (release) and read after it is seen
  // (acquire).
  const Task* task_ = nullptr;
  std::vector<Share> shares_;  // one per thread, set for each round
  std::atomic<uint64_t> round_{0};
  std::atomic<size_t> unfinished_workers_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  int sleepers_ = 0;  // guarded by mutex_
};

}  // namespace pagedlm
