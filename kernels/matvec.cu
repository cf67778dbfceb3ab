// The decode steps' matrix x a few vectors product (up to kMaxMatvecTokens tokens, the weights read once),
// with the RMSNorm before it and the bias, residual add or SwiGLU after it folded into the same launch.
// CPU twin: rms_norm, dequantize_row and a double dot product.
#include <cstdint>

#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kLoadBytes = 16;
constexpr int kQ8Block = 32;

// Weight rows a warp reads side by side (more 16-byte loads in flight per lane); fewer with more tokens, whose
// accumulators take the registers.
__host__ __device__ constexpr int rows_per_warp(int tokens) { return tokens <= 2 ? 4 : 2; }

// Elements of a row held by one 16-byte load.
template <TensorType kType>
__host__ __device__ constexpr int chunk_elements() {
  return kType == TensorType::kF32 ? 4 : kType == TensorType::kQ8_0 ? 16 : 8;
}

// Element bytes of a row as the device keeps it (Q8_0: the int8 quants; the scales are a separate table).
__host__ __device__ constexpr int element_bytes(TensorType type) { return type == TensorType::kF32 ? 4 : type == TensorType::kQ8_0 ? 1 : 2; }

__device__ __forceinline__ float low_half(int word, bool bfloat) {
  const uint16_t h = static_cast<uint16_t>(static_cast<uint32_t>(word));
  return bfloat ? bfloat_to_float(h) : half_to_float(h);
}
__device__ __forceinline__ float high_half(int word, bool bfloat) {
  const uint16_t h = static_cast<uint16_t>(static_cast<uint32_t>(word) >> 16);
  return bfloat ? bfloat_to_float(h) : half_to_float(h);
}

// Elements [4 * group, 4 * group + 4) of a 16-byte chunk, times `scale` (Q8_0's block scale, 1 otherwise).
template <TensorType kType>
__device__ __forceinline__ void decode_group(const int4& packed, int group, float scale, float out[4]) {
  const int words[4] = {packed.x, packed.y, packed.z, packed.w};
  if constexpr (kType == TensorType::kF32) {
    for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(static_cast<uint32_t>(words[i]));
  } else if constexpr (kType == TensorType::kQ8_0) {
    const int word = words[group];
    for (int i = 0; i < 4; ++i) out[i] = scale * static_cast<float>(static_cast<int8_t>(word >> (8 * i)));
  } else {
    constexpr bool kBfloat = kType == TensorType::kBF16;
    const int a = words[2 * group], b = words[2 * group + 1];
    out[0] = low_half(a, kBfloat), out[1] = high_half(a, kBfloat), out[2] = low_half(b, kBfloat), out[3] = high_half(b, kBfloat);
  }
}

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }

