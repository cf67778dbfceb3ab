// The decode steps' matrix x a few vectors product (up to kMaxMatvecTokens tokens, the weights read once),
// with the RMSNorm before it and the bias, residual add or SwiGLU after it folded into the same launch, and
// the expansion of quantized matrices to f16 for the GEMMs of larger batches. Float weights and Q8_0 multiply
// float activations; Q4_0, Q4_K and Q6_K multiply int8 activations with __dp4a (their section below).
// CPU twin: rms_norm, dequantize_row and a double dot product (with the int8 activations for the latter).
#include <cstdint>
#include <cstring>

#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kLoadBytes = 16;
constexpr int kQ8Block = 32;
constexpr int kSuperBlock = 256;  // values per Q4_K / Q6_K block

// Weight rows a warp reads side by side (more 16-byte loads in flight per lane); fewer with more tokens, whose
// accumulators take the registers.
__host__ __device__ constexpr int rows_per_warp(int tokens) { return tokens == 1 ? 4 : 2; }

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

// The weight rows one warp reads: kRowsPerWarp slots, each a row index (row 0 where the slot has no row, so
// its loads stay in bounds) and whether its result is stored.
template <int kRowsPerWarp>
struct WarpRows {
  int index[kRowsPerWarp];
  bool present[kRowsPerWarp];
  __device__ __forceinline__ WarpRows(const MatvecParams& p, int warp_index) {
    for (int j = 0; j < kRowsPerWarp; ++j) {
      present[j] = slot_present<kRowsPerWarp>(p, warp_index, j);
      index[j] = present[j] ? slot_row<kRowsPerWarp>(p, warp_index, j) : 0;
    }
  }
};

// Sums each slot's per-lane partial products over the warp, then lane 0 applies the norm's 1 / RMS, the bias
// and the output step.
template <int kRowsPerWarp, int kTokens, bool kNorm>
__device__ __forceinline__ void finish_rows(const MatvecParams& p, int warp_index, const WarpRows<kRowsPerWarp>& rows,
                                            float (&acc)[kRowsPerWarp][kTokens], const float* inv_rms) {
  for (int j = 0; j < kRowsPerWarp; ++j)
    for (int t = 0; t < kTokens; ++t) {
      acc[j][t] = warp_sum(acc[j][t]);
      if constexpr (kNorm) acc[j][t] *= inv_rms[t];
    }
  if (threadIdx.x % kWarpSize != 0) return;
  for (int j = 0; j < kRowsPerWarp; ++j) {
    if (rows.present[j] && p.bias != nullptr) {
      const float b = p.bias[rows.index[j]];
      for (int t = 0; t < kTokens; ++t) acc[j][t] += b;
    }
  }
  if (p.output == MatvecOutput::kSwiglu) {
    constexpr int kPairs = kRowsPerWarp / 2;
    const int half = p.weights.rows / 2;
    for (int j = 0; j < kPairs; ++j) {
      if (!rows.present[j]) continue;
      for (int t = 0; t < kTokens; ++t)
        if (t < p.n_tokens) p.y[static_cast<size_t>(t) * half + rows.index[j]] = silu(acc[j][t]) * acc[j + kPairs][t];
    }
    return;
  }
  for (int j = 0; j < kRowsPerWarp; ++j) {
    if (!rows.present[j]) continue;
    for (int t = 0; t < kTokens; ++t) {
      if (t >= p.n_tokens) continue;
      float& out = p.y[static_cast<size_t>(t) * p.weights.rows + rows.index[j]];
      out = p.output == MatvecOutput::kAccumulate ? out + acc[j][t] : acc[j][t];
    }
  }
}

// ---- kernels ----
// F32, F16, BF16 and Q8_0: float activations. A block of kWarps warps; each warp reads kRowsPerWarp weight
// rows, every lane taking 16-byte chunks of all of them (a warp streams 512 contiguous bytes of each row per
// step) against every token's x.
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
  const WarpRows<kRowsPerWarp> rows(p, warp_index);
  const float* xs[kTokens];
  for (int t = 0; t < kTokens; ++t) xs[t] = p.x + static_cast<size_t>(min(t, p.n_tokens - 1)) * cols;

  float acc[kRowsPerWarp][kTokens];
  for (int j = 0; j < kRowsPerWarp; ++j)
    for (int t = 0; t < kTokens; ++t) acc[j][t] = 0.0f;
