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

// ---- cp.async: global-to-shared copies that land later ---------------------------------------------------
// cp_async<N>(shared, global) issues an N-byte copy (N = 4, 8 or 16; both addresses N-byte aligned);
// cp_async_commit() closes the thread's group of copies; cp_async_wait<N>() waits until at most the newest N
// groups are in flight. A staged row is readable by other threads only after their writers waited and a
// barrier (__syncwarp / __syncthreads) ordered them. Before sm_80 the copy goes through registers at issue.
template <int kBytes>
__device__ __forceinline__ void cp_async(void* shared, const void* global) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16);
#if defined(PAGEDLM_CUDA_EMULATION)
  ::pagedlm::emu::async_copy(shared, global, kBytes);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  if constexpr (kBytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(global) : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(address), "l"(global), "n"(kBytes) : "memory");
  }
#else
  if constexpr (kBytes == 16) *static_cast<int4*>(shared) = *static_cast<const int4*>(global);
  else if constexpr (kBytes == 8) *static_cast<uint2*>(shared) = *static_cast<const uint2*>(global);
  else *static_cast<uint32_t*>(shared) = *static_cast<const uint32_t*>(global);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(PAGEDLM_CUDA_EMULATION)
  ::pagedlm::emu::async_commit();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int kInFlight>
__device__ __forceinline__ void cp_async_wait() {
#if defined(PAGEDLM_CUDA_EMULATION)
  ::pagedlm::emu::async_wait(kInFlight);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kInFlight) : "memory");
#endif
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

// ---- 16-bit GEMM inputs ----------------------------------------------------------------------------------
// One activation as an f16 / bf16 GEMM reads it, for every kernel that writes a GEMM's input directly
// (launch_to_half, RMSNorm and SwiGLU with half_out).
__device__ __forceinline__ uint16_t to_gemm_input(float value, bool bfloat) { return bfloat ? float_to_bfloat(value) : float_to_half(value); }

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
// 6 x 6 pairs by the head sizes (nvcc time and the emulated build's time grow with it), so a kernel is
// instantiated per head size only and switches on each side's type at run time, once per kernel phase
// (with_side_type: the loop that reads keys and the one that reads values each exist once per type, 6 + 6
// copies rather than 36). The type is the same for every thread of a launch, so the switch never diverges,
// and the loops inside carry no per-row branch. The default pool (f16 K and V) gets its own instantiation
// without the switch (kF16Only), so its kernels hold one copy of each loop.
__host__ __device__ inline int int4_groups(int head_dim) { return (head_dim + kInt4ValueGroup - 1) / kInt4ValueGroup; }

// Whether a scaled side of the pool lacks its scales (V inside the K rows uses K's).
inline bool kv_scales_missing(const PagedKv& kv) {
  const auto scaled = [](KvDtype d) { return has_scales(d) || d == KvDtype::kInt4; };
  return (scaled(kv.k_dtype) && kv.k_scales == nullptr) || (kv.v != kv.k && scaled(kv.v_dtype) && kv.v_scales == nullptr);
}

// The side's fields are read from the kernel's parameters where they are used (not copied into a struct),
// so they take no registers across the kernel's loops.
template <bool kValue>
__device__ __forceinline__ const uint8_t* side_rows(const PagedKv& kv) { return static_cast<const uint8_t*>(kValue ? kv.v : kv.k); }
template <bool kValue>
__device__ __forceinline__ const uint8_t* side_scales(const PagedKv& kv) { return static_cast<const uint8_t*>(kValue ? kv.v_scales : kv.k_scales); }

// Four int4 elements [first, first + 4) of pool row `row` (first a multiple of 4), scales applied: K's (and
// V's inside the K rows) per channel of the block piece, V's per group of the row.
template <bool kValue, int kHeadDim>
__device__ __forceinline__ void load_int4_4(const PagedKv& kv, size_t row, int first, float out[4]) {
  const uint32_t codes = *reinterpret_cast<const uint16_t*>(side_rows<kValue>(kv) + row * (kHeadDim / 2) + first / 2);
  const uint8_t* scales = side_scales<kValue>(kv);
  // The four f16 scales (channels, 8-byte aligned), or the row group's one scale four times.
  uint2 h;
  if (!kValue || kv.v == kv.k) {
    h = *reinterpret_cast<const uint2*>(scales + (row / kv.block_size * kHeadDim + first) * sizeof(uint16_t));
  } else {
    const uint32_t one = reinterpret_cast<const uint16_t*>(scales)[row * int4_groups(kHeadDim) + first / kInt4ValueGroup];
    h.x = h.y = one | (one << 16);
  }
  out[0] = int4_value_device(codes & 0xFu, half_to_float(static_cast<uint16_t>(h.x)));
  out[1] = int4_value_device((codes >> 4) & 0xFu, half_to_float(static_cast<uint16_t>(h.x >> 16)));
  out[2] = int4_value_device((codes >> 8) & 0xFu, half_to_float(static_cast<uint16_t>(h.y)));
  out[3] = int4_value_device((codes >> 12) & 0xFu, half_to_float(static_cast<uint16_t>(h.y >> 16)));
}

