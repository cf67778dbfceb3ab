// Device helpers shared by the kernels: warp/block reductions, KV element decoding and encoding that
// match the CPU's kv_dtype.cpp bit for bit, and the launch macro that the emulated build replaces.
#pragma once

#include <cstdint>

#include "cuda_api.h"
#include "kv/kv_dtype.h"

#ifdef PAGEDLM_CUDA_EMULATION
#include "common/half.h"
#endif

#ifndef PAGEDLM_CUDA_EMULATION
#include <cuda_fp16.h>
#define PAGEDLM_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#define PAGEDLM_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace pagedlm::cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over the block; every thread gets the total. `scratch` holds one float per warp (and is reused).
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize, warps = (blockDim.x + kWarpSize - 1) / kWarpSize;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

// ---- f16 / bf16 --------------------------------------------------------------------------------------
__device__ __forceinline__ float half_to_float(uint16_t bits) {
#ifdef PAGEDLM_CUDA_EMULATION
  return fp16_to_float(bits);
#else
  return __half2float(__ushort_as_half(bits));
#endif
}

__device__ __forceinline__ uint16_t float_to_half(float value) {
#ifdef PAGEDLM_CUDA_EMULATION
  return float_to_fp16(value);
#else
  return __half_as_ushort(__float2half_rn(value));
#endif
}

__device__ __forceinline__ float bfloat_to_float(uint16_t bits) { return __uint_as_float(static_cast<uint32_t>(bits) << 16); }

// Round to nearest even, NaN kept quiet: the same integer steps as the CPU's float_to_bf16.
__device__ __forceinline__ uint16_t float_to_bfloat(float value) {
  const uint32_t bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// ---- fp8 e4m3 (OCP "FN": no infinities, max 448) -----------------------------------------------------
__device__ __forceinline__ float fp8_magnitude(uint32_t code) {  // code: the 7 bits below the sign
  const uint32_t exponent = code >> 3, mantissa = code & 7u;
  if (exponent == 0) return static_cast<float>(mantissa) * 0.001953125f;  // mantissa x 2^-9
  return __uint_as_float(((exponent + 120u) << 23) | (mantissa << 20));
}

__device__ __forceinline__ float fp8_to_float(uint8_t bits) {
  const float m = (bits & 0x7fu) == 0x7fu ? __uint_as_float(0x7fc00000u) : fp8_magnitude(bits & 0x7fu);
  return bits & 0x80u ? -m : m;
}

// Nearest of the 127 finite magnitudes, ties to the even code, saturating: the CPU's float_to_fp8_e4m3.
__device__ __forceinline__ uint8_t float_to_fp8(float value) {
  if (value != value) return 0x7f;
  const uint8_t sign = __float_as_uint(value) >> 31 ? 0x80 : 0;
  const float a = fminf(fabsf(value), 448.0f);
  int lo = 0, hi = 126;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (fp8_magnitude(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  int best = lo;
  if (lo < 126) {
    const float below = a - fp8_magnitude(lo), above = fp8_magnitude(lo + 1) - a;
    if (above < below || (above == below && (lo & 1))) best = lo + 1;
  }
  return static_cast<uint8_t>(sign | best);
}

// ---- KV pool elements --------------------------------------------------------------------------------
// Four consecutive elements of a KV row, decoded to float (without the row's scale). `row` points at the
// row's first element; `first` is a multiple of 4, which keeps every load aligned to its width.
template <KvDtype kDtype>
__device__ __forceinline__ void load_kv4(const void* row, int first, float out[4]) {
  if constexpr (kDtype == KvDtype::kF32) {
    const float4 v = *reinterpret_cast<const float4*>(static_cast<const float*>(row) + first);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else if constexpr (kDtype == KvDtype::kF16 || kDtype == KvDtype::kBF16) {
    const uint2 v = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(row) + first);
    const uint16_t h[4] = {static_cast<uint16_t>(v.x), static_cast<uint16_t>(v.x >> 16), static_cast<uint16_t>(v.y),
                           static_cast<uint16_t>(v.y >> 16)};
    for (int i = 0; i < 4; ++i) out[i] = kDtype == KvDtype::kF16 ? half_to_float(h[i]) : bfloat_to_float(h[i]);
  } else {
    const uint32_t v = *reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(row) + first);
    for (int i = 0; i < 4; ++i) {
      const uint8_t b = static_cast<uint8_t>(v >> (8 * i));
      out[i] = kDtype == KvDtype::kInt8 ? static_cast<float>(static_cast<int8_t>(b)) : fp8_to_float(b);
    }
  }
}

// One element of a KV row, decoded to float (without the row's scale).
template <KvDtype kDtype>
__device__ __forceinline__ float load_kv(const void* row, int i) {
  if constexpr (kDtype == KvDtype::kF32) return static_cast<const float*>(row)[i];
  else if constexpr (kDtype == KvDtype::kF16) return half_to_float(static_cast<const uint16_t*>(row)[i]);
  else if constexpr (kDtype == KvDtype::kBF16) return bfloat_to_float(static_cast<const uint16_t*>(row)[i]);
  else if constexpr (kDtype == KvDtype::kInt8) return static_cast<float>(static_cast<const int8_t*>(row)[i]);
  else return fp8_to_float(static_cast<const uint8_t*>(row)[i]);
}

constexpr bool has_scales(KvDtype dtype) { return dtype == KvDtype::kInt8 || dtype == KvDtype::kFp8E4M3; }

constexpr int kv_bytes(KvDtype dtype) {
  return dtype == KvDtype::kF32 ? 4 : dtype == KvDtype::kF16 || dtype == KvDtype::kBF16 ? 2 : 1;
}

// Calls body.template operator()<dtype>() for the pool's dtype: one kernel instantiation per KV type (int4:
// cudaErrorInvalidValue).
template <typename Body>
cudaError_t dispatch_kv_dtype(KvDtype dtype, Body&& body) {
  switch (dtype) {
    case KvDtype::kF32: return body.template operator()<KvDtype::kF32>();
    case KvDtype::kF16: return body.template operator()<KvDtype::kF16>();
    case KvDtype::kBF16: return body.template operator()<KvDtype::kBF16>();
    case KvDtype::kInt8: return body.template operator()<KvDtype::kInt8>();
    case KvDtype::kFp8E4M3: return body.template operator()<KvDtype::kFp8E4M3>();
    case KvDtype::kInt4: break;  // no CUDA kernels read int4 (the backend refuses such a pool)
  }
  return cudaErrorInvalidValue;
}

}  // namespace pagedlm::cuda

namespace pagedlm::cuda {

// Calls body.template operator()<head_dim>() for the attention head sizes that have kernels.
template <typename Body>
cudaError_t dispatch_head_dim(int head_dim, Body&& body) {
  switch (head_dim) {
    case 8: return body.template operator()<8>();
    case 16: return body.template operator()<16>();
    case 32: return body.template operator()<32>();
    case 64: return body.template operator()<64>();
    case 80: return body.template operator()<80>();
    case 96: return body.template operator()<96>();
    case 128: return body.template operator()<128>();
    case 256: return body.template operator()<256>();
  }
  return cudaErrorInvalidValue;
}

}  // namespace pagedlm::cuda
