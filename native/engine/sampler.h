// Token sampling for one sequence: penalties, then greedy or temperature / top-k / top-p / min-p.
// Owns its random generator, so the same seed gives the same tokens. Engine thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace pagedlm {

struct SamplingParams {
  float temperature = 0.8f;        // 0 = greedy
  int32_t top_k = 40;              // 0 = off
  float top_p = 0.95f;             // 1 = off
  float min_p = 0.05f;             // 0 = off
  float repetition_penalty = 1.0f; // 1 = off; divides positive logits, multiplies negative ones
  float frequency_penalty = 0.0f;  // subtracted once per earlier occurrence
  float presence_penalty = 0.0f;   // subtracted once if the token occurred
  int32_t penalty_last_n = 64;     // how many recent tokens the penalties look at (-1 = all)
  std::optional<uint64_t> seed;    // none = nondeterministic
};

// One candidate's log-probability under the model's distribution: the log-softmax of the raw logits, before
// penalties, temperature and truncation (what vLLM reports by default), so the figures do not depend on the
// sampling settings. `bytes` is the token's text as the tokenizer writes it (filled by the engine).
struct LogprobEntry {
  int32_t token = -1;
  float logprob = 0.0f;
  std::string bytes;
};

// The sampled token's entry and the `top_n` most likely tokens, best first (ties: lower id first).
struct TokenLogprobs {
  LogprobEntry chosen;
  std::vector<LogprobEntry> top;
};

// Log-softmax of `logits` [vocab] computed in double (max subtracted first). NaN logits count as -inf.
TokenLogprobs compute_logprobs(const float* logits, int32_t vocab, int32_t token, int32_t top_n);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token from `logits` [vocab]; `history` is every token so far (prompt and generated).
  int32_t sample(const float* logits, int32_t vocab, const std::vector<int32_t>& history);
  // Greedy with no penalties: the token is the logits' argmax (lowest id on ties, NaN last), which a backend
  // can compute where the logits are.
  bool is_plain_greedy() const { return params_.temperature <= 0.0f && !has_penalties(); }
  // Sampling that only looks at the top_k largest logits (no penalties, top_k below the vocabulary): the
  // k best, sorted by value then id, are all it needs; 0 when it needs every logit.
  int32_t top_k_needed(int32_t vocab) const {
    return params_.temperature > 0.0f && !has_penalties() && params_.top_k > 0 && params_.top_k < vocab ? params_.top_k : 0;
  }
  // The same draw as sample() from the `count` >= top_k_needed() best candidates, in that order (greedy
  // samplers take the first).
  int32_t sample_top_k(const int32_t* ids, const float* values, int32_t count);

 private:
  struct Candidate {
    int32_t id;
    float value;  // logit, then probability
  };
  bool has_penalties() const {
    return params_.repetition_penalty != 1.0f || params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f;
  }
  void apply_penalties(std::vector<Candidate>& c, const std::vector<int32_t>& history) const;
  // Softmax with temperature, top-p, min-p and the draw over candidates sorted best first.
  int32_t sample_sorted(std::vector<Candidate>& c);
  int32_t draw(const std::vector<Candidate>& probabilities);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
};

}  // namespace pagedlm
