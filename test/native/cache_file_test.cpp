// Saving and loading the prefix cache: a restarted engine hits on what the first one computed and answers
// exactly as a cold run; files for another model, dtype or layout, or damaged ones, change nothing.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "engine/engine.h"
#include "support/event_collector.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

struct CacheEngine {
  CacheEngine(const std::string& model, KvDtype dtype, int32_t block_size = 8) : CacheEngine(model, KvTypes::both(dtype), block_size) {}
  CacheEngine(const std::string& model, KvTypes types, int32_t block_size = 8, int32_t context_length = 256) {
    EngineOptions o;
    o.threads = 2;
    o.kv_types = types;
    o.kv_blocks = 48;
    o.block_size = block_size;
    o.context_length = context_length;
    engine = Engine::load(model, o, &events).take();
  }
  EngineEvent run(const std::vector<int32_t>& prompt) {
    GenerateParams p;
    p.max_tokens = 12;
    p.ignore_eos = true;
    p.sampling.temperature = 0;
    const RequestId id = ++next;
    EXPECT_TRUE(engine->submit({id, prompt, p}).is_ok());
    return events.wait(id);
  }
  testing::EventCollector events;
  std::unique_ptr<Engine> engine;
  RequestId next = 0;
};

std::vector<int32_t> prompt(int n, int salt = 0) {
  std::vector<int32_t> t = {1};
  for (int i = 1; i < n; ++i) t.push_back(5 + (i * 17 + salt) % 250);
  return t;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

class CacheFile : public ::testing::TestWithParam<KvTypes> {};

TEST_P(CacheFile, RestartedEngineHitsAndMatchesCold) {
  const std::string model = testing::write_synthetic_model({}, "cache_file_model.gguf");
  const std::string file = testing::temp_path("cache.pgkv");
  const auto question = prompt(45);
  std::vector<int32_t> answer;
  {
    CacheEngine first(model, GetParam());
    answer = first.run(question).tokens;
    const auto saved = first.engine->save_cache(file);
    ASSERT_TRUE(saved.is_ok()) << saved.status().message();
    EXPECT_EQ(saved.value(), 7);  // 45 prompt + 12 generated tokens, 56 of them computed: 7 full blocks of 8
  }
  CacheEngine second(model, GetParam());
  const auto loaded = second.engine->load_cache(file);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_EQ(second.engine->stats().cached_blocks, loaded.value());
  const EngineEvent again = second.run(question);
  EXPECT_EQ(again.tokens, answer);
  // All but the last prompt token, 4 of them copied from the sixth block (int4 K: whole blocks only).
  EXPECT_EQ(second.engine->stats().prefix.hit_tokens, GetParam().k == KvDtype::kInt4 ? 40u : 44u);
  // Loading the same file twice adds nothing new.
  EXPECT_EQ(second.engine->load_cache(file).value(), 0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CacheFile,
                         ::testing::Values(KvTypes::both(KvDtype::kF32), KvTypes::both(KvDtype::kF16), KvTypes::both(KvDtype::kInt8),
                                           KvTypes::both(KvDtype::kFp8E4M3), KvTypes::both(KvDtype::kInt4), KvTypes{KvDtype::kInt8, KvDtype::kInt4},
                                           KvTypes{KvDtype::kInt4, KvDtype::kF16}),
                         [](const auto& info) { return std::string("K_") + kv_dtype_name(info.param.k) + "_V_" + kv_dtype_name(info.param.v); });

TEST(CacheFileRefusal, OtherModelDtypeLayoutOrDamage) {
  const std::string model = testing::write_synthetic_model({}, "cache_refuse_model.gguf");
  const std::string other_model = testing::write_synthetic_model({.seed = 2}, "cache_refuse_other.gguf");
  const std::string file = testing::temp_path("refuse.pgkv");
  {
    CacheEngine e(model, KvDtype::kF16);
    e.run(prompt(40));
    ASSERT_TRUE(e.engine->save_cache(file).is_ok());
  }
  const auto expect_refused = [&](CacheEngine& e, const std::string& path, const std::string& fragment) {
    const EngineStats before = e.engine->stats();
    const auto r = e.engine->load_cache(path);
    ASSERT_FALSE(r.is_ok()) << fragment;
    EXPECT_EQ(r.status().code(), ErrorCode::kCacheFile);
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
    EXPECT_EQ(e.engine->stats().cached_blocks, before.cached_blocks);
  };
  CacheEngine other(other_model, KvDtype::kF16);
  expect_refused(other, file, "different model");
  CacheEngine f32(model, KvDtype::kF32);
  expect_refused(f32, file, "holds f16 KV but this engine uses f32");
  // A file of one pair of K and V types is refused by an engine of another.
  CacheEngine f16_int4(model, KvTypes{KvDtype::kF16, KvDtype::kInt4});
  expect_refused(f16_int4, file, "holds f16 KV but this engine uses K f16, V int4 KV");
  CacheEngine blocks16(model, KvDtype::kF16, 16);
  expect_refused(blocks16, file, "KV layout");

  CacheEngine same(model, KvDtype::kF16);
  const auto bytes = read_file(file);
  const std::string damaged = testing::temp_path("damaged.pgkv");
  auto truncated = bytes;
  truncated.resize(bytes.size() / 2);
  write_file(damaged, truncated);
  expect_refused(same, damaged, "checksum mismatch");
  auto flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  write_file(damaged, flipped);
  expect_refused(same, damaged, "checksum mismatch");
  write_file(damaged, {'n', 'o', 'p', 'e'});
  expect_refused(same, damaged, "not a pagedlm cache file");
  const auto missing = same.engine->load_cache(testing::temp_path("missing.pgkv"));
  EXPECT_EQ(missing.status().code(), ErrorCode::kIo);
  // And the good file still loads afterwards.
  EXPECT_GT(same.engine->load_cache(file).value(), 0);
}

// A LongRoPE model rotates keys with its short factors up to its original context (64 here) and with its long
// ones past it: a cache saved at one context length holds keys the other cannot use.
TEST(CacheFileRefusal, KeysOfOtherRopeFactors) {
  const std::string model = testing::write_synthetic_model({.architecture = "phi3", .rope_scaling = "longrope"}, "cache_refuse_longrope.gguf");
  const std::string file = testing::temp_path("longrope.pgkv");
  {
    CacheEngine short_context(model, KvTypes::both(KvDtype::kF16), 8, 64);
    short_context.run(prompt(40));
    ASSERT_TRUE(short_context.engine->save_cache(file).is_ok());
  }
  CacheEngine long_context(model, KvTypes::both(KvDtype::kF16), 8, 256);
  const auto r = long_context.engine->load_cache(file);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kCacheFile);
  EXPECT_NE(r.status().message().find("RoPE frequency factors"), std::string::npos) << r.status().message();
  CacheEngine same_factors(model, KvTypes::both(KvDtype::kF16), 8, 48);
  EXPECT_GT(same_factors.engine->load_cache(file).value(), 0);
}

TEST(CacheFileRefusal, UnwritablePathIsAnIoErrorAndLeavesNoPartialFile) {
  const std::string model = testing::write_synthetic_model({}, "cache_io_model.gguf");
  CacheEngine e(model, KvDtype::kF16);
  e.run(prompt(20));
  const auto r = e.engine->save_cache("/nonexistent-dir/cache.pgkv");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kIo);
}

}  // namespace
}  // namespace pagedlm
