// Paged-attention decode: one query token per sequence against the K/V of its context, read through the
// block table. Decode attention reads every K/V byte of the context once and does little arithmetic per
// byte, so the kernel is built to keep HBM busy:
//   - a thread block takes (KV head, the query heads of its GQA group, sequence, partition of the context):
//     each K/V row is read once for every query head that shares it, and the block's shared memory is
//     sized by the group;
//   - each warp streams its own tiles of the partition through a multi-stage cp.async pipeline into
//     shared memory (16-byte copies where the row allows), so several tiles of rows are in flight per warp
//     while it computes on an earlier one; the partition's block-table entries are staged once per block;
//   - the softmax is online (running max and sum per query head), so no score buffer grows with the
//     partition and a partition may cover a whole context;
//   - a long context at a small batch is split into partitions, chosen from the device's resident blocks
//     (SM count x blocks per SM), which a second kernel merges with a log-sum-exp reduction.
// K and V are read each in its own type, chosen at run time (with_side_type in device_common.cuh says why).
// CPU twin: softmax(q . K^T * scale) . V over kv_load-decoded rows (CpuBackend::attend).
#include <algorithm>
#include <cmath>

#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kMaxHeadsPerBlock = 8;
constexpr int kStages = 3;          // tiles per warp in shared memory: one computed on, the others landing
constexpr int kElemsPerLane = 8;    // a lane's slice of a row: 16 bytes of f16 / bf16
constexpr int kRowsPerLane = 4;     // rows of a tile each lane group computes on
constexpr int kMinPartition = 256;  // below this a partition costs more to merge than it saves
constexpr int kMergeThreads = 256;
constexpr size_t kDefaultSharedLimit = 48 << 10;  // above it a kernel must opt in (cudaFuncSetAttribute)
// Blocks per SM the register budget must allow (__launch_bounds__ caps the registers to fit them), and per
// SM for the occupancy estimate: resident threads and shared memory of sm_80 / sm_90 parts.
constexpr int kMinBlocksPerSm = 3;
constexpr int kThreadsPerSm = 2048;
constexpr size_t kSharedPerSm = 160 << 10;

// A row is spread over a power of two of lanes (so xor shuffles stay inside the group), each holding
// kElemsPerLane elements; head sizes that are not a power of two leave the last lanes of a group idle.
template <int kHeadDim>
constexpr int lanes_per_row() {
  int lanes = 1;
  while (lanes * kElemsPerLane < kHeadDim) lanes *= 2;
  return lanes;
}
template <int kHeadDim>
constexpr int tile_rows() {
  return kWarpSize / lanes_per_row<kHeadDim>() * kRowsPerLane;
}

int heads_per_block(int group) { return group < kMaxHeadsPerBlock ? group : kMaxHeadsPerBlock; }

__host__ __device__ inline size_t row_bytes(KvDtype dtype, int head_dim) {
  return dtype == KvDtype::kInt4 ? static_cast<size_t>(head_dim) / 2 : static_cast<size_t>(head_dim) * kv_bytes(dtype);
}

struct Partitioning {
  int head_chunks;  // thread blocks per KV head: ceil(group / heads per block)
  int heads;        // query heads per block
  int partitions;   // ceil(max_context_len / partition_size)
};

Partitioning partitioning(const DecodeAttentionParams& p) {
  const int group = p.num_heads / p.kv.num_kv_heads;
  const int heads = heads_per_block(group);
  return {(group + heads - 1) / heads, heads, (p.max_context_len + p.partition_size - 1) / p.partition_size};
}

// Dynamic shared memory of the main kernel, in this order:
//   [stage area] each warp's kStages tiles of K rows then V rows (none when V sits inside K), as stored in
//                the pool; once the tiles are done the same bytes hold the warps' partial results for the
//                cross-warp merge: [kWarps][heads][head_dim] sums, then [kWarps][heads] maxima and sums;
//   [queries]    [heads][head_dim] floats;
//   [table]      the block-table entries of the partition.
struct SharedLayout {
  size_t k_row, v_row;  // bytes of one staged row of each side (v_row 0: V inside K)
  size_t stage_area, queries, table;
  size_t total() const { return stage_area + queries + table; }
};

