// Embeddings: how a sequence's hidden states (the output of the model's final norm, one row per token) are
// pooled into one vector, chosen by the GGUF's <arch>.pooling_type as llama.cpp numbers it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace pagedlm {

enum class Pooling {
  kMean,  // the average of every token's row
  kCls,   // the first token's row
  kLast,  // the last token's row
};

// llama.cpp's llama_pooling_type values, as stored in <arch>.pooling_type.
constexpr int64_t kPoolingTypeAbsent = -1;
constexpr int64_t kPoolingTypeNone = 0;
constexpr int64_t kPoolingTypeMean = 1;
constexpr int64_t kPoolingTypeCls = 2;
constexpr int64_t kPoolingTypeLast = 3;
constexpr int64_t kPoolingTypeRank = 4;

// The pooling for a model's pooling_type. 'none' and an absent key (a decoder LLM that was not converted
// for embeddings) pool by mean, which weighs every token of the text alike. 'rank' (a reranker's score
// head) and unknown values are kUnsupported.
Result<Pooling> pooling_for_type(int64_t pooling_type);
const char* pooling_name(Pooling pooling);
// "mean", "cls" or "last"; nullopt for any other name.
std::optional<Pooling> pooling_from_name(const std::string& name);

// Pools a sequence's hidden rows as its chunks are computed (a prompt may take several steps). Starting
// over from position 0 (after a preemption) discards what was pooled before.
class EmbeddingPool {
 public:
  EmbeddingPool(Pooling pooling, int32_t width) : pooling_(pooling), width_(width) {}

  // `rows`: [num_tokens, width], the hidden states of positions [start, start + num_tokens) of a sequence
  // of `length` tokens.
  void add(const float* rows, int32_t start, int32_t num_tokens, int32_t length);
  // The pooled vector, scaled to unit L2 norm when `normalize` (a zero vector stays zero).
  std::vector<float> result(bool normalize) const;
  Pooling pooling() const { return pooling_; }

 private:
  Pooling pooling_;
  int32_t width_;
  std::vector<double> sum_;  // kMean: the sum of the rows so far; else the chosen row
  int32_t rows_ = 0;         // rows in sum_
};

void l2_normalize(std::vector<float>& v);

}  // namespace pagedlm