// 1 / RMS of each token's x row, written to inv_rms[kTokens] in shared memory by the whole block.
template <int kTokens>
__device__ __forceinline__ void token_inverse_rms(const MatvecParams& p, float* inv_rms) {
  __shared__ float partial[kWarps][kTokens];
  const int cols = p.weights.cols;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  for (int t = 0; t < kTokens; ++t) {
    const float* x = p.x + static_cast<size_t>(min(t, p.n_tokens - 1)) * cols;
    float sum = 0.0f;
    for (int c = 4 * threadIdx.x; c < cols; c += 4 * kThreads) {
      const float4 v = load4(x + c);
      sum += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    sum = warp_sum(sum);
    if (lane == 0) partial[warp][t] = sum;
  }
  __syncthreads();
  if (threadIdx.x < kTokens) {
    float total = 0.0f;
    for (int w = 0; w < kWarps; ++w) total += partial[w][threadIdx.x];
    inv_rms[threadIdx.x] = rsqrtf(total / static_cast<float>(cols) + p.norm_eps);
  }
  __syncthreads();
}

// The weight row that slot j of this warp reads. kSwiglu: the first half of the slots are gate rows, the
// second half the matching up rows (R/2 further); otherwise consecutive rows.
template <int kRowsPerWarp>
__device__ __forceinline__ int slot_row(const MatvecParams& p, int warp_index, int j) {
  if (p.output != MatvecOutput::kSwiglu) return warp_index * kRowsPerWarp + j;
  constexpr int kPairs = kRowsPerWarp / 2;
  const int output = warp_index * kPairs + j % kPairs;
  return j < kPairs ? output : p.weights.rows / 2 + output;
}

template <int kRowsPerWarp>
__device__ __forceinline__ bool slot_present(const MatvecParams& p, int warp_index, int j) {
  if (p.output != MatvecOutput::kSwiglu) return warp_index * kRowsPerWarp + j < p.weights.rows;
  constexpr int kPairs = kRowsPerWarp / 2;
  return warp_index * kPairs + j % kPairs < p.weights.rows / 2;
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// ---- kernel ----
// A block of kWarps warps; each warp reads kRowsPerWarp weight rows, every lane taking 16-byte chunks of
// all of them (a warp streams 512 contiguous bytes of each row per step) against every token's x.
template <TensorType kType, int kTokens, bool kNorm>
__global__ void __launch_bounds__(kThreads) matvec_kernel(MatvecParams p) {
  __shared__ float inv_rms[kTokens];
  if constexpr (kNorm) token_inverse_rms<kTokens>(p, inv_rms);
  constexpr int kChunk = chunk_elements<kType>();
  constexpr int kRowsPerWarp = rows_per_warp(kTokens);
  const DeviceMatrix& w = p.weights;
  const int cols = w.cols, lane = threadIdx.x % kWarpSize;
  const int warp_index = blockIdx.x * kWarps + threadIdx.x / kWarpSize;
  const size_t row_bytes = static_cast<size_t>(cols) * element_bytes(kType);
  int row_index[kRowsPerWarp];  // clamped to row 0 where the slot has no row, so its loads stay in bounds
  bool present[kRowsPerWarp];
  for (int j = 0; j < kRowsPerWarp; ++j) {
    present[j] = slot_present<kRowsPerWarp>(p, warp_index, j);
    row_index[j] = present[j] ? slot_row<kRowsPerWarp>(p, warp_index, j) : 0;
  }
  const float* xs[kTokens];
  for (int t = 0; t < kTokens; ++t) xs[t] = p.x + static_cast<size_t>(min(t, p.n_tokens - 1)) * cols;

  float acc[kRowsPerWarp][kTokens];
  for (int j = 0; j < kRowsPerWarp; ++j)
    for (int t = 0; t < kTokens; ++t) acc[j][t] = 0.0f;
  for (int chunk = lane; chunk < cols / kChunk; chunk += kWarpSize) {
    int4 packed[kRowsPerWarp];
    float scale[kRowsPerWarp];
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const size_t row = static_cast<size_t>(row_index[j]);
      packed[j] = *reinterpret_cast<const int4*>(static_cast<const uint8_t*>(w.data) + row * row_bytes + static_cast<size_t>(chunk) * kLoadBytes);
      scale[j] = 1.0f;
      if constexpr (kType == TensorType::kQ8_0) scale[j] = half_to_float(w.scales[row * (cols / kQ8Block) + chunk * kChunk / kQ8Block]);
    }
#pragma unroll
    for (int g = 0; g < kChunk / 4; ++g) {
      const int c = chunk * kChunk + 4 * g;
      float wv[kRowsPerWarp][4];
      for (int j = 0; j < kRowsPerWarp; ++j) decode_group<kType>(packed[j], g, scale[j], wv[j]);
      float4 nw = {1.0f, 1.0f, 1.0f, 1.0f};
      if constexpr (kNorm) nw = load4(p.norm_weight + c);
      for (int t = 0; t < kTokens; ++t) {
        float4 xv = load4(xs[t] + c);
        xv.x *= nw.x, xv.y *= nw.y, xv.z *= nw.z, xv.w *= nw.w;
        for (int j = 0; j < kRowsPerWarp; ++j) acc[j][t] += wv[j][0] * xv.x + wv[j][1] * xv.y + wv[j][2] * xv.z + wv[j][3] * xv.w;
      }
    }
  }
  for (int j = 0; j < kRowsPerWarp; ++j)
    for (int t = 0; t < kTokens; ++t) {
      acc[j][t] = warp_sum(acc[j][t]);
      if constexpr (kNorm) acc[j][t] *= inv_rms[t];
    }
  if (lane != 0) return;
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int r = slot_row<kRowsPerWarp>(p, warp_index, j);
    if (present[j] && p.bias != nullptr) {
      const float b = p.bias[r];
      for (int t = 0; t < kTokens; ++t) acc[j][t] += b;
    }
  }
  if (p.output == MatvecOutput::kSwiglu) {
    constexpr int kPairs = kRowsPerWarp / 2;
    const int half = w.rows / 2;
    for (int j = 0; j < kPairs; ++j) {
      if (!present[j]) continue;
      const int i = slot_row<kRowsPerWarp>(p, warp_index, j);
      for (int t = 0; t < kTokens; ++t)
        if (t < p.n_tokens) p.y[static_cast<size_t>(t) * half + i] = silu(acc[j][t]) * acc[j + kPairs][t];
    }
    return;
  }
  for (int j = 0; j < kRowsPerWarp; ++j) {
    if (!present[j]) continue;
    const int r = slot_row<kRowsPerWarp>(p, warp_index, j);
    for (int t = 0; t < kTokens; ++t) {
      if (t >= p.n_tokens) continue;
      float& out = p.y[static_cast<size_t>(t) * w.rows + r];
      out = p.output == MatvecOutput::kAccumulate ? out + acc[j][t] : acc[j][t];
    }
  }
}