template <int kHeadDim>
SharedLayout shared_layout(const PagedKv& kv, int heads, int partition_size) {
  SharedLayout s{};
  s.k_row = row_bytes(kv.k_dtype, kHeadDim);
  s.v_row = kv.v == kv.k ? 0 : row_bytes(kv.v_dtype, kHeadDim);
  const size_t stages = static_cast<size_t>(kWarps) * kStages * tile_rows<kHeadDim>() * (s.k_row + s.v_row);
  const size_t partials = sizeof(float) * kWarps * heads * (kHeadDim + 2);
  s.stage_area = (std::max(stages, partials) + 15) / 16 * 16;
  s.queries = sizeof(float) * heads * kHeadDim;
  s.table = sizeof(int32_t) * ((partition_size + kv.block_size - 1) / kv.block_size + 1);
  return s;
}

struct Workspace {
  float* out;  // [num_seqs, num_heads, partitions, head_dim]: V sums under the partition's own maximum
  float* max;  // [num_seqs, num_heads, partitions]
  float* sum;  // [num_seqs, num_heads, partitions]
};

__host__ __device__ inline Workspace workspace_of(const DecodeAttentionParams& p, int partitions) {
  const size_t rows = static_cast<size_t>(p.num_seqs) * p.num_heads * partitions;
  return {p.workspace, p.workspace + rows * p.kv.head_dim, p.workspace + rows * p.kv.head_dim + rows};
}

// ---- device helpers ----
template <KvDtype kType, bool kValue, int kHeadDim>
constexpr KvDtype type_of(TypedSide<kType, kValue, kHeadDim>) {
  return kType;
}

// Copies a tile's rows [tile_begin, min(end, tile_begin + rows)) of one side into `staged`, as they are
// stored, in pieces of kPiece bytes spread over the warp's lanes.
template <int kPiece>
__device__ __forceinline__ void stage_rows(const uint8_t* side, size_t row_bytes, uint8_t* staged, const PagedKv& kv, int kv_head,
                                           const int32_t* table_s, int first_block, int tile_begin, int rows, int end) {
  const int pieces_per_row = static_cast<int>(row_bytes / kPiece);
  const int lane = threadIdx.x % kWarpSize;
  for (int i = lane; i < rows * pieces_per_row; i += kWarpSize) {
    const int r = i / pieces_per_row, piece = i % pieces_per_row;
    const int t = tile_begin + r;
    if (t >= end) break;  // i grows with r: every later piece is past the end too
    const int block = table_s[t / kv.block_size - first_block];
    const size_t row = (static_cast<size_t>(block) * kv.num_kv_heads + kv_head) * kv.block_size + t % kv.block_size;
    cp_async<kPiece>(staged + r * row_bytes + piece * kPiece, side + row * row_bytes + piece * kPiece);
  }
}

__device__ __forceinline__ void stage_side(const void* side, size_t row_bytes, uint8_t* staged, const PagedKv& kv, int kv_head, const int32_t* table_s,
                                           int first_block, int tile_begin, int rows, int end) {
  const auto* bytes = static_cast<const uint8_t*>(side);
  if (row_bytes % 16 == 0) stage_rows<16>(bytes, row_bytes, staged, kv, kv_head, table_s, first_block, tile_begin, rows, end);
  else if (row_bytes % 8 == 0) stage_rows<8>(bytes, row_bytes, staged, kv, kv_head, table_s, first_block, tile_begin, rows, end);
  else stage_rows<4>(bytes, row_bytes, staged, kv, kv_head, table_s, first_block, tile_begin, rows, end);
}

