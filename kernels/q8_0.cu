// Q8_0 weights on the device: the split done at upload, and the expansion to f16 for the cuBLAS GEMMs of
// larger batches (decode steps read the split matrix in matvec.cu). CPU twin: dequantize_row.
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kBlockElements = 32;
constexpr int kBlockBytes = 34;  // f16 scale + 32 x int8

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

// Each value is d x q rounded once to f16 (d is f16, q an int8: the product is exact in float).
__global__ void dequantize_q8_0_kernel(DequantizeQ8_0Params p) {
  const size_t total = static_cast<size_t>(p.weights.rows) * p.weights.cols;
  const int8_t* quants = static_cast<const int8_t*>(p.weights.data);
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    p.out[i] = float_to_half(half_to_float(p.weights.scales[i / kBlockElements]) * static_cast<float>(quants[i]));
  }
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

}  // namespace pagedlm::cuda
