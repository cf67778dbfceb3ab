// The draft-model proposer against the target's own greedy decoding: same-model proposals, catch-up after a
// rejection, batching across keys, block bookkeeping, vocabulary checks and a pool too small to draft in.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "speculative/draft_proposer.h"
#include "support/event_collector.h"
#include "support/shared_models.h"
#include "support/synthetic_model.h"

namespace pagedlm::speculative {
namespace {

using testing::EventCollector;

const std::vector<int32_t> kNeuralNetwork = {1, 429, 471, 324, 430, 291, 290, 324, 323, 449, 284, 453};
const std::vector<int32_t> kQuietHum = {1, 303, 433, 312, 429, 472, 444, 432, 323, 392, 275, 312, 266, 261, 452, 288};

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  auto file = GgufFile::open(path);
  EXPECT_TRUE(file.is_ok()) << file.status().message();
  auto tokenizer = Tokenizer::from_gguf(file.value());
  EXPECT_TRUE(tokenizer.is_ok()) << tokenizer.status().message();
  return tokenizer.take();
}

// The target model's greedy continuation of `prompt`, from the engine decoding plainly.
std::vector<int32_t> greedy_continuation(const std::string& path, const std::vector<int32_t>& prompt, int32_t tokens) {
  EventCollector events;
  EngineOptions options;
  options.threads = 2;
  auto engine = Engine::load(path, options, &events);
  EXPECT_TRUE(engine.is_ok()) << engine.status().message();
  GenerateRequest request{1, prompt, {}};
  request.params.max_tokens = tokens;
  request.params.sampling.temperature = 0;
  request.params.ignore_eos = true;
  EXPECT_TRUE(engine.value()->submit(std::move(request)).is_ok());
  const EngineEvent done = events.wait(1);
  EXPECT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
  return done.tokens;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b, size_t b_tokens) {
  a.insert(a.end(), b.begin(), b.begin() + static_cast<std::ptrdiff_t>(b_tokens));
  return a;
}

class DraftProposerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_path_ = testing::shared_model("aidreams260K.gguf");
    if (target_path_.empty()) GTEST_SKIP() << "shared test model aidreams260K.gguf not found (set PAGEDLM_MODELS_DIR)";
    target_tokenizer_ = load_tokenizer(target_path_);
  }

  // A draft proposer on the target model itself, drafting every token (no early stop) unless `options` say.
  std::unique_ptr<DraftProposer> make(DraftModelOptions options = {}, bool keep_min_probability = false) {
    if (options.path.empty()) options.path = target_path_;
    if (!keep_min_probability) options.min_probability = 0;
    auto created = DraftProposer::create(options, *target_tokenizer_, pool_);
    EXPECT_TRUE(created.is_ok()) << created.status().message();
    return created.is_ok() ? created.take() : nullptr;
  }

  static std::vector<int32_t> propose_one(DraftProposer& proposer, uint64_t key, const std::vector<int32_t>& tokens, int32_t max_tokens) {
    std::vector<std::vector<int32_t>> out;
    proposer.propose({DraftRequest{key, &tokens, max_tokens}}, out);
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? std::vector<int32_t>{} : out[0];
  }

  std::string target_path_;
  std::unique_ptr<Tokenizer> target_tokenizer_;
  std::shared_ptr<ThreadPool> pool_ = std::make_shared<ThreadPool>(2);
};

TEST_F(DraftProposerTest, SameModelProposesTheTargetsGreedyContinuation) {
  const std::vector<int32_t> expected = greedy_continuation(target_path_, kNeuralNetwork, 20);
  ASSERT_EQ(expected.size(), 20u);
  auto proposer = make();
  ASSERT_TRUE(proposer);
  EXPECT_EQ(propose_one(*proposer, 7, kNeuralNetwork, 8), std::vector<int32_t>(expected.begin(), expected.begin() + 8));
  ASSERT_EQ(proposer->last_probabilities().size(), 1u);
  ASSERT_EQ(proposer->last_probabilities()[0].size(), 8u);
  for (float p : proposer->last_probabilities()[0]) {
    EXPECT_GT(p, 0.0f);
    EXPECT_LE(p, 1.0f);
  }
  // The target accepted 5 of them and added its own 6th: the next proposal continues from there.
  EXPECT_EQ(propose_one(*proposer, 7, concat(kNeuralNetwork, expected, 6), 8), std::vector<int32_t>(expected.begin() + 6, expected.begin() + 14));
  // Every token accepted, plus the target's next one.
  EXPECT_EQ(propose_one(*proposer, 7, concat(kNeuralNetwork, expected, 15), 5), std::vector<int32_t>(expected.begin() + 15, expected.end()));
}

