// One matmul_rows call set up the way the CPU backend sets it up: the weights packed into the table's row
// groups when asked, and the activations quantized when the weight type's kernels multiply quantized
// activations. Shared by the kernel tests and bench/cpu. Test-only.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/kernels.h"
#include "common/huge_page_buffer.h"

namespace pagedlm::testing {

class PreparedMatmul {
 public:
  // `x` (n_tokens rows of `cols`) must outlive this. `pack`: copy the weights into `kernels`' packed layout
  // (the caller checks can_interleave_rows first).
  PreparedMatmul(const CpuKernels& kernels, TensorType type, const std::vector<uint8_t>& weights, int rows, int cols, const std::vector<float>& x, int n_tokens,
                 bool pack);
  PreparedMatmul(const PreparedMatmul&) = delete;  // args points into the members
  PreparedMatmul& operator=(const PreparedMatmul&) = delete;

  const MatmulArgs& args() const { return args_; }
  // Rows [begin, end) for every token, into y() (filled with NaN at construction).
  void run(int row_begin, int row_end, float* scratch) const { kernels_.matmul_rows(args_, row_begin, row_end, scratch); }
  const std::vector<float>& y() const { return y_; }

 private:
  const CpuKernels& kernels_;
  HugePageBuffer weights_;  // as the engine keeps its packed weights
  std::vector<ActivationBlockQ8> xq_;
  std::vector<ActivationBlockQ8K> xk_;
  std::vector<float> y_;
  MatmulArgs args_;
};

}  // namespace pagedlm::testing
