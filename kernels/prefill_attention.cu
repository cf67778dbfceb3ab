// Prefill attention over the paged pool: the new tokens of each sequence attend causally to its cached
// prefix and to themselves.
//
// Head sizes that are multiples of 16 run on tensor cores, FlashAttention-2 style: a thread block takes 64
// query rows (4 warps x 16: tokens x the query heads of one KV head, so a GQA group shares each K/V tile) of
// one sequence; K/V tiles are read through the block table, decoded to f16 (bf16 when K or V is stored in
// bf16, whose range f16 lacks) in shared memory, and each warp computes S = Q K^T and O += P V with
// mma.sync m16n8k16 (f32 accumulators), keeping the online softmax of its 16 rows in registers. Q is scaled
// by scale x log2(e) before rounding, so the softmax runs on exp2.
// Head size 8 (smaller than an mma's k) runs on CUDA cores: 32-key tiles decoded to float, one
// online-softmax state per query row, a warp handling a few rows with one key per lane.
// K and V are read each in its own type, chosen at run time (with_side_type in device_common.cuh says why).
// CPU twin: CpuBackend::attend over kv_load-decoded rows (the tensor-core path rounds Q, K, V and the softmax
// weights to 16 bits; test/gpu/attention_test.cpp bounds what that costs).
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kHeadsPerBlock = 8;
constexpr int kKeysPerTile = kWarpSize;  // one key per lane when scoring

template <int kHeadDim>
constexpr int rows_per_warp() {
  return kHeadDim <= 128 ? 8 : 4;  // bounds the registers of the output accumulators
}
template <int kHeadDim>
constexpr int rows_per_block() {
  return rows_per_warp<kHeadDim>() * kWarps;
}
// Odd row stride: lanes reading the same dimension of 32 different keys hit 32 different banks.
template <int kHeadDim>
constexpr int tile_stride() {
  return kHeadDim + 1;
}
template <int kHeadDim>
constexpr size_t shared_bytes() {
  return sizeof(float) * (rows_per_block<kHeadDim>() * kHeadDim + 2 * kKeysPerTile * tile_stride<kHeadDim>() + kWarps * kKeysPerTile);
}

struct Tiling {
  int head_chunks;       // thread blocks per KV head: ceil(group / kHeadsPerBlock)
  int tokens_per_block;  // query tokens per thread block, so that tokens x heads rows fill it
};