#pragma unroll 1  // the rows' loads are the loads in flight: ptxas's unrolling of this loop spills
  for (int chunk = lane; chunk < cols / kChunk; chunk += kWarpSize) {
    int4 packed[kRowsPerWarp];
    float scale[kRowsPerWarp];
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const size_t row = static_cast<size_t>(rows.index[j]);
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
  finish_rows<kRowsPerWarp, kTokens, kNorm>(p, warp_index, rows, acc, inv_rms);
}

// ---- Q4_0, Q4_K and Q6_K: int8 activations and __dp4a -----------------------------------------------------
// Each block quantizes x (times norm_weight) to int8 per 32 values with a float scale into shared memory, a
// tile of kTileCols columns at a time, then every lane multiplies its weight units against it four values
// per __dp4a. The device layouts (DeviceMatrix in pagedlm_kernels.h) keep every unit's bytes 16-byte aligned.
constexpr int kTileCols = 4096;
constexpr int kOnes = 0x01010101;  // __dp4a(kOnes, x, 0): the sum of x's four int8 values
constexpr int kLowNibbles = 0x0F0F0F0F;

constexpr bool int8_activations(TensorType type) {
  return type == TensorType::kQ4_0 || type == TensorType::kQ4_K || type == TensorType::kQ6_K;
}

template <int kTokens>
struct alignas(16) QuantizedActivations {  // read as int4: 16-byte aligned
  int32_t values[kTokens][kTileCols / 4];  // four int8 values per word, in column order
  float scales[kTokens][kTileCols / kQ8Block];
};

// Columns [first, first + count) of every token's x (times norm_weight; the 1 / RMS is applied to the sums)
// as int8 codes round(v * 127 / max|v|) per 32 values, and the 32 values' scale max|v| / 127.
template <int kTokens, bool kNorm>
__device__ __forceinline__ void quantize_tile(const MatvecParams& p, int first, int count, QuantizedActivations<kTokens>& q) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int groups = count / kQ8Block;
  for (int i = warp; i < groups * kTokens; i += kWarps) {  // the same trip count for every lane of a warp
    const int t = i / groups, g = i % groups;
    const int c = first + kQ8Block * g + lane;
    float v = p.x[static_cast<size_t>(min(t, p.n_tokens - 1)) * p.weights.cols + c];
    if constexpr (kNorm) v *= p.norm_weight[c];
    const float amax = warp_max(fabsf(v));
    const int code = amax > 0.0f ? __float2int_rn(v * (127.0f / amax)) : 0;
    reinterpret_cast<int8_t*>(q.values[t])[kQ8Block * g + lane] = static_cast<int8_t>(code);
    if (lane == 0) q.scales[t][g] = amax / 127.0f;
  }
}

// Four words (16 int8 values) of token t's tile from column `col` (a multiple of 16).
template <int kTokens>
__device__ __forceinline__ int4 activation_words(const QuantizedActivations<kTokens>& q, int t, int col) {
  return *reinterpret_cast<const int4*>(&q.values[t][col / 4]);
}

__device__ __forceinline__ int dot4(int4 w, int4 x, int acc) {
  return __dp4a(w.w, x.w, __dp4a(w.z, x.z, __dp4a(w.y, x.y, __dp4a(w.x, x.x, acc))));
}
__device__ __forceinline__ int sum16(int4 x) { return dot4({kOnes, kOnes, kOnes, kOnes}, x, 0); }
__device__ __forceinline__ int4 low_nibbles(int4 v) { return {v.x & kLowNibbles, v.y & kLowNibbles, v.z & kLowNibbles, v.w & kLowNibbles}; }
__device__ __forceinline__ int4 high_nibbles(int4 v) {
  return {(v.x >> 4) & kLowNibbles, (v.y >> 4) & kLowNibbles, (v.z >> 4) & kLowNibbles, (v.w >> 4) & kLowNibbles};
}

