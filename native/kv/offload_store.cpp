#include "kv/offload_store.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "common/fault.h"
#include "common/platform.h"

namespace pagedlm {

namespace fs = std::filesystem;

namespace {

// Spilled blocks waiting for the writer thread, at most: beyond it a spilled block is dropped, not waited for.
constexpr uint64_t kMaxQueuedWriteBytes = uint64_t{64} << 20;
constexpr const char* kBlockFileSuffix = ".kvblock";

std::string hex(const BlockHash& h) {
  char text[33];
  std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(h.hi), static_cast<unsigned long long>(h.lo));
  return text;
}

bool parse_hex(const std::string& text, BlockHash& out) {
  if (text.size() != 32 || text.find_first_not_of("0123456789abcdef") != std::string::npos) return false;
  out.hi = std::stoull(text.substr(0, 16), nullptr, 16);
  out.lo = std::stoull(text.substr(16), nullptr, 16);
  return true;
}

}  // namespace

OffloadStore::OffloadStore(const OffloadOptions& options, Backend& backend, const CacheFileIdentity& identity)
    : backend_(backend),
      identity_(identity),
      block_bytes_(backend.block_bytes()),
      block_size_(identity.block_size),
      file_bytes_(cache_file_bytes(identity, 1)),
      disk_capacity_(options.disk_bytes) {
  memory_slots_ = static_cast<uint32_t>(std::min<uint64_t>(options.memory_bytes / std::max<size_t>(block_bytes_, 1), UINT32_MAX));
  counters_.memory_capacity_bytes = static_cast<uint64_t>(memory_slots_) * block_bytes_;
  counters_.disk_capacity_bytes = disk_capacity_;
  if (disk_capacity_ > 0) folder_ = utf8_path(native_path(options.path) / hex(identity_key(identity)));
}

Result<std::unique_ptr<OffloadStore>> OffloadStore::open(const OffloadOptions& options, Backend& backend, const CacheFileIdentity& identity) {
  std::unique_ptr<OffloadStore> store(new OffloadStore(options, backend, identity));
  if (options.memory_bytes > 0 && store->memory_slots_ == 0) {
    return Status(ErrorCode::kInvalidArgument, "kvCache.offload.memory (" + std::to_string(options.memory_bytes) + " bytes) holds no KV block: one takes " +
                                                   std::to_string(store->block_bytes_) + " bytes");
  }
  if (options.disk_bytes > 0 && options.disk_bytes < store->file_bytes_) {
    return Status(ErrorCode::kInvalidArgument, "kvCache.offload.disk (" + std::to_string(options.disk_bytes) + " bytes) holds no KV block: one takes " +
                                                   std::to_string(store->file_bytes_) + " bytes on disk");
  }
  if (options.disk_bytes > 0 && options.path.empty()) return Status(ErrorCode::kInvalidArgument, "kvCache.offload.disk needs kvCache.offload.path");
  if (store->memory_slots_ > 0) {
    store->host_ = backend.allocate_host_blocks(static_cast<size_t>(store->memory_slots_) * store->block_bytes_);
    if (!store->host_) {
      return Status(ErrorCode::kOutOfMemory, "cannot allocate the " + std::to_string(store->counters_.memory_capacity_bytes) +
                                                 " bytes of kvCache.offload.memory: lower it");
    }
    for (uint32_t slot = store->memory_slots_; slot-- > 0;) store->free_slots_.push_back(slot);
  }
  if (store->disk_capacity_ > 0) {
    if (Status s = store->open_disk(); !s.is_ok()) return s;
    store->writer_ = std::thread([s = store.get()] { s->writer_loop(); });
  }
  return store;
}