// ---- device helpers ----
// Stages keys [first, first + kKeysPerTile) of `kv_head` as floats, scale applied, 4 elements a thread;
// outside [begin, end), zeros: a window's passed keys are never read (their blocks may be released).
template <int kHeadDim, bool kF16Only>
__device__ void load_tile(const PagedKv& kv, const int32_t* table, int kv_head, int first, int begin,
                          int end, float* k_tile, float* v_tile) {
  constexpr int kRuns = kHeadDim / 4;
  // One side at a time, so that each is one loop of its type.
  const auto stage = [&](auto value, float* tile) {
    with_side_type<kF16Only, decltype(value)::value, kHeadDim>(kv, [&](auto typed) {
      for (int i = threadIdx.x; i < kKeysPerTile * kRuns; i += kThreads) {
        const int key = i / kRuns, d = (i % kRuns) * 4;
        const int position = first + key;
        float x[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
        if (position >= begin && position < end) {
          const int block = table[position / kv.block_size];
          const size_t row = (static_cast<size_t>(block) * kv.num_kv_heads + kv_head) * kv.block_size + position % kv.block_size;
          typed.template load<1>(kv, row, d, 0, x);
        }
        for (int j = 0; j < 4; ++j) tile[key * tile_stride<kHeadDim>() + d + j] = x[0][j];
      }
    });
  };
  stage(std::false_type{}, k_tile);
  stage(std::true_type{}, v_tile);
}

// ---- kernel ----
template <int kHeadDim, bool kF16Only>
__global__ void __launch_bounds__(kThreads) prefill_attention_kernel(PrefillAttentionParams p, Tiling tiling) {
  constexpr int kRowsPerWarp = rows_per_warp<kHeadDim>();
  constexpr int kDimsPerLane = (kHeadDim + kWarpSize - 1) / kWarpSize;
  constexpr int kStride = tile_stride<kHeadDim>();
  PAGEDLM_DYNAMIC_SHARED(float, shared);
  float* q_s = shared;                                         // [rows][kHeadDim], pre-scaled
  float* k_tile = q_s + rows_per_block<kHeadDim>() * kHeadDim;  // [kKeysPerTile][kStride]
  float* v_tile = k_tile + kKeysPerTile * kStride;
  float* weights = v_tile + kKeysPerTile * kStride;             // [kWarps][kKeysPerTile]

  const int seq = blockIdx.z;
  const int kv_head = blockIdx.y / tiling.head_chunks, chunk = blockIdx.y % tiling.head_chunks;
  const int group = p.num_heads / p.kv.num_kv_heads;
  const int first_head = kv_head * group + chunk * kHeadsPerBlock;
  const int heads = min(kHeadsPerBlock, group - chunk * kHeadsPerBlock);
  const int seq_first_row = p.query_starts[seq];
  const int seq_tokens = p.query_starts[seq + 1] - seq_first_row;
  const int first_token = blockIdx.x * tiling.tokens_per_block;
  if (first_token >= seq_tokens) return;
  const int tokens = min(tiling.tokens_per_block, seq_tokens - first_token);
  const int rows = tokens * heads;  // row r: token r / heads, query head r % heads
  const int first_position = p.start_positions[seq] + first_token;
  const int keys_end = first_position + tokens;  // the last token sees keys [0, keys_end)

  for (int i = threadIdx.x; i < rows * kHeadDim; i += kThreads) {
    const int r = i / kHeadDim, d = i % kHeadDim;
    const size_t token_row = static_cast<size_t>(seq_first_row + first_token + r / heads);
    q_s[i] = p.q[(token_row * p.num_heads + first_head + r % heads) * kHeadDim + d] * p.scale;
  }

  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  float row_max[kRowsPerWarp], row_sum[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    row_max[rr] = -INFINITY;
    row_sum[rr] = 0.0f;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) acc[rr][i] = 0.0f;
  }

  const int32_t* table = p.block_tables + static_cast<size_t>(seq) * p.max_blocks_per_seq;
  // The lowest key any of the block's tokens reads (its first token's window start); tiles below it are skipped.
  const int lowest_key = p.window > 0 ? max(0, first_position - p.window + 1) : 0;
  for (int first_key = lowest_key / kKeysPerTile * kKeysPerTile; first_key < keys_end; first_key += kKeysPerTile) {
    __syncthreads();  // the previous tile is no longer read (and q_s is written, the first time)
    load_tile<kHeadDim, kF16Only>(p.kv, table, kv_head, first_key, lowest_key, keys_end, k_tile, v_tile);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp * kRowsPerWarp + rr;
      if (r >= rows) break;  // warp-uniform
      const int position = first_position + r / heads;
      if (first_key > position) continue;  // the whole tile is in this row's future
      const int lowest = p.window > 0 ? position - p.window + 1 : 0;
      if (first_key + kKeysPerTile <= lowest) continue;  // ... or wholly below its window
      const int key = first_key + lane;
      const bool visible = key <= position && key >= lowest;
      float score = -INFINITY;
      if (visible) {
        const float* q = q_s + r * kHeadDim;
        const float* k = k_tile + lane * kStride;
        score = 0.0f;
        for (int d = 0; d < kHeadDim; ++d) score += q[d] * k[d];
      }
      const float new_max = fmaxf(row_max[rr], warp_max(score));  // finite: the tile holds a visible key
      const float correction = expf(row_max[rr] - new_max);
      const float weight = visible ? expf(score - new_max) : 0.0f;
      row_sum[rr] = row_sum[rr] * correction + warp_sum(weight);
      row_max[rr] = new_max;
      weights[warp * kKeysPerTile + lane] = weight;
      __syncwarp();
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + i * kWarpSize;
        if (d >= kHeadDim) break;
        float a = acc[rr][i] * correction;
        for (int j = 0; j < kKeysPerTile; ++j) a += weights[warp * kKeysPerTile + j] * v_tile[j * kStride + d];
        acc[rr][i] = a;
      }
      __syncwarp();  // weights are rewritten by the next row
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    if (r >= rows) break;
    const size_t token_row = static_cast<size_t>(seq_first_row + first_token + r / heads);
    float* out = p.out + (token_row * p.num_heads + first_head + r % heads) * kHeadDim;
    const float inverse = 1.0f / row_sum[rr];
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
      const int d = lane + i * kWarpSize;
      if (d < kHeadDim) out[d] = acc[rr][i] * inverse;
    }
  }
}