// A weight unit: the columns one lane takes from one row per step, loaded, with what scales them.
// Q4_0: one block (32 columns), its 16 nibble bytes and f16 scale.
struct Q4_0Unit {
  static constexpr int kColumns = 32;
  int4 nibbles;
  float d;
  __device__ __forceinline__ static int first_column(int unit) { return unit * kColumns; }
  __device__ __forceinline__ void load(const DeviceMatrix& w, int row, int unit) {
    const size_t block = static_cast<size_t>(row) * (w.cols / kQ8Block) + unit;
    nibbles = reinterpret_cast<const int4*>(w.data)[block];
    d = half_to_float(w.scales[block]);
  }
  // Token t's product over the unit, `col` its first column within the tile.
  template <int kTokens>
  __device__ __forceinline__ float dot(const QuantizedActivations<kTokens>& q, int t, int col) const {
    const int4 x_low = activation_words(q, t, col), x_high = activation_words(q, t, col + 16);
    const int sum = dot4(low_nibbles(nibbles), x_low, dot4(high_nibbles(nibbles), x_high, 0));
    const int x_sum = sum16(x_low) + sum16(x_high);
    return d * q.scales[t][col / kQ8Block] * static_cast<float>(sum - 8 * x_sum);  // values are nibble - 8
  }
};

// Q4_K (as stored, 144-byte blocks): 16 nibble bytes of one 32-byte group g: their low nibbles are 16 values
// of sub-block 2g, their high nibbles the same 16 positions of sub-block 2g + 1, 32 columns further.
struct Q4_KUnit {
  static constexpr int kColumns = 32;  // eight units per block, each spread over two sub-blocks
  static constexpr int kBlockBytes = 144;
  int4 nibbles;
  float scale_low, min_low, scale_high, min_high;  // d x sub-block scale, dmin x sub-block min
  __device__ __forceinline__ static int scale_byte(int4 header, int k) {  // byte k of the 12 scale bytes
    const int word = k < 4 ? header.y : k < 8 ? header.z : header.w;  // selects, not an indexed array (local memory)
    return (word >> (8 * (k % 4))) & 0xFF;
  }
  // The CPU's q4_k_scale_min: 6-bit scale and min of sub-block s.
  __device__ __forceinline__ static void scale_min(int4 header, int s, int& scale, int& min_value) {
    if (s < 4) {
      scale = scale_byte(header, s) & 63;
      min_value = scale_byte(header, s + 4) & 63;
    } else {
      scale = (scale_byte(header, s + 4) & 0xF) | ((scale_byte(header, s - 4) >> 6) << 4);
      min_value = (scale_byte(header, s + 4) >> 4) | ((scale_byte(header, s) >> 6) << 4);
    }
  }
  __device__ __forceinline__ void load(const DeviceMatrix& w, int row, int unit) {
    const uint8_t* block = static_cast<const uint8_t*>(w.data) + (static_cast<size_t>(row) * (w.cols / kSuperBlock) + unit / 8) * kBlockBytes;
    const int4 header = *reinterpret_cast<const int4*>(block);  // d, dmin, 12 scale bytes
    nibbles = *reinterpret_cast<const int4*>(block + 16 + 16 * (unit % 8));
    const int group = unit % 8 / 2;
    const float d = half_to_float(static_cast<uint16_t>(header.x)), dmin = half_to_float(static_cast<uint16_t>(static_cast<uint32_t>(header.x) >> 16));
    int scale = 0, min_value = 0;
    scale_min(header, 2 * group, scale, min_value);
    scale_low = d * static_cast<float>(scale), min_low = dmin * static_cast<float>(min_value);
    scale_min(header, 2 * group + 1, scale, min_value);
    scale_high = d * static_cast<float>(scale), min_high = dmin * static_cast<float>(min_value);
  }
  // The unit's first column within its block: 64g + 16h for the low nibbles.
  __device__ __forceinline__ static int first_column(int unit) { return unit / 8 * kSuperBlock + unit % 8 / 2 * 64 + unit % 2 * 16; }
  template <int kTokens>
  __device__ __forceinline__ float dot(const QuantizedActivations<kTokens>& q, int t, int col) const {
    const int4 x_low = activation_words(q, t, col), x_high = activation_words(q, t, col + 32);
    const float low = scale_low * static_cast<float>(dot4(low_nibbles(nibbles), x_low, 0)) - min_low * static_cast<float>(sum16(x_low));
    const float high = scale_high * static_cast<float>(dot4(high_nibbles(nibbles), x_high, 0)) - min_high * static_cast<float>(sum16(x_high));
    return q.scales[t][col / kQ8Block] * low + q.scales[t][(col + 32) / kQ8Block] * high;
  }
};

