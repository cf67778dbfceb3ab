// Device helpers shared by the kernels: warp/block reductions, KV element decoding and encoding that
// match the CPU's kv_dtype.cpp bit for bit, and the launch macro that the emulated build replaces.
#pragma once

#include <cstdint>

#include "cuda_api.h"
#include "kv/kv_dtype.h"
#include "pagedlm_kernels.h"

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

constexpr bool has_scales(KvDtype dtype) { return dtype == KvDtype::kInt8 || dtype == KvDtype::kFp8E4M3; }

constexpr int kv_bytes(KvDtype dtype) {
  return dtype == KvDtype::kF32 ? 4 : dtype == KvDtype::kF16 || dtype == KvDtype::kBF16 ? 2 : 1;
}

// ---- int4 (kv_dtype.cpp's encoding: codes c stand for (c - 7.5) x an f16 scale) ----------------------------
constexpr float kInt4LevelsDevice = 7.5f;
constexpr uint16_t kLargestHalf = 0x7BFF;

// The smallest f16 scale whose 7.5 steps reach `magnitude`: the CPU's int4_scale_for.
__device__ __forceinline__ uint16_t int4_scale_for_device(float magnitude) {
  if (!(magnitude < 65504.0f * kInt4LevelsDevice)) return kLargestHalf;
  uint16_t h = float_to_half(magnitude / kInt4LevelsDevice);
  if (half_to_float(h) * kInt4LevelsDevice < magnitude && h < kLargestHalf) ++h;
  return h;
}

__device__ __forceinline__ float int4_inverse(float scale) { return scale > 0.0f ? 1.0f / scale : 0.0f; }

// x / scale + 7.5 rounded to even and clamped to [0, 15]. __fmul_rn keeps nvcc from fusing the multiply into
// the add (an FMA rounds once where the CPU rounds twice), so the codes are the CPU's bits.
__device__ __forceinline__ uint32_t int4_code_device(float x, float inverse) {
  const int code = __float2int_rn(__fmul_rn(x, inverse) + kInt4LevelsDevice);
  return static_cast<uint32_t>(min(max(code, 0), 15));
}

__device__ __forceinline__ float int4_value_device(uint32_t code, float scale) { return (static_cast<float>(code) - kInt4LevelsDevice) * scale; }

// ---- One side (K or V) of a layer's pool, read with its type chosen at run time -----------------------------
// The attention kernels take K and V of any two types. Instantiating them per type pair would multiply
// 6 x 6 pairs by the head sizes (nvcc time and the emulated build's time grow with it), so they read each
// side through load_side4, which switches on the side's type: the type is the same for every thread of the
// launch, so the switch never diverges, and it costs a uniform branch per 4 elements. The default pool
// (f16 K and V) gets its own instantiation without the switch (kF16Only).
enum class ScaleLayout : uint8_t {
  kNone,     // f32, f16, bf16
  kRow,      // int8, fp8: a float per row
  kChannel,  // int4 K: an f16 per channel per block piece
  kGroup,    // int4 V: an f16 per kInt4ValueGroup values of each row
};

struct KvSide {
  const uint8_t* rows;
  const uint8_t* scales;
  KvDtype dtype;
  ScaleLayout scale_layout;
  int row_bytes;
  int head_dim;
  int block_size;
};

__host__ __device__ inline int int4_groups(int head_dim) { return (head_dim + kInt4ValueGroup - 1) / kInt4ValueGroup; }

