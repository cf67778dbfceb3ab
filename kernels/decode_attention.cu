// Paged-attention decode: one query token per sequence against the K/V of its context, read through the
// block table. A thread block takes (KV head, up to 8 of its query heads, sequence, partition of the
// context): each K/V row is loaded once for all the query heads that share it (GQA). Partitions of a long
// context run in parallel and a second kernel merges them with a log-sum-exp reduction.
// K and V are read each in its own type, chosen at run time (with_side_type in device_common.cuh says why).
// CPU twin: softmax(q . K^T * scale) . V over kv_load-decoded rows (CpuBackend::attend).
#include <cmath>

#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kHeadsPerBlock = 8;

// A token's K row is split over 4 lanes (2 for head size 8), each loading runs of 4 elements.
template <int kHeadDim>
constexpr int lanes_per_token() {
  return kHeadDim >= 16 ? 4 : kHeadDim / 4;
}

struct Partitioning {
  int head_chunks;  // thread blocks per KV head: ceil(group / kHeadsPerBlock)
  int partitions;   // ceil(max_context_len / partition_size)
};

Partitioning partitioning(const DecodeAttentionParams& p) {
  const int group = p.num_heads / p.kv.num_kv_heads;
  return {(group + kHeadsPerBlock - 1) / kHeadsPerBlock, (p.max_context_len + p.partition_size - 1) / p.partition_size};
}

// Shared memory of the main kernel: the block's queries, the partition's scores, and the slices of the V sums.
template <int kHeadDim>
constexpr int value_slices() {
  return kThreads / (kHeadDim / 4);
}
template <int kHeadDim>
size_t shared_bytes(int partition_size) {
  return sizeof(float) * (kHeadsPerBlock * kHeadDim + kHeadsPerBlock * static_cast<size_t>(partition_size) +
                          value_slices<kHeadDim>() * kHeadsPerBlock * kHeadDim + 2 * kHeadsPerBlock);
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
__device__ __forceinline__ size_t pool_row(const PagedKv& kv, const int32_t* table, int kv_head, int position) {
  const int block = table[position / kv.block_size];
  return (static_cast<size_t>(block) * kv.num_kv_heads + kv_head) * kv.block_size + position % kv.block_size;
}

// Scores of tokens [begin, end) for each query head into logits[head][token - begin]. Four lanes share a
// token (each loads kHeadDim / 16 runs of 4 elements), so a warp covers 8 tokens per step (16 for head size 8).
template <int kHeadDim, bool kF16Only>
__device__ void score_tokens(const DecodeAttentionParams& p, const int32_t* table, int kv_head, int heads, int begin, int end,
                             const float* q_s, float* logits) {
  constexpr int kLanesPerToken = lanes_per_token<kHeadDim>();
  constexpr int kTokensPerWarp = kWarpSize / kLanesPerToken;
  constexpr int kTokensPerStep = kTokensPerWarp * kWarps;
  constexpr int kRuns = kHeadDim / (4 * kLanesPerToken);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int sub = lane % kLanesPerToken;
  with_side_type<kF16Only, false, kHeadDim>(p.kv, [&](auto side) {
    for (int step = begin + warp * kTokensPerWarp; step < end; step += kTokensPerStep) {  // warp-uniform bounds
      const int t = step + lane / kLanesPerToken;
      const bool valid = t < end;
      float k[kRuns][4];
      if (valid) {
        const size_t row = pool_row(p.kv, table, kv_head, t);
        side.template load<kRuns>(p.kv, row, sub * 4, kLanesPerToken * 4, k);
      } else {
#pragma unroll
        for (int j = 0; j < kRuns; ++j) k[j][0] = k[j][1] = k[j][2] = k[j][3] = 0.0f;
      }
#pragma unroll
      for (int g = 0; g < kHeadsPerBlock; ++g) {
        if (g >= heads) break;  // block-uniform
        const float* q = q_s + g * kHeadDim;
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < kRuns; ++j) {
          const int d = (sub + kLanesPerToken * j) * 4;
          dot += k[j][0] * q[d] + k[j][1] * q[d + 1] + k[j][2] * q[d + 2] + k[j][3] * q[d + 3];
        }
        for (int offset = 1; offset < kLanesPerToken; offset <<= 1) dot += __shfl_xor_sync(kFullMask, dot, offset);
        if (valid && sub == 0) logits[g * p.partition_size + (t - begin)] = dot * p.scale;
      }
    }
  });
}