// Elements [first, first + 8) of a staged row (first a multiple of 8), decoded with the scales of pool row
// `row`: int8 / fp8 a float per row; int4 K (and V inside K) an f16 per channel of the block piece, int4 V an
// f16 per kInt4ValueGroup values of the row.
template <KvDtype kType, bool kValue, int kHeadDim>
__device__ __forceinline__ void decode_slice(const uint8_t* staged, const PagedKv& kv, size_t row, int first, float out[kElemsPerLane]) {
  if constexpr (kType == KvDtype::kInt4) {
    const uint32_t codes = *reinterpret_cast<const uint32_t*>(staged + first / 2);
    const uint16_t* scales = reinterpret_cast<const uint16_t*>(kValue ? kv.v_scales : kv.k_scales);
    const bool per_channel = !kValue || kv.v == kv.k;
#pragma unroll
    for (int i = 0; i < kElemsPerLane; ++i) {
      const int channel = first + i;
      const uint16_t scale = per_channel ? scales[row / kv.block_size * kHeadDim + channel] : scales[row * int4_groups(kHeadDim) + channel / kInt4ValueGroup];
      out[i] = int4_value_device((codes >> (4 * i)) & 0xFu, half_to_float(scale));
    }
  } else if constexpr (kType == KvDtype::kF16 || kType == KvDtype::kBF16) {
    const int4 words = *reinterpret_cast<const int4*>(staged + first * 2);  // one 16-byte shared load
    const uint32_t w[4] = {static_cast<uint32_t>(words.x), static_cast<uint32_t>(words.y), static_cast<uint32_t>(words.z), static_cast<uint32_t>(words.w)};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint16_t lo = static_cast<uint16_t>(w[i]), hi = static_cast<uint16_t>(w[i] >> 16);
      out[2 * i] = kType == KvDtype::kF16 ? half_to_float(lo) : bfloat_to_float(lo);
      out[2 * i + 1] = kType == KvDtype::kF16 ? half_to_float(hi) : bfloat_to_float(hi);
    }
  } else {
    load_kv4<kType>(staged, first, out);
    load_kv4<kType>(staged, first + 4, out + 4);
    if constexpr (has_scales(kType)) {
      const float scale = static_cast<const float*>(kValue ? kv.v_scales : kv.k_scales)[row];
#pragma unroll
      for (int i = 0; i < kElemsPerLane; ++i) out[i] *= scale;
    }
  }
}

// One query head's running softmax state in a lane group: the largest score seen, the sum of
// exp(score - max), and the lane's slice of the V rows weighted by exp(score - max).
struct HeadState {
  float max;
  float sum;
  float acc[kElemsPerLane];
};

// Rescales `state` to the maximum `to` (>= its own): a state that saw nothing has nothing to scale.
__device__ __forceinline__ float rescale_factor(float from, float to) { return from == -INFINITY ? 0.0f : __expf(from - to); }

// Scores of the lane group's kRowsPerLane rows of a staged tile for each head; -inf for rows past the end.
template <int kHeadDim, typename KSide>
__device__ __forceinline__ void score_tile(KSide, const uint8_t* staged_k, size_t k_row_bytes, const DecodeAttentionParams& p, const int32_t* table_s,
                                           int first_block, int kv_head, int heads, int tile_begin, int end, const float* q_s,
                                           float (&scores)[kRowsPerLane][kMaxHeadsPerBlock]) {
  constexpr int kLanes = lanes_per_row<kHeadDim>();
  constexpr KvDtype kType = type_of(KSide{});
  const int lane = threadIdx.x % kWarpSize, sub = lane % kLanes, group = lane / kLanes;
  const bool active = sub * kElemsPerLane < kHeadDim;
#pragma unroll
  for (int j = 0; j < kRowsPerLane; ++j) {
    const int r = j * (kWarpSize / kLanes) + group, t = tile_begin + r;
    float k[kElemsPerLane] = {};
    if (active && t < end) {
      const int block = table_s[t / p.kv.block_size - first_block];
      const size_t row = (static_cast<size_t>(block) * p.kv.num_kv_heads + kv_head) * p.kv.block_size + t % p.kv.block_size;
      decode_slice<kType, false, kHeadDim>(staged_k + r * k_row_bytes, p.kv, row, sub * kElemsPerLane, k);
    }
#pragma unroll
    for (int g = 0; g < kMaxHeadsPerBlock; ++g) {
      if (g >= heads) break;  // block-uniform
      float dot = 0.0f;
      if (active) {
        const float4* q = reinterpret_cast<const float4*>(q_s + g * kHeadDim + sub * kElemsPerLane);
        const float4 a = q[0], b = q[1];
        dot = k[0] * a.x + k[1] * a.y + k[2] * a.z + k[3] * a.w + k[4] * b.x + k[5] * b.y + k[6] * b.z + k[7] * b.w;
      }
#pragma unroll
      for (int offset = 1; offset < kLanes; offset <<= 1) dot += __shfl_xor_sync(kFullMask, dot, offset);
      scores[j][g] = t < end ? dot * p.scale : -INFINITY;
    }
  }
}

