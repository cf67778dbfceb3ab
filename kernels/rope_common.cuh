// The rotation of one RoPE pair, shared by rope.cu and the fused RoPE + KV append (kv_append.cu), so both
// write the same bits: normal layout pairs adjacent dims, NeoX pairs dim i with dim i + rope_dim / 2.
#pragma once

#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

// dst's pair `pair` = src's rotated by `angle`; dst may be src.
__device__ __forceinline__ void rope_rotate_pair(const float* src, float* dst, int pair, int rope_dim, RopeLayout layout, float angle) {
  const int half = rope_dim / 2;
  const int i0 = layout == RopeLayout::kNormal ? 2 * pair : pair;
  const int i1 = layout == RopeLayout::kNormal ? 2 * pair + 1 : pair + half;
  float sin_a, cos_a;
  sincosf(angle, &sin_a, &cos_a);
  const float x0 = src[i0], x1 = src[i1];
  dst[i0] = x0 * cos_a - x1 * sin_a;
  dst[i1] = x0 * sin_a + x1 * cos_a;
}

}  // namespace pagedlm::cuda
