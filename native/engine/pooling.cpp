#include "engine/pooling.h"

#include <cmath>
#include <string>

namespace pagedlm {

Result<Pooling> pooling_for_type(int64_t pooling_type) {
  switch (pooling_type) {
    case kPoolingTypeAbsent:
    case kPoolingTypeNone:
    case kPoolingTypeMean: return Pooling::kMean;
    case kPoolingTypeCls: return Pooling::kCls;
    case kPoolingTypeLast: return Pooling::kLast;
    case kPoolingTypeRank:
      return Status(ErrorCode::kUnsupported, "the model's pooling_type is 'rank' (a reranker): pagedlm computes embeddings with mean, cls or last pooling");
    default:
      return Status(ErrorCode::kUnsupported, "the model's pooling_type " + std::to_string(pooling_type) + " is unknown (pagedlm pools by mean, cls or last)");
  }
}

const char* pooling_name(Pooling pooling) {
  switch (pooling) {
    case Pooling::kMean: return "mean";
    case Pooling::kCls: return "cls";
    case Pooling::kLast: return "last";
  }
  return "mean";
}

std::optional<Pooling> pooling_from_name(const std::string& name) {
  for (Pooling p : {Pooling::kMean, Pooling::kCls, Pooling::kLast}) {
    if (name == pooling_name(p)) return p;
  }
  return std::nullopt;
}

void EmbeddingPool::add(const float* rows, int32_t start, int32_t num_tokens, int32_t length) {
  const auto width = static_cast<size_t>(width_);
  if (start == 0 || sum_.empty()) {
    sum_.assign(width, 0.0);
    rows_ = 0;
  }
  const auto take = [&](int32_t row) {
    const float* r = rows + static_cast<size_t>(row) * width;
    for (size_t i = 0; i < width; ++i) sum_[i] = r[i];
    rows_ = 1;
  };
  switch (pooling_) {
    case Pooling::kMean:
      for (int32_t t = 0; t < num_tokens; ++t) {
        const float* r = rows + static_cast<size_t>(t) * width;
        for (size_t i = 0; i < width; ++i) sum_[i] += r[i];
      }
      rows_ += num_tokens;
      break;
    case Pooling::kCls:
      if (start == 0 && num_tokens > 0) take(0);
      break;
    case Pooling::kLast:
      if (start + num_tokens == length && num_tokens > 0) take(num_tokens - 1);
      break;
  }
}

std::vector<float> EmbeddingPool::result(bool normalize) const {
  std::vector<float> out(static_cast<size_t>(width_), 0.0f);
  if (rows_ > 0) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(sum_[i] / rows_);
  }
  if (normalize) l2_normalize(out);
  return out;
}

void l2_normalize(std::vector<float>& v) {
  double squares = 0;
  for (float x : v) squares += static_cast<double>(x) * x;
  if (squares <= 0) return;
  const double scale = 1.0 / std::sqrt(squares);
  for (float& x : v) x = static_cast<float>(x * scale);
}

}  // namespace pagedlm