TEST_F(DraftProposerTest, ADifferentDraftModelProposesItsOwnGreedyContinuation) {
  PAGEDLM_REQUIRE_SHARED_MODEL(draft_path, "stories260K.gguf");  // tok512's vocabulary, as aidreams260K
  const std::vector<int32_t> expected = greedy_continuation(draft_path, kQuietHum, 6);
  DraftModelOptions options;
  options.path = draft_path;
  auto proposer = make(options);
  ASSERT_TRUE(proposer);
  EXPECT_EQ(proposer->model_config().n_layers, 5);
  EXPECT_EQ(propose_one(*proposer, 1, kQuietHum, 6), expected);
}

TEST_F(DraftProposerTest, CatchUpAfterARejectionMatchesAFreshProposer) {
  auto proposer = make();
  ASSERT_TRUE(proposer);
  const std::vector<int32_t> first = propose_one(*proposer, 3, kQuietHum, 6);
  ASSERT_EQ(first.size(), 6u);
  // The target kept the first proposed token, then chose another than the second.
  std::vector<int32_t> history = concat(kQuietHum, first, 1);
  history.push_back(first[1] == 300 ? 301 : 300);
  const std::vector<int32_t> caught_up = propose_one(*proposer, 3, history, 6);
  auto fresh = make();
  EXPECT_EQ(caught_up, propose_one(*fresh, 3, history, 6));
  EXPECT_EQ(caught_up.size(), 6u);
  // A history that diverges inside what the draft computed as prompt.
  std::vector<int32_t> edited(kQuietHum.begin(), kQuietHum.begin() + 9);
  edited.push_back(400);
  auto fresh_again = make();
  EXPECT_EQ(propose_one(*proposer, 3, edited, 4), propose_one(*fresh_again, 3, edited, 4));
}

TEST_F(DraftProposerTest, BatchedKeysProposeWhatEachAloneWould) {
  std::vector<int32_t> long_prompt = kNeuralNetwork;
  long_prompt.insert(long_prompt.end(), kQuietHum.begin() + 1, kQuietHum.end());
  const std::vector<std::vector<int32_t>> prompts = {kNeuralNetwork, kQuietHum, long_prompt, {1}};
  const std::vector<int32_t> max_tokens = {5, 3, 8, 1};
  DraftModelOptions options;
  options.max_batch_tokens = 10;  // catch-up takes several passes, mixing chunks of different sequences
  auto batched = make(options);
  ASSERT_TRUE(batched);
  std::vector<DraftRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) requests.push_back(DraftRequest{100 + i, &prompts[i], max_tokens[i]});
  std::vector<std::vector<int32_t>> out;
  batched->propose(requests, out);
  ASSERT_EQ(out.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto alone = make();
    EXPECT_EQ(out[i], propose_one(*alone, 1, prompts[i], max_tokens[i])) << "request " << i;
    EXPECT_EQ(out[i].size(), static_cast<size_t>(max_tokens[i]));
    EXPECT_EQ(batched->last_probabilities()[i].size(), out[i].size());
  }
  // A second round: each sequence accepted part of its proposal, one sequence is gone.
  batched->forget(101);
  std::vector<std::vector<int32_t>> histories = {concat(prompts[0], out[0], 2), concat(prompts[2], out[2], 8), concat(prompts[3], out[3], 1)};
  std::vector<DraftRequest> next = {{100, &histories[0], 4}, {102, &histories[1], 4}, {103, &histories[2], 4}};
  std::vector<std::vector<int32_t>> next_out;
  batched->propose(next, next_out);
  for (size_t i = 0; i < histories.size(); ++i) {
    auto alone = make();
    EXPECT_EQ(next_out[i], propose_one(*alone, 1, histories[i], 4)) << "request " << i;
  }
}

