#include "backend/cpu/block_attention.h"

#include "backend/cpu/ops.h"

#include <algorithm>
#include <cmath>

namespace pagedlm {

namespace {
template <typename Element>
void attend_rows(const CpuKernels& kernels, void (*dot_rows)(const Element*, int, int, const float*, float*),
                 void (*axpy_rows)(const float*, const Element*, int, int, float*), const Element* k, const Element* v, int n, int d,
                 const AttentionRows& rows, float* scores) {
  for (int r = 0; r < rows.rows; ++r) {
    dot_rows(k, n, d, rows.q + static_cast<size_t>(r) * d, scores);
    float block_max = -INFINITY;
    for (int p = 0; p < n; ++p) scores[p] *= rows.scale;
    if (rows.softcap > 0) softcap(scores, n, rows.softcap);
    for (int p = 0; p < n; ++p) block_max = std::max(block_max, scores[p]);
    // Online softmax: rescale what was summed under the old maximum.
    const float new_max = std::max(rows.row_max[r], block_max);
    const float correction = std::exp(rows.row_max[r] - new_max);
    float* out = rows.acc + static_cast<size_t>(r) * d;
    if (correction != 1.0f) {
      for (int i = 0; i < d; ++i) out[i] *= correction;
    }
    rows.row_sum[r] = rows.row_sum[r] * correction + kernels.exp_sum(scores, n, new_max);
    rows.row_max[r] = new_max;
    axpy_rows(scores, v, n, d, out);
  }
}
}  // namespace

void attend_block_by_rows(const CpuKernels& kernels, const float* k, const float* v, int n, int d, const AttentionRows& rows, float* scores) {
  attend_rows(kernels, kernels.dot_rows_f32, kernels.axpy_rows_f32, k, v, n, d, rows, scores);
}

void attend_block_by_rows(const CpuKernels& kernels, const uint16_t* k, const uint16_t* v, int n, int d, const AttentionRows& rows, float* scores) {
  attend_rows(kernels, kernels.dot_rows_f16, kernels.axpy_rows_f16, k, v, n, d, rows, scores);
}

void attend_block(const CpuKernels& kernels, const float* k, const float* v, int n, int d, const AttentionRows& rows, float* scores) {
  if (kernels.attend_block_f32 != nullptr) return kernels.attend_block_f32(k, v, n, d, rows);
  attend_block_by_rows(kernels, k, v, n, d, rows, scores);
}

void attend_block(const CpuKernels& kernels, const uint16_t* k, const uint16_t* v, int n, int d, const AttentionRows& rows, float* scores) {
  if (kernels.attend_block_f16 != nullptr) return kernels.attend_block_f16(k, v, n, d, rows);
  attend_block_by_rows(kernels, k, v, n, d, rows, scores);
}

}  // namespace pagedlm
