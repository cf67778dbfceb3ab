// ---- cp.async: asynchronous global-to-shared copies (sm_80+) ------------------------------------------------
// Models what a real GPU guarantees about cp.async and nothing more: a thread's copies are grouped by
// commit, and a group's bytes are in shared memory only once the thread has waited for it (wait_group N
// leaves the newest N groups in flight). Here a copy happens at that wait, not at issue, so a kernel that
// reads a staged row before waiting on its group reads stale data, as it could on the device. Ordering
// between threads is the kernel's (a barrier after the wait), as on the device.
#pragma once

#include <cstddef>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <vector>

namespace pagedlm::emu {

struct AsyncCopy {
  void* dst;
  const void* src;
  size_t bytes;
};

// One thread's copies not yet landed: the open group (issued since the last commit) and the committed
// groups, oldest first. `block` tells a thread of a later block from one that left copies behind.
struct AsyncCopyQueue {
  unsigned block = ~0u;
  std::vector<AsyncCopy> open;
  std::deque<std::vector<AsyncCopy>> committed;
};

inline AsyncCopyQueue& async_copy_queue() {
  thread_local std::unordered_map<unsigned, AsyncCopyQueue> queues;
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  AsyncCopyQueue& queue = queues[thread];
  if (queue.block != block) queue = AsyncCopyQueue{block, {}, {}};  // a launch's leftovers never land in another's
  return queue;
}

inline void async_copy(void* dst, const void* src, size_t bytes) { async_copy_queue().open.push_back({dst, src, bytes}); }

inline void async_commit() {
  AsyncCopyQueue& queue = async_copy_queue();
  queue.committed.push_back(std::move(queue.open));
  queue.open.clear();
}

inline void async_wait(int newest_in_flight) {
  AsyncCopyQueue& queue = async_copy_queue();
  while (static_cast<int>(queue.committed.size()) > newest_in_flight) {
    for (const AsyncCopy& c : queue.committed.front()) std::memcpy(c.dst, c.src, c.bytes);
    queue.committed.pop_front();
  }
}

}  // namespace pagedlm::emu