Status OffloadStore::open_disk() {
  std::error_code error;
  fs::create_directories(native_path(folder_), error);
  if (error) return Status(ErrorCode::kIo, "cannot create the offload folder '" + folder_ + "': " + error.message());
  // The files of earlier runs, least recently used first (by modification time: a hit touches its file).
  std::vector<std::pair<fs::file_time_type, BlockHash>> found;
  fs::directory_iterator it(native_path(folder_), error);
  // increment(error), not ++: a folder that changes while it is listed must not throw out of the load.
  for (; !error && it != fs::directory_iterator(); it.increment(error)) {
    const fs::directory_entry& entry = *it;
    const fs::path& file = entry.path();
    BlockHash hash;
    const bool ours = file.extension() == kBlockFileSuffix && parse_hex(utf8_path(file.stem()), hash);
    std::error_code ignored;
    if (!ours) {
      // A write cut short by a crash; anything else in our folder is not ours to judge.
      if (file.extension() == ".partial") fs::remove(file, ignored);
      continue;
    }
    if (entry.file_size(ignored) != file_bytes_) {
      fs::remove(file, ignored);  // truncated: it could never be read
      continue;
    }
    found.emplace_back(entry.last_write_time(ignored), hash);
  }
  if (error) return Status(ErrorCode::kIo, "cannot list the offload folder '" + folder_ + "': " + error.message());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [time, hash] : found) {
    disk_lru_.push_front(hash);
    disk_.emplace(hash, DiskEntry{true, 0, disk_lru_.begin()});
    disk_used_ += file_bytes_;
  }
  // A smaller limit than the last run's: the oldest files go.
  while (disk_used_ > disk_capacity_) {
    const BlockHash oldest = disk_lru_.back();
    std::error_code ignored;
    fs::remove(native_path(file_of(oldest)), ignored);
    forget_disk(oldest, false);
  }
  return Status::ok();
}

OffloadStore::~OffloadStore() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_writer_.notify_one();
  writer_.join();
}

std::string OffloadStore::file_of(const BlockHash& hash) const { return utf8_path(native_path(folder_) / (hex(hash) + kBlockFileSuffix)); }

void OffloadStore::on_evict(BlockId id, const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) {
  drain_completions();
  if (memory_slots_ > 0) {
    if (const auto it = memory_.find(hash); it != memory_.end()) {
      memory_lru_.splice(memory_lru_.begin(), memory_lru_, it->second.lru);
      return;
    }
    uint32_t slot;
    if (!take_slot(slot)) return;
    if (!backend_.export_block_async(id, slot_bytes(slot)).is_ok()) {
      free_slots_.push_back(slot);
      ++counters_.write_errors;
      return;
    }
    copies_in_flight_ = true;
    memory_lru_.push_front(hash);
    memory_.emplace(hash, MemoryEntry{slot, parent, std::vector<int32_t>(tokens, tokens + block_size_), memory_lru_.begin()});
    ++counters_.offloaded_blocks;
    return;
  }
  if (disk_capacity_ == 0) return;
  if (disk_.count(hash) != 0) {
    touch(hash);
    return;
  }
  std::vector<uint8_t> bytes(block_bytes_);
  if (!backend_.export_block(id, bytes.data()).is_ok()) {
    ++counters_.write_errors;
    return;
  }
  spill(hash, parent, tokens, bytes.data());
  ++counters_.offloaded_blocks;
}

bool OffloadStore::take_slot(uint32_t& slot) {
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
    return true;
  }
  if (memory_lru_.empty()) return false;
  const BlockHash victim = memory_lru_.back();
  const MemoryEntry& entry = memory_.at(victim);
  slot = entry.slot;
  if (disk_capacity_ > 0) {
    // The host reads the slot: the exports still running on the backend's stream must land first.
    Status finished = copies_in_flight_ ? backend_.finish_host_copies() : Status::ok();
    copies_in_flight_ = false;
    if (finished.is_ok()) {
      spill(victim, entry.parent, entry.tokens.data(), slot_bytes(slot));
    } else {
      ++counters_.write_errors;
    }
  }
  memory_lru_.erase(entry.lru);
  memory_.erase(victim);
  return true;
}