// ---- tensor-core kernel (head sizes that are multiples of 16) ----
namespace tensor_core {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kRows = kWarps * 16;  // query rows per block: one mma tile of rows per warp
constexpr float kLog2e = 1.4426950408889634f;

template <int kHeadDim>
constexpr bool covers() {
  return kHeadDim % 16 == 0;
}
// Keys per K/V tile: fewer for the widest heads, whose output accumulators take most of the registers.
template <int kHeadDim>
constexpr int tile_keys() {
  return kHeadDim <= 128 ? 64 : 32;
}
// Q's fragments stay in registers for the whole kernel where they fit beside the accumulators; the widest
// heads reread them from shared memory at each tile.
template <int kHeadDim>
constexpr bool q_in_registers() {
  return kHeadDim <= 128;
}
// Elements per shared-memory row: 16 bytes of padding put the 8 rows an ldmatrix phase reads in 8 different
// groups of 4 banks.
template <int kHeadDim>
constexpr int stride() {
  return kHeadDim + 8;
}
// Q's tile, and K's and V's; with Q in registers its staging area is reused for K and V.
template <int kHeadDim>
constexpr size_t shared_bytes() {
  const size_t q = static_cast<size_t>(kRows) * stride<kHeadDim>();
  const size_t kv = 2 * static_cast<size_t>(tile_keys<kHeadDim>()) * stride<kHeadDim>();
  return sizeof(uint16_t) * (q_in_registers<kHeadDim>() ? (q > kv ? q : kv) : q + kv);
}

// Eight elements [first, first + 8) of pool row `row` as the mma's 16-bit type: a plain 16-byte copy when the
// pool already holds that type, else decoded (scales applied) and rounded.
template <bool kBf16, KvDtype kType, bool kValue, int kHeadDim>
__device__ __forceinline__ uint4 load_row8(TypedSide<kType, kValue, kHeadDim> typed, const PagedKv& kv, size_t row, int first) {
  if constexpr (kType == (kBf16 ? KvDtype::kBF16 : KvDtype::kF16)) {
    return *reinterpret_cast<const uint4*>(side_rows<kValue>(kv) + (row * kHeadDim + first) * sizeof(uint16_t));
  } else {
    float x[2][4];
    typed.template load<2>(kv, row, first, 4, x);
    return {pack_mma_pair<kBf16>(x[0][0], x[0][1]), pack_mma_pair<kBf16>(x[0][2], x[0][3]), pack_mma_pair<kBf16>(x[1][0], x[1][1]),
            pack_mma_pair<kBf16>(x[1][2], x[1][3])};
  }
}

// Stages keys [first, first + tile_keys) of `kv_head` into k_tile and v_tile ([key][stride] 16-bit elements),
// 8 elements a thread per step; outside [begin, end), zeros: keys a window passed are never read (their blocks
// may be released), nor keys past the last token's.
template <int kHeadDim, bool kF16Only, bool kBf16>
__device__ void stage_kv_tile(const PagedKv& kv, const int32_t* table, int kv_head, int first, int begin, int end, uint16_t* k_tile,
                              uint16_t* v_tile) {
  constexpr int kRuns = kHeadDim / 8;
  const auto stage = [&](auto value, uint16_t* tile) {
    with_side_type<kF16Only, decltype(value)::value, kHeadDim>(kv, [&](auto typed) {
      for (int i = threadIdx.x; i < tile_keys<kHeadDim>() * kRuns; i += kThreads) {
        const int key = i / kRuns, d = i % kRuns * 8;
        const int position = first + key;
        uint4 packed = {0u, 0u, 0u, 0u};
        if (position >= begin && position < end) {
          const int block = table[position / kv.block_size];
          const size_t row = (static_cast<size_t>(block) * kv.num_kv_heads + kv_head) * kv.block_size + position % kv.block_size;
          packed = load_row8<kBf16>(typed, kv, row, d);
        }
        *reinterpret_cast<uint4*>(tile + key * stride<kHeadDim>() + d) = packed;
      }
    });
  };
  stage(std::false_type{}, k_tile);
  stage(std::true_type{}, v_tile);
}

// Row r of a block: token r / heads of the block's tokens, query head r % heads. Rows past the block's last
// (a partial tile) compute as copies of its last token and are not written.
struct RowTiling {
  int heads;
  int tokens;
  int first_position;
  __device__ int position(int r) const { return first_position + min(r / heads, tokens - 1); }
};

// Blocks per SM that ptxas is asked to fit: left to ptxas for the wider heads, whose accumulators need up to
// 255 registers; for the narrowest, ptxas otherwise picks a register budget it then spills under.
template <int kHeadDim>
constexpr int min_blocks_per_sm() {
  return kHeadDim <= 32 ? 4 : 1;
}

template <int kHeadDim, bool kF16Only, bool kBf16>
__global__ void __launch_bounds__(kThreads, min_blocks_per_sm<kHeadDim>()) prefill_attention_kernel(PrefillAttentionParams p, Tiling tiling) {
  constexpr int kKeys = tile_keys<kHeadDim>(), kStride = stride<kHeadDim>();
  constexpr int kSteps = kHeadDim / 16;    // k steps of S = Q K^T
  constexpr int kKeyTiles = kKeys / 8;     // n tiles of S
  constexpr int kDimTiles = kHeadDim / 8;  // n tiles of O
  PAGEDLM_DYNAMIC_SHARED(uint4, shared);
  uint16_t* q_s = reinterpret_cast<uint16_t*>(shared);  // [kRows][kStride]
  uint16_t* k_tile = q_in_registers<kHeadDim>() ? q_s : q_s + kRows * kStride;  // [kKeys][kStride]
  uint16_t* v_tile = k_tile + kKeys * kStride;

  const int seq = blockIdx.z;
  const int kv_head = blockIdx.y / tiling.head_chunks, chunk = blockIdx.y % tiling.head_chunks;
  const int group = p.num_heads / p.kv.num_kv_heads;
  const int first_head = kv_head * group + chunk * kHeadsPerBlock;
  const int heads = min(kHeadsPerBlock, group - chunk * kHeadsPerBlock);
  const int seq_first_row = p.query_starts[seq];
  const int seq_tokens = p.query_starts[seq + 1] - seq_first_row;
  const int first_token = blockIdx.x * tiling.tokens_per_block;
  if (first_token >= seq_tokens) return;
  const int tokens = min(tiling.tokens_per_block, seq_tokens - first_token);
  const int rows = tokens * heads;
  const RowTiling tile{heads, tokens, p.start_positions[seq] + first_token};
  const int keys_end = tile.position(rows - 1) + 1;  // the last token sees keys [0, keys_end)

  // Q, scaled into the log2 domain and rounded, rows past `rows` zero.
  const float q_scale = p.scale * kLog2e;
  for (int i = threadIdx.x; i < kRows * kHeadDim / 8; i += kThreads) {
    const int r = i / (kHeadDim / 8), d = i % (kHeadDim / 8) * 8;
    uint4 packed = {0u, 0u, 0u, 0u};
    if (r < rows) {
      const size_t token_row = static_cast<size_t>(seq_first_row + first_token + r / heads);
      const float4* q = reinterpret_cast<const float4*>(p.q + (token_row * p.num_heads + first_head + r % heads) * kHeadDim + d);
      const float4 lo = q[0], hi = q[1];
      packed = {pack_mma_pair<kBf16>(lo.x * q_scale, lo.y * q_scale), pack_mma_pair<kBf16>(lo.z * q_scale, lo.w * q_scale),
                pack_mma_pair<kBf16>(hi.x * q_scale, hi.y * q_scale), pack_mma_pair<kBf16>(hi.z * q_scale, hi.w * q_scale)};
    }
    *reinterpret_cast<uint4*>(q_s + r * kStride + d) = packed;
  }
  __syncthreads();

  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int g = lane / 4, t = lane % 4;
  // A fragments of this warp's 16 rows: lanes 0-15 address rows 0-15 at the step's first 8 dims, 16-31 the next 8.
  const uint16_t* q_rows = q_s + (warp * 16 + lane % 16) * kStride + lane / 16 * 8;
  uint32_t q_frag[q_in_registers<kHeadDim>() ? kSteps : 1][4];
  if constexpr (q_in_registers<kHeadDim>()) {
#pragma unroll
    for (int step = 0; step < kSteps; ++step) ldmatrix_x4<false>(q_frag[step], q_rows + step * 16);
  }

  // This lane's two rows (g and g + 8 of the warp's 16) and the keys each may read: (lowest, position].
  int position[2], lowest[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    position[half] = tile.position(warp * 16 + g + 8 * half);
    lowest[half] = p.window > 0 ? position[half] - p.window + 1 : 0;
  }
  const int warp_first = tile.position(warp * 16), warp_last = tile.position(warp * 16 + 15);
  float out[kDimTiles][4], row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int j = 0; j < kDimTiles; ++j) out[j][0] = out[j][1] = out[j][2] = out[j][3] = 0.0f;