// Turns each head's scores into exp(score - max) in place, and records the max and the sum.
__device__ void softmax_rows(float* logits, int stride, int heads, int n, float* head_max, float* head_sum) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  for (int g = warp; g < heads; g += kWarps) {
    float* row = logits + g * stride;
    float m = -INFINITY;
    for (int i = lane; i < n; i += kWarpSize) m = fmaxf(m, row[i]);
    m = warp_max(m);
    float s = 0.0f;
    for (int i = lane; i < n; i += kWarpSize) {
      const float e = expf(row[i] - m);
      row[i] = e;
      s += e;
    }
    s = warp_sum(s);
    if (lane == 0) {
      head_max[g] = m;
      head_sum[g] = s;
    }
  }
}

// Weighted sums of the V rows: thread (slice, run) adds every kSlices-th token's 4 elements of `run` for
// each head, then the slices are added up through shared memory into reduced[head][d].
template <int kHeadDim, bool kF16Only>
__device__ void accumulate_values(const DecodeAttentionParams& p, const int32_t* table, int kv_head, int heads, int begin, int end,
                                  const float* weights, float* slices) {
  constexpr int kRunsPerRow = kHeadDim / 4;
  constexpr int kSlices = value_slices<kHeadDim>();
  const int run = threadIdx.x % kRunsPerRow, slice = threadIdx.x / kRunsPerRow;
  if (slice >= kSlices) return;
  float acc[kHeadsPerBlock][4] = {};
  with_side_type<kF16Only, true, kHeadDim>(p.kv, [&](auto side) {
    for (int t = begin + slice; t < end; t += kSlices) {
      const size_t row = pool_row(p.kv, table, kv_head, t);
      float v[1][4];
      side.template load<1>(p.kv, row, run * 4, 0, v);
#pragma unroll
      for (int g = 0; g < kHeadsPerBlock; ++g) {
        if (g >= heads) break;
        const float w = weights[g * p.partition_size + (t - begin)];
        acc[g][0] += w * v[0][0], acc[g][1] += w * v[0][1], acc[g][2] += w * v[0][2], acc[g][3] += w * v[0][3];
      }
    }
  });
#pragma unroll
  for (int g = 0; g < kHeadsPerBlock; ++g) {
    if (g >= heads) break;
    float* out = slices + (slice * kHeadsPerBlock + g) * kHeadDim + run * 4;
    out[0] = acc[g][0], out[1] = acc[g][1], out[2] = acc[g][2], out[3] = acc[g][3];
  }
}

// ---- kernels ----
template <int kHeadDim, bool kF16Only>
__global__ void __launch_bounds__(kThreads) decode_attention_kernel(DecodeAttentionParams p, Partitioning parts) {
  PAGEDLM_DYNAMIC_SHARED(float, shared);
  const int seq = blockIdx.y, partition = blockIdx.z;
  const int kv_head = blockIdx.x / parts.head_chunks, chunk = blockIdx.x % parts.head_chunks;
  const int group = p.num_heads / p.kv.num_kv_heads;
  const int first_head = kv_head * group + chunk * kHeadsPerBlock;
  const int heads = min(kHeadsPerBlock, group - chunk * kHeadsPerBlock);
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
  float* q_s = shared;                                              // [kHeadsPerBlock][kHeadDim]
  float* logits = q_s + kHeadsPerBlock * kHeadDim;                  // [kHeadsPerBlock][partition_size]
  float* slices = logits + kHeadsPerBlock * p.partition_size;       // [kSlices][kHeadsPerBlock][kHeadDim]
  float* head_max = slices + value_slices<kHeadDim>() * kHeadsPerBlock * kHeadDim;
  float* head_sum = head_max + kHeadsPerBlock;
  for (int i = threadIdx.x; i < heads * kHeadDim; i += kThreads) q_s[i] = p.q[out_row * kHeadDim + i];
  __syncthreads();

  const int32_t* table = p.block_tables + static_cast<size_t>(seq) * p.max_blocks_per_seq;
  score_tokens<kHeadDim, kF16Only>(p, table, kv_head, heads, begin, end, q_s, logits);
  __syncthreads();
  softmax_rows(logits, p.partition_size, heads, end - begin, head_max, head_sum);
  __syncthreads();
  accumulate_values<kHeadDim, kF16Only>(p, table, kv_head, heads, begin, end, logits, slices);
  __syncthreads();

  const Workspace ws = workspace_of(p, parts.partitions);
  for (int i = threadIdx.x; i < heads * kHeadDim; i += kThreads) {
    const int g = i / kHeadDim, d = i % kHeadDim;
    float sum = 0.0f;
    for (int s = 0; s < value_slices<kHeadDim>(); ++s) sum += slices[(s * kHeadsPerBlock + g) * kHeadDim + d];
    if (parts.partitions == 1) {
      p.out[out_row * kHeadDim + i] = sum / head_sum[g];
    } else {
      const size_t at = (out_row + g) * parts.partitions + partition;
      ws.out[at * kHeadDim + d] = sum;
      if (d == 0) {
        ws.max[at] = head_max[g];
        ws.sum[at] = head_sum[g];
      }
    }
  }
}

