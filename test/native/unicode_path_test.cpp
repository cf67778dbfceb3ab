// Paths are UTF-8 on every system. A model, its header and a cache file in a folder whose name is not ASCII:
// on Windows the engine converts each path to UTF-16 before opening it (platform.h), where a narrow-string
// open would look for other names and fail.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/platform.h"
#include "engine/engine.h"
#include "model/gguf.h"
#include "support/event_collector.h"
#include "support/shared_models.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

class NonAsciiFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = testing::temp_path("modèles-模型");
    std::error_code error;
    std::filesystem::remove_all(native_path(folder_), error);
    ASSERT_FALSE(error) << error.message();
    ASSERT_TRUE(std::filesystem::create_directories(native_path(folder_)));
  }
  // Removing the folder fails on Windows while a file in it is still open or mapped.
  void TearDown() override {
    std::error_code error;
    std::filesystem::remove_all(native_path(folder_), error);
    EXPECT_FALSE(error) << error.message();
  }
  std::string copy_in(const std::string& from, const std::string& name) const {
    const std::string to = folder_ + "/" + name;
    std::filesystem::copy_file(native_path(from), native_path(to));
    // The shared models are read-only, and so would the copy be: Windows then refuses to delete it.
    std::filesystem::permissions(native_path(to), std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    return to;
  }
  std::string folder_;
};

struct LoadedEngine {
  explicit LoadedEngine(const std::string& path, bool mmap = true) {
    auto loaded = Engine::load(path, EngineOptions{.threads = 2, .use_mmap = mmap}, &events);
    EXPECT_TRUE(loaded.is_ok()) << loaded.status().message();
    if (loaded.is_ok()) engine = loaded.take();
  }
  std::vector<int32_t> greedy(const std::string& prompt, int tokens) {
    GenerateParams p;
    p.max_tokens = tokens;
    p.ignore_eos = true;
    p.sampling.temperature = 0;
    EXPECT_TRUE(engine->submit({++next, engine->tokenizer().encode(prompt), p}).is_ok());
    const EngineEvent done = events.wait(next);
    EXPECT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    return done.tokens;
  }
  testing::EventCollector events;
  std::unique_ptr<Engine> engine;
  RequestId next = 0;
};

TEST_F(NonAsciiFolder, EngineLoadsTheModelAndAnswersAsFromItsFirstPlace) {
  PAGEDLM_REQUIRE_SHARED_MODEL(original, "aidreams260K.gguf");
  const std::string copy = copy_in(original, "aidreams-ünï.gguf");
  LoadedEngine reference(original);
  ASSERT_TRUE(reference.engine);
  const std::vector<int32_t> expected = reference.greedy("A neural network", 24);
  ASSERT_EQ(expected.size(), 24u);
  for (const bool mmap : {true, false}) {
    LoadedEngine moved(copy, mmap);
    ASSERT_TRUE(moved.engine) << "mmap " << mmap;
    EXPECT_EQ(moved.greedy("A neural network", 24), expected) << "mmap " << mmap;
  }
}

TEST_F(NonAsciiFolder, HeaderReadsAndMissingFilesNameTheirPath) {
  PAGEDLM_REQUIRE_SHARED_MODEL(original, "stories260K.gguf");
  const std::string copy = copy_in(original, "stories-故事.gguf");
  auto header = GgufFile::read_header(copy);
  ASSERT_TRUE(header.is_ok()) << header.status().message();
  EXPECT_EQ(header.value().tensors().size(), GgufFile::read_header(original).value().tensors().size());
  const std::string missing = folder_ + "/absent-ß.gguf";
  auto opened = GgufFile::open(missing);
  ASSERT_FALSE(opened.is_ok());
  EXPECT_EQ(opened.status().code(), ErrorCode::kIo);
  EXPECT_NE(opened.status().message().find(missing), std::string::npos) << opened.status().message();
}

TEST_F(NonAsciiFolder, CacheFileSavesAndLoadsBack) {
  PAGEDLM_REQUIRE_SHARED_MODEL(original, "aidreams260K.gguf");
  const std::string model = copy_in(original, "aidreams.gguf");
  const std::string cache = folder_ + "/préfixes-缓存.pgkv";
  {
    LoadedEngine first(model);
    ASSERT_TRUE(first.engine);
    first.greedy("In the quiet hum of the servers", 40);
    const auto saved = first.engine->save_cache(cache);
    ASSERT_TRUE(saved.is_ok()) << saved.status().message();
    ASSERT_GT(saved.value(), 0);
    // Saving again replaces the file (on Windows a rename onto an existing file fails unless told to replace).
    ASSERT_TRUE(first.engine->save_cache(cache).is_ok());
  }
  EXPECT_TRUE(std::filesystem::exists(native_path(cache)));
  LoadedEngine second(model);
  ASSERT_TRUE(second.engine);
  const auto loaded = second.engine->load_cache(cache);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_GT(loaded.value(), 0);
}

}  // namespace
}  // namespace pagedlm
