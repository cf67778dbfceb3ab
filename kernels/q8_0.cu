// Q8_0 weights on the device: the split done at upload, and the dequantizing matrix x vectors product of
// decode steps (weights read once for up to kMaxMatvecTokens tokens). CPU twin: dequantize_row + dot.
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kBlockElements = 32;
constexpr int kBlockBytes = 34;  // f16 scale + 32 x int8
constexpr int kChunk = 16;       // int8 values per 16-byte load
constexpr int kWarps = 4;

// ---- kernels ----
// One thread per 34-byte block: GGUF blocks are only 2-byte aligned, so they are read a byte at a time.
__global__ void split_q8_0_kernel(SplitQ8_0Params p) {
  const int blocks_per_row = p.cols / kBlockElements;
  const size_t total = static_cast<size_t>(p.rows) * blocks_per_row;
  for (size_t b = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < total; b += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint8_t* in = p.blocks + b * kBlockBytes;
    p.scales[b] = static_cast<uint16_t>(in[0] | in[1] << 8);
    uint32_t* out = reinterpret_cast<uint32_t*>(p.quants + b * kBlockElements);
    for (int w = 0; w < kBlockElements / 4; ++w) {
      const uint8_t* q = in + 2 + 4 * w;
      out[w] = static_cast<uint32_t>(q[0]) | static_cast<uint32_t>(q[1]) << 8 | static_cast<uint32_t>(q[2]) << 16 | static_cast<uint32_t>(q[3]) << 24;
    }
  }
}

__device__ __forceinline__ float dot16(const int4& packed, const float* x) {
  const int words[4] = {packed.x, packed.y, packed.z, packed.w};
  float sum = 0.0f;
  for (int w = 0; w < 4; ++w) {
    const float4 v = *reinterpret_cast<const float4*>(x + 4 * w);
    const int word = words[w];
    sum += static_cast<float>(static_cast<int8_t>(word)) * v.x + static_cast<float>(static_cast<int8_t>(word >> 8)) * v.y +
           static_cast<float>(static_cast<int8_t>(word >> 16)) * v.z + static_cast<float>(static_cast<int8_t>(word >> 24)) * v.w;
  }
  return sum;
}

// One warp per weight row; each lane takes 16-byte chunks, so a warp streams 512 contiguous bytes per load.
template <int kTokens>
__global__ void __launch_bounds__(kWarps * kWarpSize) q8_0_matvec_kernel(Q8_0MatvecParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int row = blockIdx.x * kWarps + threadIdx.x / kWarpSize;
  if (row >= p.weights.rows) return;  // whole warps only
  const int cols = p.weights.cols;
  const int8_t* quants = static_cast<const int8_t*>(p.weights.data) + static_cast<size_t>(row) * cols;
  const uint16_t* scales = p.weights.scales + static_cast<size_t>(row) * (cols / kBlockElements);
  float acc[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
  for (int chunk = lane; chunk < cols / kChunk; chunk += kWarpSize) {
    const int4 packed = *reinterpret_cast<const int4*>(quants + chunk * kChunk);
    const float scale = half_to_float(scales[chunk / 2]);
    for (int t = 0; t < kTokens; ++t) acc[t] += scale * dot16(packed, p.x + static_cast<size_t>(t) * cols + chunk * kChunk);
  }
  for (int t = 0; t < kTokens; ++t) {
    const float total = warp_sum(acc[t]);
    if (lane == 0) p.y[static_cast<size_t>(t) * p.weights.rows + row] = total;
  }
}

// Each value is d x q rounded once to f16 (d is f16, q an int8: the product is exact in float).
__global__ void dequantize_q8_0_kernel(DequantizeQ8_0Params p) {
  const size_t total = static_cast<size_t>(p.weights.rows) * p.weights.cols;
  const int8_t* quants = static_cast<const int8_t*>(p.weights.data);
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    p.out[i] = float_to_half(half_to_float(p.weights.scales[i / kBlockElements]) * static_cast<float>(quants[i]));
  }
}

template <int kTokens>
cudaError_t launch_matvec_tokens(const Q8_0MatvecParams& params, cudaStream_t stream) {
  if (params.n_tokens != kTokens) {
    if constexpr (kTokens < kMaxMatvecTokens) return launch_matvec_tokens<kTokens + 1>(params, stream);
    return cudaErrorInvalidValue;
  }
  const unsigned grid = static_cast<unsigned>((params.weights.rows + kWarps - 1) / kWarps);
  auto kernel = q8_0_matvec_kernel<kTokens>;
  PAGEDLM_LAUNCH(kernel, grid, kWarps * kWarpSize, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace

// ---- launchers ----
cudaError_t launch_split_q8_0(const SplitQ8_0Params& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.cols <= 0 || params.cols % kBlockElements != 0) return cudaErrorInvalidValue;
  const size_t blocks = static_cast<size_t>(params.rows) * (params.cols / kBlockElements);
  const size_t grid = (blocks + 255) / 256;
  PAGEDLM_LAUNCH(split_q8_0_kernel, static_cast<unsigned>(grid < 65535 ? grid : 65535), 256, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_dequantize_q8_0(const DequantizeQ8_0Params& params, cudaStream_t stream) {
  const DeviceMatrix& w = params.weights;
  if (w.type != TensorType::kQ8_0 || w.rows <= 0 || w.cols <= 0 || w.cols % kBlockElements != 0) return cudaErrorInvalidValue;
  const size_t grid = (static_cast<size_t>(w.rows) * w.cols + 255) / 256;
  PAGEDLM_LAUNCH(dequantize_q8_0_kernel, static_cast<unsigned>(grid < 65535 ? grid : 65535), 256, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_q8_0_matvec(const Q8_0MatvecParams& params, cudaStream_t stream) {
  const DeviceMatrix& w = params.weights;
  if (w.type != TensorType::kQ8_0 || w.rows <= 0 || w.cols <= 0 || w.cols % kBlockElements != 0 || params.n_tokens < 1 ||
      params.n_tokens > kMaxMatvecTokens) {
    return cudaErrorInvalidValue;
  }
  return launch_matvec_tokens<1>(params, stream);
}

}  // namespace pagedlm::cuda
