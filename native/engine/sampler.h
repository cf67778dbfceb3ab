// Token sampling for one sequence: penalties, then greedy or temperature / top-k / top-p / min-p.
// Owns its random generator, so the same seed gives the same tokens. Engine thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
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

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token from `logits` [vocab]; `history` is every token so far (prompt and generated).
  int32_t sample(const float* logits, int32_t vocab, const std::vector<int32_t>& history);
  // Greedy with no penalties: the token is the logits' argmax (lowest id on ties, NaN last), which a backend
  // can compute where the logits are.
  bool is_plain_greedy() const {
    return params_.temperature <= 0.0f && params_.repetition_penalty == 1.0f && params_.frequency_penalty == 0.0f &&
           params_.presence_penalty == 0.0f;
  }

 private:
  struct Candidate {
    int32_t id;
    float value;  // logit, then probability
  };
  void apply_penalties(std::vector<Candidate>& c, const std::vector<int32_t>& history) const;
  int32_t draw(const std::vector<Candidate>& probabilities);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
};

}  // namespace pagedlm
