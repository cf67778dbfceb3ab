// The offload tiers (kv/offload_store.h): evicted cached blocks go to host memory and disk and come back on
// a prefix hit with the bytes they left with; the disk tier outlives its engine, stays under its limit and
// leaves another model's files alone; a failed copy costs the hit only.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <unistd.h>

#include "common/fault.h"
#include "engine/engine.h"
#include "kv/kv_cache_manager.h"
#include "kv/offload_store.h"
#include "support/event_collector.h"
#include "support/synthetic_model.h"
#include "support/token_kv_backend.h"

namespace pagedlm {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kBlockSize = 4;

// A fresh folder per test, removed after it.
class TempFolder {
 public:
  explicit TempFolder(const std::string& name) : path_(fs::temp_directory_path() / ("pagedlm_offload_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
  }
  ~TempFolder() { fs::remove_all(path_); }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

uint64_t bytes_under(const std::string& folder) {
  // The writer thread may remove a file while this looks: a vanished file counts nothing.
  uint64_t total = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    std::error_code gone;
    const uint64_t size = it->file_size(gone);
    if (!gone && it->is_regular_file(gone)) total += size;
  }
  return total;
}

std::map<std::string, std::vector<char>> files_under(const std::string& folder) {
  std::map<std::string, std::vector<char>> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    files[entry.path().string()] = std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  return files;
}

CacheFileIdentity identity_of(const Backend& backend, uint64_t model) {
  return CacheFileIdentity::of(BlockHash{model, ~model}, backend.kv_layout(), backend.block_bytes());
}

// The KV cache manager over a TokenKvBackend, whose "K/V" at each slot is the token written there: a block
// restored with the wrong bytes, or into the wrong place, shows as the wrong tokens.
struct TieredCache {
  TieredCache(int32_t blocks, const OffloadOptions& options, uint64_t model = 7) : backend(blocks, kBlockSize, 1000), kv(blocks, kBlockSize) {
    auto opened = OffloadStore::open(options, backend, identity_of(backend, model));
    EXPECT_TRUE(opened.is_ok()) << opened.status().message();
    store = opened.take();
    kv.set_offload(store.get());
  }
  ~TieredCache() { kv.set_offload(nullptr); }

  // Admits `tokens` as a request would: takes the cached prefix, checks that every block it took holds the
  // prompt's tokens, computes the rest and registers it. Returns the table, held.
  std::vector<BlockId> run(const std::vector<int32_t>& tokens) {
    PrefixMatch match = kv.match_prefix(tokens, 0);
    std::vector<BlockId> table;
    const BlockCopy copy = kv.take_prefix(match, static_cast<int32_t>(tokens.size()), table);
    if (copy.from != kNoBlock) {
      EXPECT_TRUE(backend.copy_block(copy.from, copy.to).is_ok());
      kv.release_copy_source(copy);
    }
    for (size_t b = 0; b < match.blocks.size(); ++b) {
      std::vector<int32_t> held(kBlockSize);
      EXPECT_TRUE(backend.export_block(table[b], reinterpret_cast<uint8_t*>(held.data())).is_ok());
      EXPECT_TRUE(std::equal(held.begin(), held.end(), tokens.begin() + static_cast<std::ptrdiff_t>(b) * kBlockSize)) << "block " << b << " came back wrong";
    }
    if (kv.allocate_slots(table, static_cast<int64_t>(tokens.size())) < 0) {
      kv.free(table);
      return table;
    }
    ForwardBatch batch;
    batch.tokens.assign(tokens.begin() + match.num_tokens, tokens.end());
    batch.sequences.push_back({0, static_cast<int32_t>(batch.tokens.size()), match.num_tokens, table.data(), false});
    EXPECT_TRUE(backend.forward(batch, nullptr).is_ok());
    std::vector<BlockHash> hashes = match.hashes;
    kv.cache_full_blocks(tokens, static_cast<int32_t>(tokens.size()), 0, table, hashes);
    return table;
  }

