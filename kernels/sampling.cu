// Sampling on the device: penalties applied in place, greedy argmax (4 bytes back to the host), and the
// top-k candidates in the CPU sampler's order (k values back instead of the vocabulary).
// CPU twin: Sampler (native/engine/sampler.cpp).
#include <climits>
#include <cmath>

#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kRadixBits = 8;
constexpr int kBuckets = 1 << kRadixBits;

// ---- device helpers ----
__device__ __forceinline__ float ranked_value(float logit) { return logit != logit ? -INFINITY : logit; }

// An unsigned key in the order of the logits (NaN ranked as -inf, -0 as +0).
__device__ __forceinline__ uint32_t order_key(float logit) {
  float v = ranked_value(logit);
  if (v == 0.0f) v = 0.0f;
  const uint32_t bits = __float_as_uint(v);
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

__device__ __forceinline__ float key_value(uint32_t key) { return __uint_as_float(key & 0x80000000u ? key & 0x7fffffffu : ~key); }

// The sampler's order: larger value first, then lower id.
__device__ __forceinline__ bool ranks_before(float a, int a_id, float b, int b_id) { return a > b || (a == b && a_id < b_id); }
__device__ __forceinline__ bool key_ranks_before(uint32_t a, int a_id, uint32_t b, int b_id) { return a > b || (a == b && a_id < b_id); }

// ---- kernels ----
// One thread per (row, distinct token): a row's tokens are distinct, so no two threads touch one logit.
__global__ void __launch_bounds__(kThreads) penalties_kernel(PenaltyParams p) {
  const int row = blockIdx.x;
  const PenaltyRow penalty = p.penalties[row];
  float* logits = p.logits + static_cast<size_t>(row) * p.vocab;
  for (int i = p.row_starts[row] + threadIdx.x; i < p.row_starts[row + 1]; i += kThreads) {
    const int id = p.token_ids[i];
    if (id < 0 || id >= p.vocab) continue;
    float logit = logits[id];
    if (penalty.repetition != 1.0f) logit = logit > 0 ? logit / penalty.repetition : logit * penalty.repetition;
    logit -= static_cast<float>(p.token_counts[i]) * penalty.frequency + penalty.presence;
    logits[id] = logit;
  }
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(ArgmaxParams p) {
  __shared__ float warp_best[kWarps];
  __shared__ int warp_best_id[kWarps];
  const float* logits = p.logits + static_cast<size_t>(blockIdx.x) * p.vocab;
  float best = -INFINITY;
  int best_id = INT_MAX;
  for (int i = threadIdx.x; i < p.vocab; i += kThreads) {
    const float v = ranked_value(logits[i]);
    if (ranks_before(v, i, best, best_id)) best = v, best_id = i;
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_xor_sync(kFullMask, best, offset);
    const int other_id = __shfl_xor_sync(kFullMask, best_id, offset);
    if (ranks_before(other, other_id, best, best_id)) best = other, best_id = other_id;
  }
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  if (lane == 0) warp_best[warp] = best, warp_best_id[warp] = best_id;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kWarps; ++w) {
      if (ranks_before(warp_best[w], warp_best_id[w], best, best_id)) best = warp_best[w], best_id = warp_best_id[w];
    }
    p.ids[blockIdx.x] = best_id;
  }
}