// Q6_K (blocks padded from 210 to 224 bytes at upload, so each starts 16-byte aligned): in half hf of a
// block, 16 positions l = 16 lr + i of the four 32-value runs k: low bits from `low` bytes 64 hf + l (runs 0
// and 2, low and high nibbles) and 64 hf + 32 + l (runs 1 and 3), high bits from `high` byte 32 hf + l.
struct Q6_KUnit {
  static constexpr int kColumns = 64;  // four units per block
  static constexpr int kBlockBytes = 224;
  int4 low0, low1, high;
  float scale[4];  // d x the int8 scale of each run's 16 values
  __device__ __forceinline__ void load(const DeviceMatrix& w, int row, int unit) {
    const uint8_t* block = static_cast<const uint8_t*>(w.data) + (static_cast<size_t>(row) * (w.cols / kSuperBlock) + unit / 4) * kBlockBytes;
    const int half = unit % 4 / 2, part = unit % 2;
    low0 = *reinterpret_cast<const int4*>(block + 64 * half + 16 * part);
    low1 = *reinterpret_cast<const int4*>(block + 64 * half + 32 + 16 * part);
    high = *reinterpret_cast<const int4*>(block + 128 + 32 * half + 16 * part);
    const uint2 scales = *reinterpret_cast<const uint2*>(block + 192 + 8 * half);  // the half's 8 int8 scales
    const float d = half_to_float(*reinterpret_cast<const uint16_t*>(block + 208));
    for (int k = 0; k < 4; ++k) {
      const int index = part + 2 * k;
      const uint32_t word = index < 4 ? scales.x : scales.y;
      scale[k] = d * static_cast<float>(static_cast<int8_t>(word >> (8 * (index % 4))));
    }
  }
  __device__ __forceinline__ static int first_column(int unit) { return unit / 4 * kSuperBlock + unit % 4 / 2 * 128 + unit % 2 * 16; }
  // The 6-bit values (0..63) of run k in four words: low nibbles or high nibbles, plus two high bits.
  __device__ __forceinline__ static int codes(int low, int high_bits, int k) {
    const uint32_t l = static_cast<uint32_t>(low), h = static_cast<uint32_t>(high_bits);
    const uint32_t low_bits = (k < 2 ? l : l >> 4) & kLowNibbles;
    const uint32_t moved = k < 2 ? h << (4 - 2 * k) : h >> (2 * k - 4);  // bits 2k, 2k + 1 of each byte to bits 4, 5
    return static_cast<int>(low_bits | (moved & 0x30303030u));
  }
  template <int kTokens>
  __device__ __forceinline__ float dot(const QuantizedActivations<kTokens>& q, int t, int col) const {
    float total = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int4 low = k % 2 == 0 ? low0 : low1;
      const int4 w = {codes(low.x, high.x, k), codes(low.y, high.y, k), codes(low.z, high.z, k), codes(low.w, high.w, k)};
      const int4 x = activation_words(q, t, col + 32 * k);
      total += scale[k] * q.scales[t][(col + 32 * k) / kQ8Block] * static_cast<float>(dot4(w, x, 0) - 32 * sum16(x));  // values are code - 32
    }
    return total;
  }
};

template <TensorType kType> struct UnitOf;
template <> struct UnitOf<TensorType::kQ4_0> { using Type = Q4_0Unit; };
template <> struct UnitOf<TensorType::kQ4_K> { using Type = Q4_KUnit; };
template <> struct UnitOf<TensorType::kQ6_K> { using Type = Q6_KUnit; };

template <TensorType kType, int kTokens, bool kNorm>
__global__ void __launch_bounds__(kThreads) quantized_matvec_kernel(MatvecParams p) {
  using Unit = typename UnitOf<kType>::Type;
  __shared__ float inv_rms[kTokens];
  __shared__ QuantizedActivations<kTokens> activations;
  if constexpr (kNorm) token_inverse_rms<kTokens>(p, inv_rms);
  constexpr int kRowsPerWarp = rows_per_warp(kTokens);
  const int cols = p.weights.cols, lane = threadIdx.x % kWarpSize;
  const int warp_index = blockIdx.x * kWarps + threadIdx.x / kWarpSize;
  const WarpRows<kRowsPerWarp> rows(p, warp_index);
  float acc[kRowsPerWarp][kTokens];
  for (int j = 0; j < kRowsPerWarp; ++j)
    for (int t = 0; t < kTokens; ++t) acc[j][t] = 0.0f;
  for (int first = 0; first < cols; first += kTileCols) {
    const int count = min(kTileCols, cols - first);
    __syncthreads();  // every warp is done with the previous tile
    quantize_tile<kTokens, kNorm>(p, first, count, activations);
    __syncthreads();
    for (int local = lane; local < count / Unit::kColumns; local += kWarpSize) {
      const int unit = first / Unit::kColumns + local;
      const int col = Unit::first_column(unit) - first;
      Unit units[kRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) units[j].load(p.weights, rows.index[j], unit);
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
        for (int t = 0; t < kTokens; ++t) acc[j][t] += units[j].template dot<kTokens>(activations, t, col);
    }
  }
  finish_rows<kRowsPerWarp, kTokens, kNorm>(p, warp_index, rows, acc, inv_rms);
}