// Folds a scored tile into the heads' states: one rescale per tile, then each valid row's V slice. The
// scores become the rows' weights in place.
template <int kHeadDim, typename VSide>
__device__ __forceinline__ void accumulate_tile(VSide, const uint8_t* staged_v, size_t v_row_bytes, const DecodeAttentionParams& p, const int32_t* table_s,
                                                int first_block, int kv_head, int heads, int tile_begin, int end,
                                                float (&scores)[kRowsPerLane][kMaxHeadsPerBlock], HeadState state[kMaxHeadsPerBlock]) {
  constexpr int kLanes = lanes_per_row<kHeadDim>();
  constexpr KvDtype kType = type_of(VSide{});
  const int lane = threadIdx.x % kWarpSize, sub = lane % kLanes, group = lane / kLanes;
  const bool active = sub * kElemsPerLane < kHeadDim;
  float (&weights)[kRowsPerLane][kMaxHeadsPerBlock] = scores;
#pragma unroll
  for (int g = 0; g < kMaxHeadsPerBlock; ++g) {
    if (g >= heads) break;
    float tile_max = scores[0][g];
#pragma unroll
    for (int j = 1; j < kRowsPerLane; ++j) tile_max = fmaxf(tile_max, scores[j][g]);
    const float new_max = fmaxf(state[g].max, tile_max);
    const float factor = rescale_factor(state[g].max, new_max);
    state[g].max = new_max;
    state[g].sum *= factor;
#pragma unroll
    for (int e = 0; e < kElemsPerLane; ++e) state[g].acc[e] *= factor;
#pragma unroll
    for (int j = 0; j < kRowsPerLane; ++j) {
      weights[j][g] = rescale_factor(scores[j][g], new_max);
      state[g].sum += weights[j][g];
    }
  }
#pragma unroll
  for (int j = 0; j < kRowsPerLane; ++j) {
    const int r = j * (kWarpSize / kLanes) + group, t = tile_begin + r;
    if (!active || t >= end) continue;  // stale bytes past the end are never decoded (0 x NaN is NaN)
    const int block = table_s[t / p.kv.block_size - first_block];
    const size_t row = (static_cast<size_t>(block) * p.kv.num_kv_heads + kv_head) * p.kv.block_size + t % p.kv.block_size;
    float v[kElemsPerLane];
    decode_slice<kType, true, kHeadDim>(staged_v + r * v_row_bytes, p.kv, row, sub * kElemsPerLane, v);
#pragma unroll
    for (int g = 0; g < kMaxHeadsPerBlock; ++g) {
      if (g >= heads) break;
#pragma unroll
      for (int e = 0; e < kElemsPerLane; ++e) state[g].acc[e] += weights[j][g] * v[e];
    }
  }
}

// Merges the lane groups of a warp into its first group (lanes [0, lanes per row)).
template <int kHeadDim>
__device__ __forceinline__ void merge_lane_groups(HeadState state[kMaxHeadsPerBlock], int heads) {
  constexpr int kLanes = lanes_per_row<kHeadDim>();
#pragma unroll
  for (int g = 0; g < kMaxHeadsPerBlock; ++g) {
    if (g >= heads) break;
    float top = state[g].max;
#pragma unroll
    for (int offset = kLanes; offset < kWarpSize; offset <<= 1) top = fmaxf(top, __shfl_xor_sync(kFullMask, top, offset));
    const float factor = rescale_factor(state[g].max, top);
    state[g].max = top;
    state[g].sum *= factor;
#pragma unroll
    for (int e = 0; e < kElemsPerLane; ++e) state[g].acc[e] *= factor;
#pragma unroll
    for (int offset = kLanes; offset < kWarpSize; offset <<= 1) {
      state[g].sum += __shfl_xor_sync(kFullMask, state[g].sum, offset);
#pragma unroll
      for (int e = 0; e < kElemsPerLane; ++e) state[g].acc[e] += __shfl_xor_sync(kFullMask, state[g].acc[e], offset);
    }
  }
}