// One block per row. A radix select (8 bits a pass, most significant first) finds the key of the k-th
// largest logit; the larger ones are gathered, then the ties at that key in id order, then k values sorted.
__global__ void __launch_bounds__(kThreads) top_k_kernel(TopKParams p) {
  __shared__ unsigned histogram[kBuckets];
  __shared__ uint32_t threshold;  // the bits of the k-th key found so far
  __shared__ int remaining;       // how many of the k lie at or below the current prefix
  __shared__ int greater;
  __shared__ int warp_counts[kWarps];
  __shared__ uint32_t keys[kMaxTopK];
  __shared__ int32_t ids[kMaxTopK];
  const float* logits = p.logits + static_cast<size_t>(blockIdx.x) * p.vocab;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  if (threadIdx.x == 0) {
    threshold = 0;
    remaining = p.k;
    greater = 0;
  }
  uint32_t mask = 0;
  for (int shift = 32 - kRadixBits; shift >= 0; shift -= kRadixBits) {
    for (int b = threadIdx.x; b < kBuckets; b += kThreads) histogram[b] = 0;
    __syncthreads();
    const uint32_t prefix = threshold;
    for (int i = threadIdx.x; i < p.vocab; i += kThreads) {
      const uint32_t key = order_key(logits[i]);
      if ((key & mask) == prefix) atomicAdd(&histogram[(key >> shift) & (kBuckets - 1)], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0;
      for (int b = kBuckets - 1; b >= 0; --b) {
        if (above + static_cast<int>(histogram[b]) >= remaining) {
          threshold = prefix | static_cast<uint32_t>(b) << shift;
          remaining -= above;
          break;
        }
        above += static_cast<int>(histogram[b]);
      }
    }
    mask |= static_cast<uint32_t>(kBuckets - 1) << shift;
    __syncthreads();
  }
  const uint32_t kth = threshold;
  const int ties = remaining;  // keys equal to kth that make the cut, lowest ids first
  for (int i = threadIdx.x; i < p.vocab; i += kThreads) {
    const uint32_t key = order_key(logits[i]);
    if (key > kth) {
      const int at = atomicAdd(&greater, 1);
      keys[at] = key;
      ids[at] = i;
    }
  }
  __syncthreads();
  const int first_tie = greater;
  int taken = 0;
  for (int base = 0; base < p.vocab && taken < ties; base += kThreads) {  // block-uniform
    const int i = base + static_cast<int>(threadIdx.x);
    const bool tie = i < p.vocab && order_key(logits[i]) == kth;
    const unsigned votes = __ballot_sync(kFullMask, tie);
    if (lane == 0) warp_counts[warp] = __popc(votes);
    __syncthreads();
    int rank = __popc(votes & ((1u << lane) - 1u)), total = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) rank += warp_counts[w];
      total += warp_counts[w];
    }
    if (tie && taken + rank < ties) {
      keys[first_tie + taken + rank] = kth;
      ids[first_tie + taken + rank] = i;
    }
    taken += total;
    __syncthreads();
  }
  // Bitonic sort of the k candidates, padded to a power of two with entries that rank last.
  int padded = 1;
  while (padded < p.k) padded <<= 1;
  for (int i = p.k + threadIdx.x; i < padded; i += kThreads) {
    keys[i] = 0;
    ids[i] = INT_MAX;
  }
  for (int size = 2; size <= padded; size <<= 1) {
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      __syncthreads();
      for (int i = threadIdx.x; i < padded; i += kThreads) {
        const int j = i ^ stride;
        if (j <= i) continue;
        const bool i_first = (i & size) == 0;
        if (key_ranks_before(keys[i], ids[i], keys[j], ids[j]) != i_first) {
          const uint32_t key = keys[i];
          const int32_t id = ids[i];
          keys[i] = keys[j], ids[i] = ids[j];
          keys[j] = key, ids[j] = id;
        }
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < p.k; i += kThreads) {
    p.ids[static_cast<size_t>(blockIdx.x) * p.k + i] = ids[i];
    p.values[static_cast<size_t>(blockIdx.x) * p.k + i] = key_value(keys[i]);
  }
}

}  // namespace

// ---- launchers ----
cudaError_t launch_penalties(const PenaltyParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.vocab <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(penalties_kernel, params.rows, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_argmax(const ArgmaxParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.vocab <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(argmax_kernel, params.rows, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_top_k(const TopKParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.vocab <= 0 || params.k < 1 || params.k > params.vocab || params.k > kMaxTopK) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(top_k_kernel, params.rows, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