  const int32_t* table = p.block_tables + static_cast<size_t>(seq) * p.max_blocks_per_seq;
  const int block_lowest = p.window > 0 ? max(0, tile.first_position - p.window + 1) : 0;
  for (int first_key = block_lowest / kKeys * kKeys; first_key < keys_end; first_key += kKeys) {
    __syncthreads();  // the previous tile (or Q's staging) is no longer read
    stage_kv_tile<kHeadDim, kF16Only, kBf16>(p.kv, table, kv_head, first_key, block_lowest, keys_end, k_tile, v_tile);
    __syncthreads();
    // Warp-uniform skips: the tile is in the future of all 16 rows, or below all their windows.
    if (first_key > warp_last) continue;
    if (p.window > 0 && first_key + kKeys <= warp_first - p.window + 1) continue;

    // S = Q K^T: B fragments from K's rows; one ldmatrix covers two key tiles (lanes 16-31: the next 8 keys)
    // and one k step (lanes 8-15 and 24-31: its upper 8 dims).
    float s[kKeyTiles][4];
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    const uint16_t* k_rows = k_tile + (lane % 8 + lane / 16 * 8) * kStride + (lane / 8) % 2 * 8;
#pragma unroll
    for (int step = 0; step < kSteps; ++step) {
      uint32_t q_step[4];
      if constexpr (q_in_registers<kHeadDim>()) {
#pragma unroll
        for (int i = 0; i < 4; ++i) q_step[i] = q_frag[step][i];
      } else {
        ldmatrix_x4<false>(q_step, q_rows + step * 16);
      }
#pragma unroll
      for (int j = 0; j < kKeyTiles; j += 2) {
        uint32_t k_frag[4];
        ldmatrix_x4<false>(k_frag, k_rows + j * 8 * kStride + step * 16);
        mma_m16n8k16<kBf16>(s[j], q_step, k_frag);
        mma_m16n8k16<kBf16>(s[j + 1], q_step, k_frag + 2);
      }
    }

    // Masks and the online softmax, per row half: s[j][2 half + e] is key first_key + 8j + 2t + e. A row whose
    // keys so far are all masked keeps max -inf; its exponents are taken against 0 so they stay 0, not NaN.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = first_key + 8 * j + 2 * t + e;
          float& score = s[j][2 * half + e];
          if (key > position[half] || key < lowest[half]) score = -INFINITY;
          tile_max = fmaxf(tile_max, score);
        }
      }
      // The 4 lanes of a group hold the row's keys.
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 2));
      const float new_max = fmaxf(row_max[half], tile_max);
      const float base = new_max == -INFINITY ? 0.0f : new_max;
      const float correction = exp2f(row_max[half] - base);
      row_max[half] = new_max;
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& score = s[j][2 * half + e];
          score = exp2f(score - base);
          sum += score;
        }
      }
      row_sum[half] = row_sum[half] * correction + sum;  // this lane's share; the group's are added at the end