__host__ __device__ inline KvSide kv_side(const void* rows, const void* scales, KvDtype dtype, bool is_key, int head_dim, int block_size) {
  const bool int4 = dtype == KvDtype::kInt4;
  const ScaleLayout layout = int4 ? (is_key ? ScaleLayout::kChannel : ScaleLayout::kGroup) : has_scales(dtype) ? ScaleLayout::kRow : ScaleLayout::kNone;
  return {static_cast<const uint8_t*>(rows), static_cast<const uint8_t*>(scales), dtype, layout,
          int4 ? (head_dim + 1) / 2 : head_dim * kv_bytes(dtype), head_dim, block_size};
}
__host__ __device__ inline KvSide key_side(const PagedKv& kv) { return kv_side(kv.k, kv.k_scales, kv.k_dtype, true, kv.head_dim, kv.block_size); }
// V inside the K rows reads K's rows and scales in K's layout.
__host__ __device__ inline KvSide value_side(const PagedKv& kv) {
  if (kv.v == kv.k) return key_side(kv);
  return kv_side(kv.v, kv.v_scales, kv.v_dtype, false, kv.head_dim, kv.block_size);
}
// Whether a side's type needs scales that the pool does not have.
__host__ __device__ inline bool side_missing_scales(const KvSide& side) { return side.scale_layout != ScaleLayout::kNone && side.scales == nullptr; }

// Four int4 elements [first, first + 4) of pool row `row` (first a multiple of 4), scales applied.
__device__ __forceinline__ void load_int4_4(const KvSide& s, size_t row, int first, float out[4]) {
  const uint32_t codes = *reinterpret_cast<const uint16_t*>(s.rows + row * s.row_bytes + first / 2);
  float scale[4];
  if (s.scale_layout == ScaleLayout::kChannel) {
    const size_t piece = row / s.block_size;
    const uint2 h = *reinterpret_cast<const uint2*>(s.scales + (piece * s.head_dim + first) * sizeof(uint16_t));
    scale[0] = half_to_float(static_cast<uint16_t>(h.x)), scale[1] = half_to_float(static_cast<uint16_t>(h.x >> 16));
    scale[2] = half_to_float(static_cast<uint16_t>(h.y)), scale[3] = half_to_float(static_cast<uint16_t>(h.y >> 16));
  } else {
    const uint16_t h = reinterpret_cast<const uint16_t*>(s.scales)[row * int4_groups(s.head_dim) + first / kInt4ValueGroup];
    scale[0] = scale[1] = scale[2] = scale[3] = half_to_float(h);
  }
  for (int i = 0; i < 4; ++i) out[i] = int4_value_device((codes >> (4 * i)) & 0xFu, scale[i]);
}

// Four elements [first, first + 4) of pool row `row` (first a multiple of 4), decoded to float with their
// scales applied.
template <bool kF16Only = false>
__device__ __forceinline__ void load_side4(const KvSide& s, size_t row, int first, float out[4]) {
  const uint8_t* r = s.rows + row * s.row_bytes;
  if constexpr (kF16Only) {
    load_kv4<KvDtype::kF16>(r, first, out);
    return;
  }
  float scale = 1.0f;
  switch (s.dtype) {
    case KvDtype::kF32: return load_kv4<KvDtype::kF32>(r, first, out);
    case KvDtype::kF16: return load_kv4<KvDtype::kF16>(r, first, out);
    case KvDtype::kBF16: return load_kv4<KvDtype::kBF16>(r, first, out);
    case KvDtype::kInt8:
      load_kv4<KvDtype::kInt8>(r, first, out);
      scale = reinterpret_cast<const float*>(s.scales)[row];
      break;
    case KvDtype::kFp8E4M3:
      load_kv4<KvDtype::kFp8E4M3>(r, first, out);
      scale = reinterpret_cast<const float*>(s.scales)[row];
      break;
    case KvDtype::kInt4: return load_int4_4(s, row, first, out);
  }
  out[0] *= scale, out[1] *= scale, out[2] *= scale, out[3] *= scale;
}

// Calls body.template operator()<kF16Only>(): the default pool (f16 K and V) without the type switch.
template <typename Body>
cudaError_t dispatch_kv_types(const PagedKv& kv, Body&& body) {
  if (kv.k_dtype == KvDtype::kF16 && kv.v_dtype == KvDtype::kF16) return body.template operator()<true>();
  return body.template operator()<false>();
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