// One thread per 32 values of a row (a block of Q4_0, a sub-block of Q4_K, a run of Q6_K), each value
// computed in the CPU's order (__fmul_rn keeps nvcc from fusing it into an FMA) and rounded once to f16.
template <TensorType kType>
__global__ void dequantize_kernel(DequantizeParams p) {
  const DeviceMatrix& w = p.weights;
  const size_t groups_per_row = static_cast<size_t>(w.cols) / kQ8Block, total = groups_per_row * w.rows;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t row = i / groups_per_row;
    const int group = static_cast<int>(i % groups_per_row);
    uint16_t* out = p.out + row * w.cols + static_cast<size_t>(group) * kQ8Block;
    if constexpr (kType == TensorType::kQ4_0) {
      const uint8_t* nibbles = static_cast<const uint8_t*>(w.data) + i * 16;
      const float d = half_to_float(w.scales[i]);
      for (int j = 0; j < 16; ++j) {
        out[j] = float_to_half(__fmul_rn(d, static_cast<float>((nibbles[j] & 0xF) - 8)));
        out[j + 16] = float_to_half(__fmul_rn(d, static_cast<float>((nibbles[j] >> 4) - 8)));
      }
    } else if constexpr (kType == TensorType::kQ4_K) {
      const uint8_t* block = static_cast<const uint8_t*>(w.data) + (row * (w.cols / kSuperBlock) + group / 8) * Q4_KUnit::kBlockBytes;
      const int s = group % 8;
      const int4 header = *reinterpret_cast<const int4*>(block);
      int scale = 0, min_value = 0;
      Q4_KUnit::scale_min(header, s, scale, min_value);
      const float d = half_to_float(static_cast<uint16_t>(header.x)), dmin = half_to_float(static_cast<uint16_t>(static_cast<uint32_t>(header.x) >> 16));
      const float ds = __fmul_rn(d, static_cast<float>(scale)), dm = __fmul_rn(dmin, static_cast<float>(min_value));
      const uint8_t* nibbles = block + 16 + 32 * (s / 2);
      for (int l = 0; l < 32; ++l) {
        const int q = s % 2 == 0 ? nibbles[l] & 0xF : nibbles[l] >> 4;
        out[l] = float_to_half(__fmul_rn(ds, static_cast<float>(q)) - dm);
      }
    } else {
      const uint8_t* block = static_cast<const uint8_t*>(w.data) + (row * (w.cols / kSuperBlock) + group / 8) * Q6_KUnit::kBlockBytes;
      const int half = group % 8 / 4, k = group % 4;
      const uint8_t* low = block + 64 * half;
      const uint8_t* high = block + 128 + 32 * half;
      const int8_t* scales = reinterpret_cast<const int8_t*>(block + 192 + 8 * half);
      const float d = half_to_float(*reinterpret_cast<const uint16_t*>(block + 208));
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = low[l + 32 * (k % 2)];
        const int low_bits = k < 2 ? byte & 0xF : byte >> 4;
        const int q = (low_bits | (((high[l] >> (2 * k)) & 3) << 4)) - 32;
        out[l] = float_to_half(__fmul_rn(__fmul_rn(d, static_cast<float>(scales[l / 16 + 2 * k])), static_cast<float>(q)));
      }
    }
  }
}