TEST_F(DraftProposerTest, ForgetAndTruncationReleaseBlocks) {
  DraftModelOptions options;
  options.block_size = 4;
  auto proposer = make(options);
  ASSERT_TRUE(proposer);
  const int32_t total = proposer->total_blocks();
  EXPECT_EQ(proposer->free_blocks(), total);
  propose_one(*proposer, 1, kQuietHum, 8);  // 16 tokens + 7 drafted ones computed: 6 blocks
  propose_one(*proposer, 2, kNeuralNetwork, 4);  // 12 + 3: 4 blocks
  EXPECT_EQ(proposer->free_blocks(), total - 10);
  // Key 1's sequence diverges at its 6th token: it keeps the blocks of the first 5 and holds 3 for 6 tokens
  // and 3 drafted ones.
  const std::vector<int32_t> diverged = {1, 303, 433, 312, 429, 300};
  propose_one(*proposer, 1, diverged, 4);
  EXPECT_EQ(proposer->free_blocks(), total - 4 - 3);
  proposer->forget(1);
  proposer->forget(2);
  proposer->forget(99);  // unknown: nothing to do
  EXPECT_EQ(proposer->free_blocks(), total);
}

TEST_F(DraftProposerTest, DefaultPoolHoldsFourContexts) {
  DraftModelOptions options;
  options.block_size = 16;
  auto proposer = make(options);
  ASSERT_TRUE(proposer);
  EXPECT_EQ(proposer->context_length(), 128);  // aidreams260K's own
  EXPECT_EQ(proposer->total_blocks(), 128 / 16 * kDefaultDraftContexts);
}

TEST_F(DraftProposerTest, APoolTooSmallProposesNothing) {
  DraftModelOptions options;
  options.block_size = 16;
  options.kv_blocks = 1;
  auto proposer = make(options);
  ASSERT_TRUE(proposer);
  // 16 prompt tokens fill the only block: one token can be drafted (its own K/V is never computed).
  EXPECT_EQ(propose_one(*proposer, 1, kQuietHum, 4).size(), 1u);
  // 17 tokens need a second block: nothing, and the key's block goes back to the pool.
  const std::vector<int32_t> longer = concat(kQuietHum, kNeuralNetwork, 1);
  EXPECT_TRUE(propose_one(*proposer, 1, longer, 4).empty());
  EXPECT_EQ(proposer->free_blocks(), 1);
  // Two sequences that each fit alone: the first takes the block, the second gets nothing.
  const std::vector<int32_t> a = {1, 429, 471}, b = {1, 303, 433};
  std::vector<std::vector<int32_t>> out;
  proposer->propose({{5, &a, 3}, {6, &b, 3}}, out);
  EXPECT_EQ(out[0].size(), 3u);
  EXPECT_TRUE(out[1].empty());
  EXPECT_TRUE(proposer->last_probabilities()[1].empty());
}

TEST_F(DraftProposerTest, ContextLengthCapsTheProposal) {
  DraftModelOptions options;
  options.context_length = 18;
  auto proposer = make(options);
  ASSERT_TRUE(proposer);
  EXPECT_EQ(propose_one(*proposer, 1, kQuietHum, 8).size(), 3u);  // positions 16, 17 and the 19th token
  EXPECT_TRUE(propose_one(*proposer, 2, concat(kQuietHum, kNeuralNetwork, 3), 8).empty());
}

TEST_F(DraftProposerTest, StopsAtATokenBelowMinProbability) {
  auto everything = make();
  ASSERT_TRUE(everything);
  const std::vector<int32_t> all = propose_one(*everything, 1, kNeuralNetwork, 16);
  const std::vector<float> all_probabilities = everything->last_probabilities()[0];
  ASSERT_EQ(all.size(), 16u);
  DraftModelOptions options;
  options.min_probability = 0.5f;
  auto cautious = make(options, true);
  const std::vector<int32_t> some = propose_one(*cautious, 1, kNeuralNetwork, 16);
  ASSERT_LE(some.size(), all.size());
  EXPECT_EQ(some, std::vector<int32_t>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(some.size())));
  for (size_t i = 0; i < some.size(); ++i) EXPECT_GE(all_probabilities[i], 0.5f);
  ASSERT_LT(some.size(), all.size());  // the tiny model is unsure somewhere in 16 tokens
  EXPECT_LT(all_probabilities[some.size()], 0.5f);
  // Above any probability: nothing is ever proposed, and nothing fails.
  options.min_probability = 1.5f;
  auto never = make(options, true);
  EXPECT_TRUE(propose_one(*never, 1, kNeuralNetwork, 4).empty());
}

TEST_F(DraftProposerTest, EmptyOrZeroRequestsProposeNothing) {
  auto proposer = make();
  ASSERT_TRUE(proposer);
  const std::vector<int32_t> none;
  std::vector<std::vector<int32_t>> out = {{1, 2, 3}};
  proposer->propose({{1, &none, 4}, {2, &kQuietHum, 0}, {3, nullptr, 4}}, out);
  ASSERT_EQ(out.size(), 3u);
  for (const auto& proposal : out) EXPECT_TRUE(proposal.empty());
  EXPECT_EQ(proposer->free_blocks(), proposer->total_blocks());
}