void OffloadStore::spill(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens, const uint8_t* bytes, bool wait) {
  if (disk_.count(hash) != 0) {
    touch(hash);
    return;
  }
  {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto room = [&] { return (queued_writes_ + 1) * file_bytes_ <= std::max(kMaxQueuedWriteBytes, file_bytes_); };
    if (wait) idle_.wait(lock, room);
    if (!room()) return;  // the disk is behind: drop it
  }
  while (disk_used_ + file_bytes_ > disk_capacity_ && !disk_lru_.empty()) forget_disk(disk_lru_.back(), true);
  Job job{Job::Kind::kWrite, hash, next_job_++, {hash, parent, std::vector<int32_t>(tokens, tokens + block_size_), std::vector<uint8_t>(bytes, bytes + block_bytes_)}};
  disk_lru_.push_front(hash);
  disk_.emplace(hash, DiskEntry{false, job.id, disk_lru_.begin()});
  disk_used_ += file_bytes_;
  enqueue(std::move(job));
}

void OffloadStore::forget_disk(BlockHash hash, bool remove_file) {
  const auto it = disk_.find(hash);
  if (it == disk_.end()) return;
  disk_lru_.erase(it->second.lru);
  disk_.erase(it);
  disk_used_ -= file_bytes_;
  if (remove_file) enqueue(Job{Job::Kind::kRemove, hash, 0, {}});
}

void OffloadStore::forget_memory(BlockHash hash) {
  const auto it = memory_.find(hash);
  if (it == memory_.end()) return;
  free_slots_.push_back(it->second.slot);
  memory_lru_.erase(it->second.lru);
  memory_.erase(it);
}

OffloadTier OffloadStore::find(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) {
  drain_completions();
  if (const auto it = memory_.find(hash); it != memory_.end()) {
    if (it->second.parent == parent && std::equal(tokens, tokens + block_size_, it->second.tokens.begin())) return OffloadTier::kMemory;
  }
  if (const auto it = disk_.find(hash); it != disk_.end() && it->second.written) return OffloadTier::kDisk;
  return OffloadTier::kNone;
}

void OffloadStore::touch(const BlockHash& hash) {
  if (const auto it = memory_.find(hash); it != memory_.end()) memory_lru_.splice(memory_lru_.begin(), memory_lru_, it->second.lru);
  if (const auto it = disk_.find(hash); it != disk_.end()) {
    disk_lru_.splice(disk_lru_.begin(), disk_lru_, it->second.lru);
    if (it->second.written) enqueue(Job{Job::Kind::kTouch, hash, 0, {}});
  }
}

bool OffloadStore::restore(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens, BlockId id) {
  switch (find(hash, parent, tokens)) {
    case OffloadTier::kNone:
      return false;
    case OffloadTier::kMemory: {
      const Status copied = backend_.import_block_async(id, slot_bytes(memory_.at(hash).slot));
      // The slot is free for the next export, which the stream runs after this import.
      forget_memory(hash);
      if (!copied.is_ok()) {
        ++counters_.read_errors;
        return false;
      }
      copies_in_flight_ = true;
      ++counters_.memory_hits;
      return true;
    }
    case OffloadTier::kDisk:
      break;
  }
  Result<std::vector<CachedBlockRecord>> read = read_block_file(hash);
  bool ok = read.is_ok() && read.value().size() == 1;
  if (ok) {
    const CachedBlockRecord& record = read.value().front();
    // The file name is only a hash: the tokens decide, as they do in the pool.
    ok = record.hash == hash && record.parent == parent && std::equal(tokens, tokens + block_size_, record.tokens.begin()) &&
         backend_.import_block(id, record.kv.data()).is_ok();
  }
  if (!ok) {
    ++counters_.read_errors;
    forget_disk(hash, true);  // damaged or unreadable: it would fail again
    return false;
  }
  touch(hash);
  ++counters_.disk_hits;
  return true;
}