// One block per (query head, sequence): rescales each partition's sums to the global maximum and divides
// by the total weight.
template <int kHeadDim>
__global__ void __launch_bounds__(kThreads) merge_partitions_kernel(DecodeAttentionParams p, Partitioning parts) {
  PAGEDLM_DYNAMIC_SHARED(float, weights);  // [partitions]
  const int head = blockIdx.x, seq = blockIdx.y;
  const int context = p.context_lens[seq];
  const int used = (context + p.partition_size - 1) / p.partition_size;
  // Partitions below a window's first position wrote nothing (decode_attention_kernel).
  const int skipped = p.window > 0 ? max(0, context - p.window) / p.partition_size : 0;
  const Workspace ws = workspace_of(p, parts.partitions);
  const size_t first = (static_cast<size_t>(seq) * p.num_heads + head) * parts.partitions;
  float global_max = -INFINITY;
  for (int i = skipped; i < used; ++i) global_max = fmaxf(global_max, ws.max[first + i]);
  for (int i = skipped + threadIdx.x; i < used; i += kThreads) weights[i] = expf(ws.max[first + i] - global_max);
  __syncthreads();
  float total = 0.0f;
  for (int i = skipped; i < used; ++i) total += ws.sum[first + i] * weights[i];
  float* out = p.out + (static_cast<size_t>(seq) * p.num_heads + head) * kHeadDim;
  for (int d = threadIdx.x; d < kHeadDim; d += kThreads) {
    float acc = 0.0f;
    for (int i = skipped; i < used; ++i) acc += ws.out[(first + i) * kHeadDim + d] * weights[i];
    out[d] = used > skipped ? acc / total : 0.0f;
  }
}

bool valid(const DecodeAttentionParams& p) {
  const PagedKv& kv = p.kv;
  if (!attention_head_dim_supported(kv.head_dim) || p.num_seqs <= 0 || kv.num_kv_heads <= 0 || kv.block_size <= 0 ||
      p.num_heads % kv.num_kv_heads != 0 || p.num_heads < kv.num_kv_heads || p.max_context_len <= 0 ||
      p.max_blocks_per_seq <= 0 || p.partition_size < 32 || p.partition_size > kMaxDecodePartition || p.partition_size % 32 != 0) {
    return false;
  }
  if (kv_scales_missing(kv)) return false;
  const Partitioning parts = partitioning(p);
  return (parts.partitions == 1 || p.workspace != nullptr) && parts.partitions <= 65535 && p.num_seqs <= 65535;
}

}  // namespace

// ---- launchers ----
bool attention_head_dim_supported(int head_dim) {
  for (int supported : {8, 16, 32, 64, 80, 96, 128, 256}) {
    if (head_dim == supported) return true;
  }
  return false;
}

int choose_decode_partition(int num_seqs, int num_kv_heads, int max_context_len, int target_blocks) {
  int size = kMaxDecodePartition;
  // Halve while the batch leaves SMs idle; below 64 tokens a partition costs more to merge than it saves.
  while (size > 64 && static_cast<long long>(num_seqs) * num_kv_heads * ((max_context_len + size - 1) / size) < target_blocks) size /= 2;
  return size;
}

size_t decode_attention_workspace_bytes(const DecodeAttentionParams& params) {
  if (params.partition_size <= 0 || params.max_context_len <= 0) return 0;
  const Partitioning parts = partitioning(params);
  if (parts.partitions <= 1) return 0;
  const size_t rows = static_cast<size_t>(params.num_seqs) * params.num_heads * parts.partitions;
  return sizeof(float) * rows * (params.kv.head_dim + 2);
}

cudaError_t launch_decode_attention(const DecodeAttentionParams& params, cudaStream_t stream) {
  if (!valid(params)) return cudaErrorInvalidValue;
  const Partitioning parts = partitioning(params);
  return dispatch_head_dim(params.kv.head_dim, [&]<int kHeadDim>() {
    return dispatch_kv_types(params.kv, [&]<bool kF16Only>() {
      const dim3 grid(params.kv.num_kv_heads * parts.head_chunks, params.num_seqs, parts.partitions);
      auto kernel = decode_attention_kernel<kHeadDim, kF16Only>;
      PAGEDLM_LAUNCH(kernel, grid, kThreads, shared_bytes<kHeadDim>(params.partition_size), stream)(params, parts);
      cudaError_t error = cudaGetLastError();
      if (error != cudaSuccess || parts.partitions == 1) return error;
      auto merge = merge_partitions_kernel<kHeadDim>;
      PAGEDLM_LAUNCH(merge, dim3(params.num_heads, params.num_seqs), kThreads, sizeof(float) * parts.partitions, stream)(params, parts);
      return cudaGetLastError();
    });
  });
}

}  // namespace pagedlm::cuda