template <TensorType kType, int kTokens>
cudaError_t launch_typed(const MatvecParams& p, cudaStream_t stream) {
  constexpr int kRowsPerWarp = rows_per_warp(kTokens);
  const int rows_per_block = kWarps * (p.output == MatvecOutput::kSwiglu ? kRowsPerWarp / 2 : kRowsPerWarp);
  const int outputs = p.output == MatvecOutput::kSwiglu ? p.weights.rows / 2 : p.weights.rows;
  const unsigned grid = static_cast<unsigned>((outputs + rows_per_block - 1) / rows_per_block);
  if (p.norm_weight != nullptr) {
    PAGEDLM_LAUNCH((matvec_kernel<kType, kTokens, true>), grid, kThreads, 0, stream)(p);
  } else {
    PAGEDLM_LAUNCH((matvec_kernel<kType, kTokens, false>), grid, kThreads, 0, stream)(p);
  }
  return cudaGetLastError();
}

// Token counts are rounded up to 1, 2, 4 or 8 (the extra tokens repeat the last one and are not stored), so
// each type has four instantiations per norm setting.
template <TensorType kType>
cudaError_t launch_for_tokens(const MatvecParams& p, cudaStream_t stream) {
  if (p.n_tokens == 1) return launch_typed<kType, 1>(p, stream);
  if (p.n_tokens == 2) return launch_typed<kType, 2>(p, stream);
  if (p.n_tokens <= 4) return launch_typed<kType, 4>(p, stream);
  return launch_typed<kType, 8>(p, stream);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % kLoadBytes == 0; }

}  // namespace

// ---- launchers ----
bool matvec_supported(const DeviceMatrix& w) {
  if (w.rows <= 0 || w.cols <= 0 || !aligned16(w.data)) return false;
  switch (w.type) {
    case TensorType::kF32: return w.cols % 4 == 0;
    case TensorType::kF16:
    case TensorType::kBF16: return w.cols % 8 == 0;
    case TensorType::kQ8_0: return w.cols % kQ8Block == 0 && w.scales != nullptr;
    default: return false;
  }
}

cudaError_t launch_matvec(const MatvecParams& p, cudaStream_t stream) {
  if (!matvec_supported(p.weights) || p.n_tokens < 1 || p.n_tokens > kMaxMatvecTokens || !aligned16(p.x) || !aligned16(p.norm_weight) ||
      (p.output == MatvecOutput::kSwiglu && p.weights.rows % 2 != 0)) {
    return cudaErrorInvalidValue;
  }
  switch (p.weights.type) {
    case TensorType::kF32: return launch_for_tokens<TensorType::kF32>(p, stream);
    case TensorType::kF16: return launch_for_tokens<TensorType::kF16>(p, stream);
    case TensorType::kBF16: return launch_for_tokens<TensorType::kBF16>(p, stream);
    case TensorType::kQ8_0: return launch_for_tokens<TensorType::kQ8_0>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace pagedlm::cuda