Result<std::vector<CachedBlockRecord>> OffloadStore::read_block_file(const BlockHash& hash) const {
  if (fault_armed("offload.read")) return Status(ErrorCode::kIo, "offload.read");
  // A file replaced since it was listed (by hand, or another engine) could be of any size: read only one of
  // the size this tier writes.
  const std::string file = file_of(hash);
  std::error_code error;
  const uintmax_t size = fs::file_size(native_path(file), error);
  if (error || size != file_bytes_) return Status(ErrorCode::kIo, "'" + file + "' is not a block file of this tier");
  return read_cache_file(file, identity_);
}

void OffloadStore::persist(const BlockPool& pool) {
  if (disk_capacity_ == 0) return;
  drain_completions();
  if (copies_in_flight_ && !backend_.finish_host_copies().is_ok()) return;
  copies_in_flight_ = false;
  // Least recently used first, so that the disk's LRU order follows the tiers'.
  for (auto it = memory_lru_.rbegin(); it != memory_lru_.rend(); ++it) {
    const MemoryEntry& entry = memory_.at(*it);
    spill(*it, entry.parent, entry.tokens.data(), slot_bytes(entry.slot), true);
  }
  std::vector<uint8_t> bytes(block_bytes_);
  for (BlockId id : pool.registered_blocks()) {
    if (disk_.count(pool.hash_of(id)) != 0 || !backend_.export_block(id, bytes.data()).is_ok()) continue;
    spill(pool.hash_of(id), pool.parent_of(id), pool.tokens_of(id), bytes.data(), true);
  }
  flush();
}

void OffloadStore::clear_memory() {
  while (!memory_lru_.empty()) forget_memory(memory_lru_.front());
}

void OffloadStore::enqueue(Job job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queued_writes_ += job.kind == Job::Kind::kWrite;
    jobs_.push_back(std::move(job));
  }
  wake_writer_.notify_one();
}

void OffloadStore::writer_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_writer_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, with every queued job done
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    writing_ = true;
    lock.unlock();
    const bool ok = run_job(job);
    lock.lock();
    writing_ = false;
    if (job.kind == Job::Kind::kWrite) {
      --queued_writes_;
      completions_.push_back({job.hash, job.id, ok});
    }
    idle_.notify_all();  // flush() waits for an empty queue, a waiting spill for room in it
  }
}

// On the writer thread. An exception (out of memory) fails the job, as a full disk does, instead of ending the
// process from a thread nothing joins on error.
bool OffloadStore::run_job(const Job& job) const {
  try {
    const std::string file = file_of(job.hash);
    std::error_code ignored;
    switch (job.kind) {
      case Job::Kind::kWrite:
        return !fault_armed("offload.write") && write_cache_file(file, identity_, {job.record}).is_ok();
      case Job::Kind::kRemove:
        fs::remove(native_path(file), ignored);
        return true;
      case Job::Kind::kTouch:
        fs::last_write_time(native_path(file), fs::file_time_type::clock::now(), ignored);
        return true;
    }
  } catch (const std::exception&) {
  }
  return false;
}

void OffloadStore::drain_completions() {
  std::vector<Completion> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (completions_.empty()) return;
    done.swap(completions_);
  }
  for (const Completion& c : done) {
    const auto it = disk_.find(c.hash);
    if (it == disk_.end() || it->second.job != c.job) continue;  // forgotten since; its removal follows the write
    if (c.ok) {
      it->second.written = true;
    } else {
      ++counters_.write_errors;
      forget_disk(c.hash, false);  // a failed write leaves no file
    }
  }
}

void OffloadStore::flush() {
  if (writer_.joinable()) {
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [&] { return jobs_.empty() && !writing_; });
  }
  drain_completions();
}

OffloadStats OffloadStore::stats() const {
  OffloadStats s = counters_;
  s.memory_blocks = memory_.size();
  s.memory_bytes = s.memory_blocks * block_bytes_;
  s.disk_blocks = disk_.size();
  s.disk_bytes = disk_used_;
  return s;
}

}  // namespace pagedlm