#pragma unroll
      for (int j = 0; j < kDimTiles; ++j) out[j][2 * half] *= correction, out[j][2 * half + 1] *= correction;
    }

    // O += P V: S's accumulators of key tiles 2k and 2k + 1 are P's A fragment for keys [16k, 16k + 16); V's B
    // fragments come transposed from its rows, one ldmatrix covering two dim tiles (lanes 16-31: the next 8
    // dims) and the step's 16 keys (lanes 8-15 and 24-31: its upper 8).
    const uint16_t* v_rows = v_tile + (lane % 8 + (lane / 8) % 2 * 8) * kStride + lane / 16 * 8;
#pragma unroll
    for (int step = 0; step < kKeys / 16; ++step) {
      const uint32_t p_frag[4] = {pack_mma_pair<kBf16>(s[2 * step][0], s[2 * step][1]), pack_mma_pair<kBf16>(s[2 * step][2], s[2 * step][3]),
                                  pack_mma_pair<kBf16>(s[2 * step + 1][0], s[2 * step + 1][1]),
                                  pack_mma_pair<kBf16>(s[2 * step + 1][2], s[2 * step + 1][3])};
#pragma unroll
      for (int j = 0; j < kDimTiles; j += 2) {
        uint32_t v_frag[4];
        ldmatrix_x4<true>(v_frag, v_rows + step * 16 * kStride + j * 8);
        mma_m16n8k16<kBf16>(out[j], p_frag, v_frag);
        mma_m16n8k16<kBf16>(out[j + 1], p_frag, v_frag + 2);
      }
    }
  }

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float sum = row_sum[half];
    sum += __shfl_xor_sync(kFullMask, sum, 1);
    sum += __shfl_xor_sync(kFullMask, sum, 2);
    const int r = warp * 16 + g + 8 * half;
    if (r >= rows) continue;
    const size_t token_row = static_cast<size_t>(seq_first_row + first_token + r / heads);
    float* o = p.out + (token_row * p.num_heads + first_head + r % heads) * kHeadDim + 2 * t;
    const float inverse = 1.0f / sum;
