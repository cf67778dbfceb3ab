// Prefill attention over the paged pool: the new tokens of each sequence attend causally to its cached
// prefix and to themselves. A thread block takes (a tile of query tokens, a KV head and up to 8 of its
// query heads, a sequence), walks the keys in tiles of 32 staged in shared memory (decoded to float), and
// keeps one online-softmax state per query row, a warp handling a few rows with one key per lane.
// K and V are read each in its own type, chosen at run time (with_side_type in device_common.cuh says why).
// CPU twin: CpuBackend::attend over kv_load-decoded rows.
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

bool valid(const PrefillAttentionParams& p) {
  const PagedKv& kv = p.kv;
  if (!attention_head_dim_supported(kv.head_dim) || p.num_seqs <= 0 || p.num_seqs > 65535 || kv.num_kv_heads <= 0 ||
      kv.block_size <= 0 || p.num_heads < kv.num_kv_heads || p.num_heads % kv.num_kv_heads != 0 || p.max_query_len <= 0 ||
      p.max_blocks_per_seq <= 0) {
    return false;
  }
  return !kv_scales_missing(kv);
}

}  // namespace

// ---- launcher ----
cudaError_t launch_prefill_attention(const PrefillAttentionParams& params, cudaStream_t stream) {
  if (!valid(params)) return cudaErrorInvalidValue;
  const int group = params.num_heads / params.kv.num_kv_heads;
  const int heads_per_block = std::min(group, kHeadsPerBlock);
  return dispatch_head_dim(params.kv.head_dim, [&]<int kHeadDim>() {
    return dispatch_kv_types(params.kv, [&]<bool kF16Only>() {
      const Tiling tiling{(group + kHeadsPerBlock - 1) / kHeadsPerBlock, rows_per_block<kHeadDim>() / heads_per_block};
      const dim3 grid((params.max_query_len + tiling.tokens_per_block - 1) / tiling.tokens_per_block,
                      params.kv.num_kv_heads * tiling.head_chunks, params.num_seqs);
      auto kernel = prefill_attention_kernel<kHeadDim, kF16Only>;
      // Past the default 48 KiB of shared memory for the larger heads; a setting, not a synchronization.
      cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes<kHeadDim>()));
      if (error != cudaSuccess) return error;
      PAGEDLM_LAUNCH(kernel, grid, kThreads, shared_bytes<kHeadDim>(), stream)(params, tiling);
      return cudaGetLastError();
    });
  });
}

}  // namespace pagedlm::cuda