template <TensorType kType, int kTokens>
cudaError_t launch_typed(const MatvecParams& p, cudaStream_t stream) {
  constexpr int kRowsPerWarp = rows_per_warp(kTokens);
  const int rows_per_block = kWarps * (p.output == MatvecOutput::kSwiglu ? kRowsPerWarp / 2 : kRowsPerWarp);
  const int outputs = p.output == MatvecOutput::kSwiglu ? p.weights.rows / 2 : p.weights.rows;
  const unsigned grid = static_cast<unsigned>((outputs + rows_per_block - 1) / rows_per_block);
  if constexpr (int8_activations(kType)) {
    if (p.norm_weight != nullptr) {
      PAGEDLM_LAUNCH((quantized_matvec_kernel<kType, kTokens, true>), grid, kThreads, 0, stream)(p);
    } else {
      PAGEDLM_LAUNCH((quantized_matvec_kernel<kType, kTokens, false>), grid, kThreads, 0, stream)(p);
    }
  } else if (p.norm_weight != nullptr) {
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

template <TensorType kType>
cudaError_t launch_dequantize_typed(const DequantizeParams& p, cudaStream_t stream) {
  const size_t groups = static_cast<size_t>(p.weights.rows) * (p.weights.cols / kQ8Block);
  const size_t grid = (groups + 255) / 256;
  PAGEDLM_LAUNCH(dequantize_kernel<kType>, static_cast<unsigned>(grid < 65535 ? grid : 65535), 256, 0, stream)(p);
  return cudaGetLastError();
}

}  // namespace

// ---- launchers ----
bool matvec_supported(const DeviceMatrix& w) {
  if (w.rows <= 0 || w.cols <= 0 || !aligned16(w.data)) return false;
  switch (w.type) {
    case TensorType::kF32: return w.cols % 4 == 0;
    case TensorType::kF16:
    case TensorType::kBF16: return w.cols % 8 == 0;
    case TensorType::kQ8_0:
    case TensorType::kQ4_0: return w.cols % kQ8Block == 0 && w.scales != nullptr;
    case TensorType::kQ4_K:
    case TensorType::kQ6_K: return w.cols % kSuperBlock == 0;
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
    case TensorType::kQ4_0: return launch_for_tokens<TensorType::kQ4_0>(p, stream);
    case TensorType::kQ4_K: return launch_for_tokens<TensorType::kQ4_K>(p, stream);
    case TensorType::kQ6_K: return launch_for_tokens<TensorType::kQ6_K>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_dequantize(const DequantizeParams& p, cudaStream_t stream) {
  if (!matvec_supported(p.weights)) return cudaErrorInvalidValue;
  switch (p.weights.type) {
    case TensorType::kQ8_0: return launch_dequantize_q8_0({p.weights, p.out}, stream);
    case TensorType::kQ4_0: return launch_dequantize_typed<TensorType::kQ4_0>(p, stream);
    case TensorType::kQ4_K: return launch_dequantize_typed<TensorType::kQ4_K>(p, stream);
    case TensorType::kQ6_K: return launch_dequantize_typed<TensorType::kQ6_K>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

bool kept_quantized(TensorType type) { return type == TensorType::kQ4_0 || type == TensorType::kQ4_K || type == TensorType::kQ6_K; }

HostLayout device_layout(TensorType type, const uint8_t* stored, int rows, int cols) {
  HostLayout out;
  const size_t n_rows = static_cast<size_t>(rows);
  if (type == TensorType::kQ4_0) {
    const size_t blocks = n_rows * (cols / kQ8Block);
    const auto* in = reinterpret_cast<const BlockQ4_0*>(stored);
    out.data.resize(blocks * sizeof(in->nibbles));
    out.scales.resize(blocks);
    for (size_t b = 0; b < blocks; ++b) {
      std::memcpy(&out.scales[b], &in[b].scale, sizeof(uint16_t));
      std::memcpy(&out.data[b * sizeof(in->nibbles)], in[b].nibbles, sizeof(in->nibbles));
    }
  } else if (type == TensorType::kQ4_K) {
    out.data.assign(stored, stored + n_rows * (cols / kSuperBlock) * sizeof(BlockQ4_K));
  } else if (type == TensorType::kQ6_K) {
    const size_t blocks = n_rows * (cols / kSuperBlock);
    out.data.assign(blocks * Q6_KUnit::kBlockBytes, 0);
    for (size_t b = 0; b < blocks; ++b) std::memcpy(&out.data[b * Q6_KUnit::kBlockBytes], stored + b * sizeof(BlockQ6_K), sizeof(BlockQ6_K));
  }
  return out;
}

}  // namespace pagedlm::cuda
