#include "support/prepared_matmul.h"

#include <algorithm>
#include <cmath>

namespace pagedlm::testing {
namespace {

template <typename Block>
std::vector<Block> quantize_tokens(void (*quantize)(const float*, int, Block*), size_t block_elements, const std::vector<float>& x, int n_tokens, int cols) {
  const size_t blocks_per_token = cols / block_elements;
  std::vector<Block> out(blocks_per_token * n_tokens);
  for (int t = 0; t < n_tokens; ++t) quantize(x.data() + static_cast<size_t>(t) * cols, cols, out.data() + t * blocks_per_token);
  return out;
}

}  // namespace

PreparedMatmul::PreparedMatmul(const CpuKernels& kernels, TensorType type, const std::vector<uint8_t>& weights, int rows, int cols, const std::vector<float>& x,
                               int n_tokens, bool pack)
    : kernels_(kernels), weights_(weights.size()), y_(static_cast<size_t>(n_tokens) * rows, NAN) {
  const size_t row_bytes = tensor_row_bytes(type, cols);
  if (pack) kernels.pack_rows(type, weights.data(), row_bytes, rows, weights_.data());
  else std::copy(weights.begin(), weights.end(), weights_.data());
  args_ = MatmulArgs{type, weights_.data(), row_bytes, cols, x.data(), n_tokens, y_.data(), rows, pack};
  if (multiplies_q8_activations(type) && kernels.quantize_q8 != nullptr) {
    xq_ = quantize_tokens(kernels.quantize_q8, kQ8BlockElements, x, n_tokens, cols);
    args_.xq = xq_.data();
  }
  if (multiplies_q8k_activations(type) && kernels.quantize_q8k != nullptr) {
    xk_ = quantize_tokens(kernels.quantize_q8k, kQKElements, x, n_tokens, cols);
    args_.xk = xk_.data();
  }
}

}  // namespace pagedlm::testing