  testing::TokenKvBackend backend;
  KvCacheManager kv;
  std::unique_ptr<OffloadStore> store;
};

std::vector<int32_t> prompt(int family, int blocks) {
  std::vector<int32_t> t;
  for (int i = 0; i < blocks * kBlockSize; ++i) t.push_back(1 + (family * 131 + i * 7) % 997);
  return t;
}

void expect_invariants(const TieredCache& c, const std::vector<std::vector<BlockId>>& held) {
  std::vector<const std::vector<BlockId>*> tables;
  for (const auto& t : held) tables.push_back(&t);
  c.kv.check_invariants(tables);
  const BlockPool& pool = c.kv.pool();
  EXPECT_EQ(pool.num_free() + pool.num_in_use(), pool.num_blocks());
}

// Random prompts from a few shared families, held and released at random, in a pool far smaller than
// them: every block a prompt takes back (from the pool or either tier) holds its tokens, the pool's
// invariants hold after every step, and the tiers stay within their sizes.
void random_pressure(TieredCache& c, const std::string& folder, uint64_t disk_limit, uint32_t seed, int steps) {
  std::mt19937 rng(seed);
  std::vector<std::vector<BlockId>> held;
  for (int step = 0; step < steps; ++step) {
    if (!held.empty() && (held.size() > 2 || rng() % 2 == 0)) {
      const size_t victim = rng() % held.size();
      c.kv.free(held[victim]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(victim));
    }
    std::vector<int32_t> tokens = prompt(static_cast<int>(rng() % 6), 3 + static_cast<int>(rng() % 3));
    tokens.resize(tokens.size() - rng() % kBlockSize);  // some end mid-block
    if (step % 5 == 0) c.store->flush();  // let queued disk writes land, as time does between requests
    std::vector<BlockId> table = c.run(tokens);
    if (!table.empty()) held.push_back(std::move(table));
    expect_invariants(c, held);
    const OffloadStats s = c.store->stats();
    EXPECT_LE(s.memory_bytes, s.memory_capacity_bytes);
    EXPECT_LE(s.disk_bytes, disk_limit);
    if (!folder.empty()) EXPECT_LE(bytes_under(folder), disk_limit);
  }
  for (auto& t : held) c.kv.free(t);
  expect_invariants(c, {});
}

TEST(OffloadStore, RoundTripsUnderRandomEvictionPressure) {
  TempFolder folder("pressure");
  TieredCache probe(1, {});
  const uint64_t file = cache_file_bytes(identity_of(probe.backend, 7), 1);
  const uint64_t limit = 9 * file + file / 2;
  TieredCache c(10, {3 * probe.backend.block_bytes(), limit, folder.path()});
  random_pressure(c, folder.path(), limit, 1, 400);
  c.store->flush();
  const OffloadStats s = c.store->stats();
  EXPECT_GT(s.memory_hits, 0u);
  EXPECT_GT(s.disk_hits, 0u);
  EXPECT_EQ(s.write_errors + s.read_errors, 0u);
  EXPECT_EQ(s.disk_blocks, 9u);  // full to its limit, never over
  EXPECT_LE(bytes_under(folder.path()), limit);
}

TEST(OffloadStore, MemoryOnlyAndDiskOnlyTiers) {
  TieredCache memory_only(10, {4 * 16, 0, ""});
  random_pressure(memory_only, "", 0, 2, 200);
  EXPECT_GT(memory_only.store->stats().memory_hits, 0u);

  TempFolder folder("disk_only");
  const uint64_t limit = 6 * cache_file_bytes(identity_of(memory_only.backend, 7), 1);
  TieredCache disk_only(10, {0, limit, folder.path()});
  random_pressure(disk_only, folder.path(), limit, 3, 200);
  disk_only.store->flush();
  const OffloadStats s = disk_only.store->stats();
  EXPECT_GT(s.disk_hits, 0u) << s.disk_blocks << " blocks, " << s.offloaded_blocks << " offloaded, " << s.write_errors << " write errors, " << s.read_errors << " read errors";
  EXPECT_EQ(disk_only.store->stats().memory_hits, 0u);
}

// Fills the tiers with `families` prompts of 3 blocks through a pool of 4 blocks.
void cycle(TieredCache& c, int families) {
  for (int f = 0; f < families; ++f) {
    std::vector<BlockId> t = c.run(prompt(f, 3));
    c.kv.free(t);
  }
}

TEST(OffloadStore, DiskTierSurvivesARestartAndRefusesAnotherModel) {
  TempFolder folder("restart");
  const OffloadOptions disk{0, 1 << 20, folder.path()};
  {
    TieredCache first(4, disk);
    cycle(first, 4);
    first.store->flush();
    EXPECT_EQ(first.store->stats().disk_blocks, 8u);  // 12 blocks registered, 4 still in the pool
  }
  const auto before = files_under(folder.path());
  {
    TieredCache other_model(4, disk, 8);
    EXPECT_EQ(other_model.store->stats().disk_blocks, 0u);
    std::vector<BlockId> t = other_model.run(prompt(0, 3));
    EXPECT_EQ(other_model.store->stats().disk_hits, 0u);
    other_model.kv.free(t);
  }
  for (const auto& [path, bytes] : before) EXPECT_EQ(files_under(folder.path()).at(path), bytes) << path << " changed";

  TieredCache restarted(4, disk);
  EXPECT_EQ(restarted.store->stats().disk_blocks, 8u);
  std::vector<BlockId> t = restarted.run(prompt(0, 3));  // checks the bytes of every restored block
  EXPECT_EQ(restarted.store->stats().disk_hits, 2u);      // the last token's block is computed
  restarted.kv.free(t);
}

TEST(OffloadStore, DiskLimitHoldsAcrossRestartsWithASmallerLimit) {
  TempFolder folder("shrink");
  {
    TieredCache big(4, {0, 1 << 20, folder.path()});
    cycle(big, 6);
  }
  TieredCache probe(1, {});
  const uint64_t limit = 3 * cache_file_bytes(identity_of(probe.backend, 7), 1);
  TieredCache small(4, {0, limit, folder.path()});
  EXPECT_EQ(small.store->stats().disk_blocks, 3u);
  EXPECT_LE(bytes_under(folder.path()), limit);
}

TEST(OffloadStore, DamagedFilesCostTheHitOnly) {
  TempFolder folder("damaged");
  const OffloadOptions disk{0, 1 << 20, folder.path()};
  {
    TieredCache first(4, disk);
    cycle(first, 3);
  }
  // Flip a byte in every file (same size, so the scan keeps them): each read fails its checksum.
  for (const auto& entry : fs::recursive_directory_iterator(folder.path())) {
    if (!entry.is_regular_file()) continue;
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  TieredCache c(4, disk);
  std::vector<BlockId> t = c.run(prompt(0, 3));  // recomputed, and its blocks check out
  EXPECT_EQ(c.store->stats().disk_hits, 0u);
  EXPECT_GE(c.store->stats().read_errors, 1u);
  expect_invariants(c, {t});
  c.kv.free(t);
}

class OffloadFault : public ::testing::TestWithParam<const char*> {
 protected:
  void TearDown() override { arm_fault_for_testing(GetParam(), false); }
};

// With every disk write (or read) failing, the pressure run still takes back only right bytes: the
// failures are counted and each costs only its hit.
TEST_P(OffloadFault, CostsOnlyTheHit) {
  TempFolder folder(std::string("fault_") + GetParam());
  TieredCache c(10, {2 * 16, 1 << 20, folder.path()});
  arm_fault_for_testing(GetParam(), true);
  random_pressure(c, folder.path(), 1 << 20, 4, 300);
  c.store->flush();
  const OffloadStats s = c.store->stats();
  if (std::string(GetParam()) == "offload.write") {
    EXPECT_GT(s.write_errors, 0u);
    EXPECT_EQ(s.disk_hits, 0u);
    EXPECT_EQ(s.disk_blocks, 0u);
  } else {
    EXPECT_GT(s.read_errors, 0u);
    EXPECT_EQ(s.disk_hits, 0u);
  }
  EXPECT_GT(s.memory_hits, 0u);  // the memory tier works on
}

INSTANTIATE_TEST_SUITE_P(Sites, OffloadFault, ::testing::Values("offload.write", "offload.read"),
                         [](const auto& info) { return std::string(info.param) == "offload.write" ? "Write" : "Read"; });

TEST(OffloadStore, RefusesTiersThatHoldNoBlock) {
  testing::TokenKvBackend backend(4, kBlockSize, 100);
  const CacheFileIdentity id = identity_of(backend, 7);
  auto memory = OffloadStore::open({backend.block_bytes() - 1, 0, ""}, backend, id);
  ASSERT_FALSE(memory.is_ok());
  EXPECT_NE(memory.status().message().find("kvCache.offload.memory"), std::string::npos);
  auto disk = OffloadStore::open({0, 10, "/tmp"}, backend, id);
  ASSERT_FALSE(disk.is_ok());
  EXPECT_NE(disk.status().message().find("kvCache.offload.disk"), std::string::npos);
  auto no_path = OffloadStore::open({0, 1 << 20, ""}, backend, id);
  ASSERT_FALSE(no_path.is_ok());
  EXPECT_NE(no_path.status().message().find("path"), std::string::npos);
}

// Through the engine and a model: prefixes that left the pool come back from each tier, and the answers
// (tokens and log-probabilities) are a cold run's.
class TieredEngine {
 public:
  TieredEngine(const OffloadOptions& offload, KvDtype dtype) {
    EngineOptions o;
    o.threads = 2;
    o.kv_types = KvTypes::both(dtype);
    o.kv_blocks = 14;  // two 48-token prompts and their answers
    o.block_size = 8;
    o.context_length = 96;
    o.max_batch_tokens = 32;
    o.offload = offload;
    auto e = Engine::load(model_path(), o, &events_);
    EXPECT_TRUE(e.is_ok()) << e.status().message();
    engine_ = e.take();
  }
  EngineEvent run(const std::vector<int32_t>& prompt) {
    GenerateParams p;
    p.max_tokens = 6;
    p.ignore_eos = true;
    p.logprobs = 3;
    p.sampling.temperature = 0.0f;
    const RequestId id = ++next_;
    EXPECT_TRUE(engine_->submit({id, prompt, p}).is_ok());
    return events_.wait(id);
  }
  Engine& engine() { return *engine_; }
  static const std::string& model_path() {
    static const std::string path = testing::write_synthetic_model({.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2}, "offload.gguf");
    return path;
  }

 private:
  testing::EventCollector events_;
  std::unique_ptr<Engine> engine_;
  RequestId next_ = 0;
};

std::vector<int32_t> engine_prompt(int family) {
  std::vector<int32_t> t = {1};
  for (int i = 0; i < 47; ++i) t.push_back(3 + (family * 37 + i * 13) % 300);
  return t;
}

void expect_same_answer(const EngineEvent& a, const EngineEvent& b) {
  ASSERT_EQ(a.kind, EngineEvent::Kind::kFinished) << a.error.message();
  EXPECT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size());
  for (size_t i = 0; i < a.logprobs.size(); ++i) EXPECT_EQ(a.logprobs[i].chosen.logprob, b.logprobs[i].chosen.logprob);
}

class OffloadEngine : public ::testing::TestWithParam<KvDtype> {};

TEST_P(OffloadEngine, HitsFromEachTierEqualColdRuns) {
  TempFolder folder(std::string("engine_") + kv_dtype_name(GetParam()));
  std::vector<EngineEvent> cold;
  {
    TieredEngine plain({}, GetParam());
    for (int f = 0; f < 4; ++f) cold.push_back(plain.run(engine_prompt(f)));
  }
  for (const OffloadOptions& tiers : {OffloadOptions{1 << 20, 0, ""}, OffloadOptions{0, 1 << 22, folder.path()}}) {
    TieredEngine e(tiers, GetParam());
    for (int f = 0; f < 4; ++f) e.run(engine_prompt(f));  // the first two leave the pool
    for (int f = 0; f < 4; ++f) {
      ASSERT_TRUE(e.engine().flush_offload().is_ok());
      expect_same_answer(e.run(engine_prompt(f)), cold[f]);
    }
    const EngineStats s = e.engine().stats();
    ASSERT_TRUE(s.offload);
    EXPECT_GT(tiers.memory_bytes > 0 ? s.offload_tiers.memory_hits : s.offload_tiers.disk_hits, 0u);
    EXPECT_EQ(s.offload_tiers.read_errors + s.offload_tiers.write_errors, 0u);
    EXPECT_TRUE(e.engine().check_kv_invariants().is_ok());
    EXPECT_EQ(s.in_use_blocks, 0);
  }
  // A new engine on the disk tier's folder: the prefixes come back from disk.
  TieredEngine restarted({0, 1 << 22, folder.path()}, GetParam());
  expect_same_answer(restarted.run(engine_prompt(0)), cold[0]);
  EXPECT_GT(restarted.engine().stats().offload_tiers.disk_hits, 0u);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, OffloadEngine, ::testing::Values(KvDtype::kF32, KvDtype::kF16, KvDtype::kInt8),
                         [](const auto& info) { return std::string(kv_dtype_name(info.param)); });

TEST(OffloadEngine, AFailingReadCostsOnlyTheHit) {
  TempFolder folder("engine_fault");
  TieredEngine plain({}, KvDtype::kF16);
  const EngineEvent cold = plain.run(engine_prompt(0));
  TieredEngine e({0, 1 << 22, folder.path()}, KvDtype::kF16);
  for (int f = 0; f < 4; ++f) e.run(engine_prompt(f));
  ASSERT_TRUE(e.engine().flush_offload().is_ok());
  arm_fault_for_testing("offload.read", true);
  const EngineEvent answer = e.run(engine_prompt(0));
  arm_fault_for_testing("offload.read", false);
  expect_same_answer(answer, cold);
  EXPECT_GT(e.engine().stats().offload_tiers.read_errors, 0u);
  EXPECT_EQ(e.engine().stats().offload_tiers.disk_hits, 0u);
  EXPECT_TRUE(e.engine().check_kv_invariants().is_ok());
}

}  // namespace
}  // namespace pagedlm