// ---- kernels ----
template <int kHeadDim, bool kF16Only>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) decode_attention_kernel(DecodeAttentionParams p, Partitioning parts, SharedLayout layout) {
  PAGEDLM_DYNAMIC_SHARED(uint8_t, shared);
  constexpr int kLanes = lanes_per_row<kHeadDim>();
  constexpr int kTileRows = tile_rows<kHeadDim>();
  const int seq = blockIdx.y, partition = blockIdx.z;
  const int kv_head = blockIdx.x / parts.head_chunks, chunk = blockIdx.x % parts.head_chunks;
  const int group = p.num_heads / p.kv.num_kv_heads;
  const int first_head = kv_head * group + chunk * parts.heads;
  const int heads = min(parts.heads, group - chunk * parts.heads);
  const int context = p.context_lens[seq];
  // A windowed query reads from first_visible on: partitions wholly below it have nothing to do.
  const int first_visible = p.window > 0 ? max(0, context - p.window) : 0;
  const int begin = max(partition * p.partition_size, first_visible), end = min(context, (partition + 1) * p.partition_size);
  const size_t out_row = static_cast<size_t>(seq) * p.num_heads + first_head;
  if (begin >= end) {
    // No tokens here. With one partition nothing merges later, so an empty context reads as zeros.
    if (parts.partitions == 1) {
      for (int i = threadIdx.x; i < heads * kHeadDim; i += kThreads) p.out[out_row * kHeadDim + i] = 0.0f;
    }
    return;
  }
  float* q_s = reinterpret_cast<float*>(shared + layout.stage_area);
  int32_t* table_s = reinterpret_cast<int32_t*>(shared + layout.stage_area + layout.queries);
  const int first_block = begin / p.kv.block_size, blocks = (end - 1) / p.kv.block_size - first_block + 1;
  const int32_t* table = p.block_tables + static_cast<size_t>(seq) * p.max_blocks_per_seq;
  for (int i = threadIdx.x; i < heads * kHeadDim; i += kThreads) q_s[i] = p.q[out_row * kHeadDim + i];
  for (int i = threadIdx.x; i < blocks; i += kThreads) table_s[i] = table[first_block + i];
  __syncthreads();

  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const size_t stage_bytes = kTileRows * (layout.k_row + layout.v_row);
  uint8_t* warp_stages = shared + warp * kStages * stage_bytes;
  const bool v_in_k = layout.v_row == 0;
  const int tiles = (end - begin + kTileRows - 1) / kTileRows;
  const int my_tiles = tiles > warp ? (tiles - warp + kWarps - 1) / kWarps : 0;  // tiles warp, warp + kWarps, ...
  const auto tile_begin = [&](int i) { return begin + (warp + i * kWarps) * kTileRows; };
  const auto stage_tile = [&](int i) {
    uint8_t* stage = warp_stages + (i % kStages) * stage_bytes;
    stage_side(p.kv.k, layout.k_row, stage, p.kv, kv_head, table_s, first_block, tile_begin(i), kTileRows, end);
    if (!v_in_k) stage_side(p.kv.v, layout.v_row, stage + kTileRows * layout.k_row, p.kv, kv_head, table_s, first_block, tile_begin(i), kTileRows, end);
  };

  HeadState state[kMaxHeadsPerBlock];
#pragma unroll
  for (int g = 0; g < kMaxHeadsPerBlock; ++g) {
    state[g].max = -INFINITY;
    state[g].sum = 0.0f;
#pragma unroll
    for (int e = 0; e < kElemsPerLane; ++e) state[g].acc[e] = 0.0f;
  }
  // Every iteration commits one group (empty past the last tile), so waiting for all but the newest
  // kStages - 2 groups means tile i has landed.
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < my_tiles) stage_tile(i);
    cp_async_commit();
  }
  for (int i = 0; i < my_tiles; ++i) {
    cp_async_wait<kStages - 2>();
    __syncwarp();  // tile i's rows from every lane; and every lane is done with tile i - 1, whose stage refills next
    if (i + kStages - 1 < my_tiles) stage_tile(i + kStages - 1);
    cp_async_commit();
    const uint8_t* stage = warp_stages + (i % kStages) * stage_bytes;
    const uint8_t* staged_v = v_in_k ? stage : stage + kTileRows * layout.k_row;
    const size_t v_row = v_in_k ? layout.k_row : layout.v_row;
    float scores[kRowsPerLane][kMaxHeadsPerBlock];
    with_side_type<kF16Only, false, kHeadDim>(p.kv, [&](auto side) {
      score_tile<kHeadDim>(side, stage, layout.k_row, p, table_s, first_block, kv_head, heads, tile_begin(i), end, q_s, scores);
    });
    with_side_type<kF16Only, true, kHeadDim>(p.kv, [&](auto side) {
      accumulate_tile<kHeadDim>(side, staged_v, v_row, p, table_s, first_block, kv_head, heads, tile_begin(i), end, scores, state);
    });
  }
  cp_async_wait<0>();
  merge_lane_groups<kHeadDim>(state, heads);

  // The warps' partial states meet in the stage area, which every warp is done reading after this barrier.
  __syncthreads();
  float* part_acc = reinterpret_cast<float*>(shared);        // [kWarps][heads][kHeadDim]
  float* part_max = part_acc + kWarps * heads * kHeadDim;    // [kWarps][heads]
  float* part_sum = part_max + kWarps * heads;               // [kWarps][heads]
  if (lane < kLanes && lane * kElemsPerLane < kHeadDim) {
#pragma unroll
    for (int g = 0; g < kMaxHeadsPerBlock; ++g) {
      if (g >= heads) break;
      float* acc = part_acc + (warp * heads + g) * kHeadDim + lane * kElemsPerLane;
#pragma unroll
      for (int e = 0; e < kElemsPerLane; ++e) acc[e] = state[g].acc[e];
      if (lane == 0) part_max[warp * heads + g] = state[g].max, part_sum[warp * heads + g] = state[g].sum;
    }
  }
  __syncthreads();
  const Workspace ws = workspace_of(p, parts.partitions);
  for (int i = threadIdx.x; i < heads * kHeadDim; i += kThreads) {
    const int g = i / kHeadDim, d = i % kHeadDim;
    float top = -INFINITY;
    for (int w = 0; w < kWarps; ++w) top = fmaxf(top, part_max[w * heads + g]);
    float sum = 0.0f, acc = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float factor = rescale_factor(part_max[w * heads + g], top);
      sum += part_sum[w * heads + g] * factor;
      acc += part_acc[(w * heads + g) * kHeadDim + d] * factor;
    }
    if (parts.partitions == 1) {
      p.out[out_row * kHeadDim + i] = acc / sum;
    } else {
      const size_t at = (out_row + g) * parts.partitions + partition;
      ws.out[at * kHeadDim + d] = acc;
      if (d == 0) ws.max[at] = top, ws.sum[at] = sum;
    }
  }
}

