// Fault injection: allocation failure at load and in a step, a full disk while saving the cache, a model
// file truncated on disk after a copying load, and client calls racing close(). Each ends in a clear error
// or documented behaviour, with every KV block back and no crash.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/fault.h"
#include "engine/engine.h"
#include "support/event_collector.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

class ArmedFault {
 public:
  explicit ArmedFault(std::string site) : site_(std::move(site)) { arm_fault_for_testing(site_, true); }
  ~ArmedFault() { arm_fault_for_testing(site_, false); }

 private:
  std::string site_;
};

const std::string& model() {
  static const std::string path = testing::write_synthetic_model({}, "faults.gguf");
  return path;
}

GenerateParams short_params() {
  GenerateParams p;
  p.max_tokens = 8;
  p.ignore_eos = true;
  p.sampling.temperature = 0;
  return p;
}

TEST(Faults, KvPoolAllocationFailureAtLoad) {
  ArmedFault fault("kv.allocate");
  testing::EventCollector events;
  auto engine = Engine::load(model(), {}, &events);
  ASSERT_FALSE(engine.is_ok());
  EXPECT_EQ(engine.status().code(), ErrorCode::kOutOfMemory);
  EXPECT_NE(engine.status().message().find("KV pool"), std::string::npos);
}

TEST(Faults, AllocationFailureInAStepFailsItsRequestsAndTheEngineRecovers) {
  testing::EventCollector events;
  auto engine = Engine::load(model(), EngineOptions{.threads = 2, .kv_blocks = 32}, &events).take();
  {
    ArmedFault fault("step.allocate");
    ASSERT_TRUE(engine->submit({1, {1, 5, 6, 7}, short_params()}).is_ok());
    ASSERT_TRUE(engine->submit({2, {1, 8, 9}, short_params()}).is_ok());
    for (RequestId id : {1, 2}) {
      const EngineEvent e = events.wait(id);
      EXPECT_EQ(e.kind, EngineEvent::Kind::kFailed);
      EXPECT_EQ(e.error.code(), ErrorCode::kOutOfMemory);
    }
  }
  EXPECT_EQ(engine->stats().in_use_blocks, 0);
  ASSERT_TRUE(engine->submit({3, {1, 5, 6, 7}, short_params()}).is_ok());
  EXPECT_EQ(events.wait(3).kind, EngineEvent::Kind::kFinished);
}

TEST(Faults, DiskFullWhileSavingLeavesTheOldFileAndNoPartialOne) {
  testing::EventCollector events;
  auto engine = Engine::load(model(), EngineOptions{.threads = 2, .block_size = 4, .kv_blocks = 32}, &events).take();
  ASSERT_TRUE(engine->submit({1, {1, 5, 6, 7, 8, 9, 10, 11, 12}, short_params()}).is_ok());
  events.wait(1);
  const std::string path = testing::temp_path("full-disk.pgkv");
  ASSERT_TRUE(engine->save_cache(path).is_ok());
  const auto good_size = std::filesystem::file_size(path);
  {
    ArmedFault fault("cache.write");
    const auto saved = engine->save_cache(path);
    ASSERT_FALSE(saved.is_ok());
    EXPECT_EQ(saved.status().code(), ErrorCode::kIo);
    EXPECT_NE(saved.status().message().find("No space left"), std::string::npos) << saved.status().message();
  }
  EXPECT_EQ(std::filesystem::file_size(path), good_size);
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  EXPECT_TRUE(engine->load_cache(path).is_ok());
}

TEST(Faults, CopyingLoadSurvivesTheFileBeingTruncatedOnDisk) {
  const std::string path = testing::write_synthetic_model({}, "truncated-later.gguf");
  testing::EventCollector events;
  EngineOptions o;
  o.threads = 2;
  o.use_mmap = false;
  auto engine = Engine::load(path, o, &events).take();
  std::filesystem::resize_file(path, 100);  // a writer truncating the file in place
  ASSERT_TRUE(engine->submit({1, {1, 5, 6, 7}, short_params()}).is_ok());
  const EngineEvent done = events.wait(1);
  EXPECT_EQ(done.kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(done.tokens.size(), 8u);
}

TEST(Races, SubmitAndCancelFromManyThreadsWhileClosing) {
  for (int round = 0; round < 5; ++round) {
    testing::EventCollector events;
    auto engine = Engine::load(model(), EngineOptions{.threads = 2, .kv_blocks = 48}, &events).take();
    std::atomic<RequestId> next{1};
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&] {
        while (!stop) {
          const RequestId id = next++;
          const Status s = engine->submit({id, {1, static_cast<int32_t>(3 + id % 200)}, short_params()});
          if (!s.is_ok()) EXPECT_EQ(s.code(), ErrorCode::kClosed);
          if (id % 3 == 0) engine->cancel(id - 1);
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + round * 10));
    engine->close();
    stop = true;
    for (auto& c : clients) c.join();
    EXPECT_EQ(engine->stats().in_use_blocks, 0);
    EXPECT_EQ(engine->stats().running + engine->stats().waiting, 0);
  }
}

}  // namespace
}  // namespace pagedlm