#pragma unroll
    for (int j = 0; j < kDimTiles; ++j) {
      o[8 * j] = out[j][2 * half] * inverse;
      o[8 * j + 1] = out[j][2 * half + 1] * inverse;
    }
  }
}

}  // namespace tensor_core

bool valid(const PrefillAttentionParams& p) {
  const PagedKv& kv = p.kv;
  if (!attention_head_dim_supported(kv.head_dim) || p.num_seqs <= 0 || p.num_seqs > 65535 || kv.num_kv_heads <= 0 ||
      kv.block_size <= 0 || p.num_heads < kv.num_kv_heads || p.num_heads % kv.num_kv_heads != 0 || p.max_query_len <= 0 ||
      p.max_blocks_per_seq <= 0) {
    return false;
  }
  return !kv_scales_missing(kv);
}

template <typename Kernel>
cudaError_t launch_kernel(Kernel kernel, dim3 grid, int threads, size_t shared, const PrefillAttentionParams& params, Tiling tiling, cudaStream_t stream) {
  // Past the default 48 KiB of shared memory for the larger heads; a setting, not a synchronization.
  cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
  if (error != cudaSuccess) return error;
  PAGEDLM_LAUNCH(kernel, grid, threads, shared, stream)(params, tiling);
  return cudaGetLastError();
}

dim3 grid_of(const PrefillAttentionParams& params, Tiling tiling) {
  return dim3((params.max_query_len + tiling.tokens_per_block - 1) / tiling.tokens_per_block, params.kv.num_kv_heads * tiling.head_chunks,
              params.num_seqs);
}

template <int kHeadDim>
cudaError_t launch_cuda_core(const PrefillAttentionParams& params, int group, int heads_per_block, cudaStream_t stream) {
  return dispatch_kv_types(params.kv, [&]<bool kF16Only>() {
    const Tiling tiling{(group + kHeadsPerBlock - 1) / kHeadsPerBlock, rows_per_block<kHeadDim>() / heads_per_block};
    return launch_kernel(prefill_attention_kernel<kHeadDim, kF16Only>, grid_of(params, tiling), kThreads, shared_bytes<kHeadDim>(), params,
                         tiling, stream);
  });
}

// The mma's 16-bit type: bf16 when either side is stored in bf16 (its values may exceed f16's range), else f16.
template <int kHeadDim>
cudaError_t launch_tensor_core(const PrefillAttentionParams& params, int group, int heads_per_block, cudaStream_t stream) {
  const Tiling tiling{(group + kHeadsPerBlock - 1) / kHeadsPerBlock, tensor_core::kRows / heads_per_block};
  const dim3 grid = grid_of(params, tiling);
  constexpr size_t shared = tensor_core::shared_bytes<kHeadDim>();
  if (params.kv.k_dtype == KvDtype::kBF16 || params.kv.v_dtype == KvDtype::kBF16) {
    return launch_kernel(tensor_core::prefill_attention_kernel<kHeadDim, false, true>, grid, tensor_core::kThreads, shared, params, tiling, stream);
  }
  return dispatch_kv_types(params.kv, [&]<bool kF16Only>() {
    return launch_kernel(tensor_core::prefill_attention_kernel<kHeadDim, kF16Only, false>, grid, tensor_core::kThreads, shared, params, tiling,
                         stream);
  });
}

}  // namespace

// ---- launcher ----
cudaError_t launch_prefill_attention(const PrefillAttentionParams& params, cudaStream_t stream) {
  if (!valid(params)) return cudaErrorInvalidValue;
  const int group = params.num_heads / params.kv.num_kv_heads;
  const int heads_per_block = std::min(group, kHeadsPerBlock);
  return dispatch_head_dim(params.kv.head_dim, [&]<int kHeadDim>() {
    if constexpr (tensor_core::covers<kHeadDim>()) {
      return launch_tensor_core<kHeadDim>(params, group, heads_per_block, stream);
    } else {
      return launch_cuda_core<kHeadDim>(params, group, heads_per_block, stream);
    }
  });
}

}  // namespace pagedlm::cuda