template <int kHeadDim>
constexpr int merge_slices() {
  return kMergeThreads / kHeadDim;
}

size_t merge_shared_bytes(int head_dim, int partitions) {
  return sizeof(float) * (partitions + static_cast<size_t>(kMergeThreads / head_dim) * head_dim + kMergeThreads / kWarpSize);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warp_max(v);
  __syncthreads();  // scratch may still be read from a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float top = -INFINITY;
  for (int w = 0; w < kMergeThreads / kWarpSize; ++w) top = fmaxf(top, scratch[w]);
  return top;
}

// One block per (query head, sequence): rescales each partition's sums to the global maximum and divides by
// the total weight. The block's threads split the partitions between them (maximum, weights, total) and
// then the (partition slice, element) pairs of the weighted sum.
template <int kHeadDim>
__global__ void __launch_bounds__(kMergeThreads) merge_partitions_kernel(DecodeAttentionParams p, Partitioning parts) {
  PAGEDLM_DYNAMIC_SHARED(float, merge_shared);
  constexpr int kSlices = merge_slices<kHeadDim>();
  float* weights = merge_shared;                         // [partitions]
  float* slices = weights + parts.partitions;       // [kSlices][kHeadDim]
  float* scratch = slices + kSlices * kHeadDim;     // [warps]
  const int head = blockIdx.x, seq = blockIdx.y;
  const int context = p.context_lens[seq];
  const int used = (context + p.partition_size - 1) / p.partition_size;
  // Partitions below a window's first position wrote nothing (decode_attention_kernel).
  const int skipped = p.window > 0 ? max(0, context - p.window) / p.partition_size : 0;
  const Workspace ws = workspace_of(p, parts.partitions);
  const size_t first = (static_cast<size_t>(seq) * p.num_heads + head) * parts.partitions;
  float top = -INFINITY;
  for (int i = skipped + threadIdx.x; i < used; i += kMergeThreads) top = fmaxf(top, ws.max[first + i]);
  top = block_max(top, scratch);
  float total = 0.0f;
  for (int i = skipped + threadIdx.x; i < used; i += kMergeThreads) {
    weights[i] = __expf(ws.max[first + i] - top);
    total += ws.sum[first + i] * weights[i];
  }
  total = block_sum(total, scratch);  // its barriers also publish the weights
  const int d = threadIdx.x % kHeadDim, slice = threadIdx.x / kHeadDim;
  if (slice < kSlices) {
    float acc = 0.0f;
    for (int i = skipped + slice; i < used; i += kSlices) acc += ws.out[(first + i) * kHeadDim + d] * weights[i];
    slices[slice * kHeadDim + d] = acc;
  }
  __syncthreads();
  if (threadIdx.x < kHeadDim) {
    float acc = 0.0f;
    for (int s = 0; s < kSlices; ++s) acc += slices[s * kHeadDim + threadIdx.x];
    p.out[(static_cast<size_t>(seq) * p.num_heads + head) * kHeadDim + threadIdx.x] = used > skipped ? acc / total : 0.0f;
  }
}

