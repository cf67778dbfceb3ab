// The offload tiers of the prefix cache: where a cached block goes when the pool evicts it, instead of being
// lost. A host-memory tier (on CUDA, pinned memory that the block copies fill asynchronously on the
// backend's stream) holds the most recently evicted blocks; what it pushes out, least recently used first,
// goes to a disk tier of files, one per block, named by the block's hash under a folder named by the model
// and KV layout (cache_file.h's identity), so the tier outlives the engine and another model's files are
// never opened. A prefix hit on an offloaded block restores it into a pool block instead of recomputing it.
// A copy that fails (an I/O error, a full disk, a damaged file, a CUDA error) drops the block: it costs the
// hit, never a request.
//
// One owner: the engine thread calls everything here (the pool's eviction hook included), so the tiers'
// indexes need no lock. Disk writes are the exception: a write of a block can take as long as the disk
// wants, and a decode step must not wait for it, so they leave the engine thread. A writer thread takes
// writes, removals and touches from a queue in order; the engine thread decides everything (what is on
// disk, what to remove to stay under the limit) and learns which writes finished from a completion list it
// drains on its next call. A block enters the disk index when its write is queued, is found by lookups
// only once the write finished, and removals queued behind a write run after it, so the files never
// exceed the limit. When the queue is full a spilled block is dropped rather than waited for. Reads run
// on the engine thread: a hit needs the bytes before the step that uses them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "common/status.h"
#include "kv/block_hash.h"
#include "kv/block_pool.h"
#include "kv/cache_file.h"

namespace pagedlm {

struct OffloadOptions {
  uint64_t memory_bytes = 0;  // host-memory tier; 0: none
  uint64_t disk_bytes = 0;    // disk tier; 0: none (then `path` is unused)
  std::string path;           // the disk tier's folder, created when missing
  bool enabled() const { return memory_bytes > 0 || disk_bytes > 0; }
};

enum class OffloadTier { kNone, kMemory, kDisk };

struct OffloadStats {
  uint64_t memory_capacity_bytes = 0;  // whole blocks only
  uint64_t memory_bytes = 0;
  uint64_t memory_blocks = 0;
  uint64_t disk_capacity_bytes = 0;
  uint64_t disk_bytes = 0;        // files written or being written
  uint64_t disk_blocks = 0;
  uint64_t offloaded_blocks = 0;  // evicted blocks the tiers took
  uint64_t memory_hits = 0;       // blocks restored from each tier
  uint64_t disk_hits = 0;
  uint64_t write_errors = 0;      // copies that failed: the block was dropped
  uint64_t read_errors = 0;       // restores that failed: the hit was recomputed
};

class OffloadStore final : public EvictionListener {
 public:
  // Opens the tiers for blocks of `backend`'s pool, finding the disk tier's files from earlier runs.
  static Result<std::unique_ptr<OffloadStore>> open(const OffloadOptions& options, Backend& backend, const CacheFileIdentity& identity);
  ~OffloadStore() override;  // finishes the queued disk writes

  // The pool evicts a cached block whose bytes are still in `id`.
  void on_evict(BlockId id, const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) override;
  // The tier holding the block of `tokens` after `parent` (disk: by its hash; its file is checked on restore).
  OffloadTier find(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens);
  // Marks a block about to be restored as most recently used, so that evictions before its restore spare it.
  void touch(const BlockHash& hash);
  // Copies the block into pool block `id`; false (the tiers forget it) when it could not.
  bool restore(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens, BlockId id);
  // Writes what the disk tier lacks of the memory tier and of `pool`'s cached blocks, and waits for the
  // writes: the engine closes, and the next one on this folder starts where it ended.
  void persist(const BlockPool& pool);
  // Forgets the memory tier (the disk tier keeps its files).
  void clear_memory();
  // Waits for the queued disk writes. For tests and benchmarks.
  void flush();
  OffloadStats stats() const;

 private:
  struct MemoryEntry {
    uint32_t slot;
    BlockHash parent;
    std::vector<int32_t> tokens;
    std::list<BlockHash>::iterator lru;
  };
  struct DiskEntry {
    bool written = false;  // its write finished
    uint64_t job = 0;      // the write that made it
    std::list<BlockHash>::iterator lru;
  };
  struct Job {
    enum class Kind { kWrite, kRemove, kTouch } kind;
    BlockHash hash;
    uint64_t id = 0;
    CachedBlockRecord record;  // kWrite
  };
  struct Completion {
    BlockHash hash;
    uint64_t job;
    bool ok;
  };

  OffloadStore(const OffloadOptions& options, Backend& backend, const CacheFileIdentity& identity);
  Status open_disk();
  // Applies the writer thread's finished writes to the disk index.
  void drain_completions();
  uint8_t* slot_bytes(uint32_t slot) const { return host_.get() + static_cast<size_t>(slot) * block_bytes_; }
  // A free memory slot, pushing the least recently used block to disk if need be; false when there is none.
  bool take_slot(uint32_t& slot);
  void forget_memory(BlockHash hash);
  // Queues a block's bytes for the disk tier, removing least recently used files to make room.
  // `wait`: for room in the writer's queue, rather than dropping the block.
  void spill(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens, const uint8_t* bytes, bool wait = false);
  void forget_disk(BlockHash hash, bool remove_file);  // by value: callers pass the LRU list's own entries
  std::string file_of(const BlockHash& hash) const;
  // A disk-tier block's file, read only when it has the size this tier writes.
  Result<std::vector<CachedBlockRecord>> read_block_file(const BlockHash& hash) const;
  void enqueue(Job job);
  void writer_loop();
  bool run_job(const Job& job) const;  // false: the job failed

  Backend& backend_;
  CacheFileIdentity identity_;
  size_t block_bytes_;
  int32_t block_size_;
  uint64_t file_bytes_;  // one block's file

  // Memory tier.
  std::shared_ptr<uint8_t> host_;
  uint32_t memory_slots_ = 0;
  std::vector<uint32_t> free_slots_;
  std::unordered_map<BlockHash, MemoryEntry, BlockHashHasher> memory_;
  std::list<BlockHash> memory_lru_;  // most recent first
  bool copies_in_flight_ = false;    // async exports the host has not waited for

  // Disk tier.
  uint64_t disk_capacity_ = 0;
  std::string folder_;
  std::unordered_map<BlockHash, DiskEntry, BlockHashHasher> disk_;
  std::list<BlockHash> disk_lru_;
  uint64_t disk_used_ = 0;
  uint64_t next_job_ = 1;

  OffloadStats counters_;

  // Shared with the writer thread.
  std::mutex mutex_;
  std::condition_variable wake_writer_, idle_;
  std::deque<Job> jobs_;
  size_t queued_writes_ = 0;
  bool writing_ = false;
  bool stopping_ = false;
  std::vector<Completion> completions_;
  std::thread writer_;
};

}  // namespace pagedlm