TEST_F(DraftProposerTest, AnotherVocabularyFailsWithAClearStatus) {
  testing::SyntheticSpec spec;
  spec.vocab = 320;
  DraftModelOptions options;
  options.path = testing::write_synthetic_model(spec, "draft-vocab-320.gguf");
  auto smaller = DraftProposer::create(options, *target_tokenizer_, pool_);
  ASSERT_FALSE(smaller.is_ok());
  EXPECT_EQ(smaller.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(smaller.status().message().find("vocabulary differs from the target's: it has 320 tokens, the target 512"), std::string::npos)
      << smaller.status().message();
  EXPECT_NE(smaller.status().message().find("draft-vocab-320.gguf"), std::string::npos);
  // Same size, same BOS/EOS, other texts.
  spec.vocab = 512;
  options.path = testing::write_synthetic_model(spec, "draft-vocab-512.gguf");
  auto other_text = DraftProposer::create(options, *target_tokenizer_, pool_);
  ASSERT_FALSE(other_text.is_ok());
  EXPECT_EQ(other_text.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(other_text.status().message().find("vocabulary differs from the target's: token "), std::string::npos) << other_text.status().message();
  options.path = testing::temp_path("no-such-draft.gguf");
  auto missing = DraftProposer::create(options, *target_tokenizer_, pool_);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("draft model '"), std::string::npos) << missing.status().message();
}

TEST_F(DraftProposerTest, SameVocabularyCheck) {
  PAGEDLM_REQUIRE_SHARED_MODEL(stories, "stories260K.gguf");
  EXPECT_TRUE(check_same_vocabulary(*target_tokenizer_, *load_tokenizer(stories)).is_ok());
  EXPECT_TRUE(check_same_vocabulary(*target_tokenizer_, *target_tokenizer_).is_ok());
}

TEST_F(DraftProposerTest, RunsOnTheTargetBackendsWorkers) {
  auto file = GgufFile::open(target_path_);
  ASSERT_TRUE(file.is_ok());
  auto model = LlamaModel::load(file.take());
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const ModelConfig& c = model.value()->config();
  auto target = CpuBackend::create(model.value(), KvLayout{c.n_layers, c.n_kv_heads, c.head_dim, 16, 8, KvDtype::kF16, KvDtype::kF16}, 2);
  ASSERT_TRUE(target.is_ok()) << target.status().message();
  DraftModelOptions options;
  options.path = target_path_;
  options.min_probability = 0;
  auto proposer = DraftProposer::create(options, *target_tokenizer_, target.value()->thread_pool());
  ASSERT_TRUE(proposer.is_ok()) << proposer.status().message();
  EXPECT_EQ(target.value()->thread_pool().use_count(), 2);  // the target backend and the draft's
  // Target and draft passes take turns on the one pool, as they do on the engine thread.
  const std::vector<BlockId> table = {0};
  ForwardBatch batch;
  batch.tokens = {1, 429, 471};
  batch.sequences.push_back(BatchSequence{0, 3, 0, table.data(), true});
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  ASSERT_TRUE(target.value()->forward(batch, logits.data()).is_ok());
  std::vector<std::vector<int32_t>> out;
  proposer.value()->propose({{1, &kNeuralNetwork, 3}}, out);
  EXPECT_EQ(out[0], std::vector<int32_t>({431, 279, 438}));  // run.c's greedy continuation (shared/models/README.md)
  ASSERT_TRUE(target.value()->forward(batch, logits.data()).is_ok());
}

TEST(DraftProposerOwnPool, RunsWithoutASharedPool) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "aidreams260K.gguf");
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(path);
  DraftModelOptions options;
  options.path = path;
  options.threads = 1;
  options.min_probability = 0;
  auto proposer = DraftProposer::create(options, *tokenizer, nullptr);
  ASSERT_TRUE(proposer.is_ok()) << proposer.status().message();
  std::vector<std::vector<int32_t>> out;
  proposer.value()->propose({{1, &kNeuralNetwork, 3}}, out);
  EXPECT_EQ(out[0], std::vector<int32_t>({431, 279, 438}));  // run.c's greedy continuation (shared/models/README.md)
}

}  // namespace
}  // namespace pagedlm::speculative