bool valid(const DecodeAttentionParams& p) {
  const PagedKv& kv = p.kv;
  if (!attention_head_dim_supported(kv.head_dim) || p.num_seqs <= 0 || kv.num_kv_heads <= 0 || kv.block_size <= 0 ||
      p.num_heads % kv.num_kv_heads != 0 || p.num_heads < kv.num_kv_heads || p.max_context_len <= 0 || p.max_blocks_per_seq <= 0 ||
      p.partition_size < 32 || p.partition_size % 32 != 0) {
    return false;
  }
  if (kv_scales_missing(kv)) return false;
  const Partitioning parts = partitioning(p);
  return (parts.partitions == 1 || p.workspace != nullptr) && parts.partitions <= 65535 && p.num_seqs <= 65535 &&
         static_cast<long long>(kv.num_kv_heads) * parts.head_chunks <= 0x7fffffff;
}

// Launches with `bytes` of dynamic shared memory, opting the kernel in first when that is above the default.
template <typename Kernel>
cudaError_t allow_shared(Kernel kernel, size_t bytes) {
  if (bytes <= kDefaultSharedLimit) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// The most partitions the chooser considers: enough for a few waves of the device's resident blocks, never
// partitions under kMinPartition tokens. It only falls as the batch grows.
long long max_partitions(int num_seqs, int num_kv_heads, int max_context_len, int target_blocks) {
  const long long per_partition = static_cast<long long>(num_seqs) * num_kv_heads;
  return std::max(1LL, std::min(ceil_div(4LL * target_blocks, per_partition), ceil_div(max_context_len, kMinPartition)));
}

}  // namespace

// ---- launchers ----
bool attention_head_dim_supported(int head_dim) {
  for (int supported : {8, 16, 32, 64, 80, 96, 128, 256}) {
    if (head_dim == supported) return true;
  }
  return false;
}