// K (kValue false) or V rows read as type kType: kRuns runs of four elements of pool row `row`, run j at
// element first + j * stride (first and stride multiples of 4), decoded to float with their scales applied.
template <KvDtype kType, bool kValue, int kHeadDim>
struct TypedSide {
  template <int kRuns>
  __device__ __forceinline__ void load(const PagedKv& kv, size_t row, int first, int stride, float out[kRuns][4]) const {
    if constexpr (kType == KvDtype::kInt4) {
#pragma unroll
      for (int j = 0; j < kRuns; ++j) load_int4_4<kValue, kHeadDim>(kv, row, first + j * stride, out[j]);
    } else {
      const uint8_t* r = side_rows<kValue>(kv) + row * kHeadDim * kv_bytes(kType);
      float scale = 1.0f;
      if constexpr (has_scales(kType)) scale = reinterpret_cast<const float*>(side_scales<kValue>(kv))[row];
#pragma unroll
      for (int j = 0; j < kRuns; ++j) {
        load_kv4<kType>(r, first + j * stride, out[j]);
        if constexpr (has_scales(kType)) out[j][0] *= scale, out[j][1] *= scale, out[j][2] *= scale, out[j][3] *= scale;
      }
    }
  }
};

// Calls body(TypedSide<type, kValue, kHeadDim>{}) for the type of K or V (f16 alone when kF16Only).
template <bool kF16Only, bool kValue, int kHeadDim, typename Body>
__device__ __forceinline__ void with_side_type(const PagedKv& kv, Body&& body) {
  if constexpr (kF16Only) {
    body(TypedSide<KvDtype::kF16, kValue, kHeadDim>{});
  } else {
    switch (kValue ? kv.v_dtype : kv.k_dtype) {
      case KvDtype::kF32: return body(TypedSide<KvDtype::kF32, kValue, kHeadDim>{});
      case KvDtype::kF16: return body(TypedSide<KvDtype::kF16, kValue, kHeadDim>{});
      case KvDtype::kBF16: return body(TypedSide<KvDtype::kBF16, kValue, kHeadDim>{});
      case KvDtype::kInt8: return body(TypedSide<KvDtype::kInt8, kValue, kHeadDim>{});
      case KvDtype::kFp8E4M3: return body(TypedSide<KvDtype::kFp8E4M3, kValue, kHeadDim>{});
      case KvDtype::kInt4: return body(TypedSide<KvDtype::kInt4, kValue, kHeadDim>{});
    }
  }
}


// ---- Warp-level matrix multiply on tensor cores (sm_80+) ---------------------------------------------------
// mma.sync.aligned.m16n8k16 with f16 or bf16 inputs and f32 accumulators, and ldmatrix to fill its fragments
// from shared memory. Fragments follow the PTX ISA (9.7.14.5.8), with g = lane / 4 and t = lane % 4:
//   A (16x16, row-major): a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   B (16x8, "col": k pairs): b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   C/D (16x8, f32): d[0], d[1] = D[g][2t, 2t+1]; d[2], d[3] = D[g+8][2t, 2t+1]
// A register's lower 16 bits hold the lower index. All 32 lanes must execute each call (the instructions are
// .aligned): call them only under warp-uniform conditions. The emulated build runs the same layouts as warp
// collectives (test/gpu/emulator/warp_matrix_emulator.h).
// A float as the 16 bits of an f16 (kBf16 false) or a bf16, rounded to nearest even.
template <bool kBf16>
__device__ __forceinline__ uint16_t to_mma_element(float value) {
  return kBf16 ? float_to_bfloat(value) : float_to_half(value);
}

// Two floats as one f16x2 / bf16x2 register, `low` in the lower half.
template <bool kBf16>
__device__ __forceinline__ uint32_t pack_mma_pair(float low, float high) {
#ifdef PAGEDLM_CUDA_EMULATION
  return to_mma_element<kBf16>(low) | static_cast<uint32_t>(to_mma_element<kBf16>(high)) << 16;
#else
  uint32_t packed;
  // cvt.rn.*x2.f32 takes the high element first.
  if constexpr (kBf16) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(high), "f"(low));
  else asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(high), "f"(low));
  return packed;
#endif
}

// d += A x B for one 16x8x16 tile.
template <bool kBf16>
__device__ __forceinline__ void mma_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
#ifdef PAGEDLM_CUDA_EMULATION
  ::pagedlm::emu::mma_m16n8k16(d, a, b, kBf16);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  static_assert(kBf16 && !kBf16, "m16n8k16 needs sm_80 or newer (CMAKE_CUDA_ARCHITECTURES in cmake/cuda.cmake)");
#else
  if constexpr (kBf16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#endif
}

// Four 8x8 matrices of 16-bit elements from shared memory: lanes 8j..8j+7 pass the addresses of rows 0..7 of
// matrix j (16 bytes each, 16-byte aligned); r[j] gets matrix j's [lane / 4][2t, 2t+1], or with kTranspose
// its [2t, 2t+1][lane / 4], which is the B fragment of a matrix stored with k along its rows.
template <bool kTranspose>
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row_address) {
#ifdef PAGEDLM_CUDA_EMULATION
  ::pagedlm::emu::ldmatrix_x4(r, row_address, kTranspose);
#else
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(row_address));
  if constexpr (kTranspose) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address) : "memory");
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address) : "memory");
  }
#endif
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