int decode_attention_blocks_per_sm(const PagedKv& kv, int num_heads) {
  if (!attention_head_dim_supported(kv.head_dim) || kv.num_kv_heads <= 0 || kv.block_size <= 0) return 1;
  const int heads = heads_per_block(std::max(1, num_heads / kv.num_kv_heads));
  size_t bytes = 0;
  dispatch_head_dim(kv.head_dim, [&]<int kHeadDim>() {
    bytes = shared_layout<kHeadDim>(kv, heads, kMinPartition).total();
    return cudaSuccess;
  });
  const size_t by_shared = std::max<size_t>(1, kSharedPerSm / std::max<size_t>(1, bytes));
  return static_cast<int>(std::min<size_t>({by_shared, kThreadsPerSm / kThreads, kMinBlocksPerSm}));
}

// Blocks run in waves of target_blocks, each as long as its partition: the size whose waves x tokens per
// block is least (the fewest partitions on a tie, as each costs a merge).
int choose_decode_partition(int num_seqs, int num_kv_heads, int max_context_len, int target_blocks) {
  const int context = std::max(1, max_context_len);
  const long long per_partition = static_cast<long long>(num_seqs) * num_kv_heads;
  const long long most = max_partitions(num_seqs, num_kv_heads, context, target_blocks);
  int best_size = static_cast<int>(ceil_div(context, 32) * 32);
  long long best_cost = -1;
  for (long long wanted = 1; wanted <= most; ++wanted) {
    const int size = static_cast<int>(ceil_div(ceil_div(context, wanted), 32) * 32);
    const long long waves = ceil_div(per_partition * ceil_div(context, size), std::max(1, target_blocks));
    if (best_cost < 0 || waves * size < best_cost) best_cost = waves * size, best_size = size;
  }
  return best_size;
}

size_t decode_attention_workspace_bytes(const DecodeAttentionParams& params) {
  if (params.partition_size <= 0 || params.max_context_len <= 0) return 0;
  const Partitioning parts = partitioning(params);
  if (parts.partitions <= 1) return 0;
  const size_t rows = static_cast<size_t>(params.num_seqs) * params.num_heads * parts.partitions;
  return sizeof(float) * rows * (params.kv.head_dim + 2);
}

size_t decode_attention_workspace_limit(int num_heads, int num_kv_heads, int head_dim, int max_context_len, int target_blocks) {
  size_t largest = 0;
  // The chooser's partitions never exceed max_partitions, which reaches 1 by 4 x target_blocks sequences.
  for (long long seqs = 1; seqs <= 4LL * std::max(1, target_blocks); ++seqs) {
    const long long partitions = max_partitions(static_cast<int>(seqs), num_kv_heads, std::max(1, max_context_len), target_blocks);
    if (partitions <= 1) break;
    largest = std::max(largest, sizeof(float) * static_cast<size_t>(seqs) * num_heads * static_cast<size_t>(partitions) * (head_dim + 2));
  }
  return largest;
}

cudaError_t launch_decode_attention(const DecodeAttentionParams& params, cudaStream_t stream) {
  if (!valid(params)) return cudaErrorInvalidValue;
  const Partitioning parts = partitioning(params);
  return dispatch_head_dim(params.kv.head_dim, [&]<int kHeadDim>() {
    return dispatch_kv_types(params.kv, [&]<bool kF16Only>() {
      const dim3 grid(params.kv.num_kv_heads * parts.head_chunks, params.num_seqs, parts.partitions);
      const SharedLayout layout = shared_layout<kHeadDim>(params.kv, parts.heads, params.partition_size);
      auto kernel = decode_attention_kernel<kHeadDim, kF16Only>;
      if (cudaError_t error = allow_shared(kernel, layout.total()); error != cudaSuccess) return error;
      PAGEDLM_LAUNCH(kernel, grid, kThreads, layout.total(), stream)(params, parts, layout);
      cudaError_t error = cudaGetLastError();
      if (error != cudaSuccess || parts.partitions == 1) return error;
      auto merge = merge_partitions_kernel<kHeadDim>;
      const size_t merge_bytes = merge_shared_bytes(kHeadDim, parts.partitions);
      if (error = allow_shared(merge, merge_bytes); error != cudaSuccess) return error;
      PAGEDLM_LAUNCH(merge, dim3(params.num_heads, params.num_seqs), kMergeThreads, merge_bytes, stream)(params, parts);
      return cudaGetLastError();
    });
  });
}

}  // namespace pagedlm::cuda
