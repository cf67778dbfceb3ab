// Paged attention, decode and prefill, against a double-precision reference that decodes the pool's rows
// with kv_load_row, across KV types, head sizes, block sizes, GQA groups and partly filled last blocks.
#include <cmath>

#include "paged_pool.h"
#ifdef PAGEDLM_CUDA_EMULATION
#include "device_common.cuh"
#endif

namespace pagedlm {
namespace {

using gpu_test::all_close;
using gpu_test::DeviceBuffer;
using gpu_test::PagedPool;
using gpu_test::random_floats;
using gpu_test::scattered_block_tables;

struct Shape {
  KvDtype dtype;
  int head_dim;
  int block_size;
  int num_heads;
  int kv_heads;
  bool values_in_keys = false;  // V read inside the K rows (latent attention): the pool's V array is never read
  KvDtype v_dtype = dtype;       // V's type when it differs from K's
};

// K/V type pairs with int4 on either side or both, and mixed pairs of the other types.
const KvTypes kMixedPairs[] = {{KvDtype::kF16, KvDtype::kInt4}, {KvDtype::kInt8, KvDtype::kInt4}, {KvDtype::kInt4, KvDtype::kInt4},
                               {KvDtype::kInt4, KvDtype::kF16}, {KvDtype::kInt4, KvDtype::kFp8E4M3}, {KvDtype::kFp8E4M3, KvDtype::kBF16},
                               {KvDtype::kF32, KvDtype::kInt8}};

std::string describe(const Shape& s) {
  return "K " + std::string(kv_dtype_name(s.dtype)) + " V " + kv_dtype_name(s.v_dtype) + " head_dim " + std::to_string(s.head_dim) + " block " + std::to_string(s.block_size) +
         " heads " + std::to_string(s.num_heads) + "/" + std::to_string(s.kv_heads) + (s.values_in_keys ? " V in K" : "");
}

// The pool's view for `shape`: with values_in_keys, V aliases K (its own rows, random, must not be read).
cuda::PagedKv view_of(const PagedPool& pool, const PagedPool::Device& device, const Shape& shape) {
  cuda::PagedKv kv = pool.view(device);
  if (shape.values_in_keys) kv.v = kv.k, kv.v_scales = kv.k_scales, kv.v_dtype = kv.k_dtype;
  return kv;
}

// One layer's pool holding `lengths[s]` random tokens for each sequence, with scattered block tables.
struct Context {
  PagedPool pool;
  std::vector<int32_t> tables;
  int max_blocks;
};

// Random rows; with small_integers, entries in {-3, ..., -1, 1, ..., 3}, exact in every 16-bit type.
std::vector<float> random_row(std::mt19937& rng, int n, bool small_integers) {
  if (!small_integers) return random_floats(rng, n);
  std::uniform_int_distribution<int> magnitude(1, 3), sign(0, 1);
  std::vector<float> row(n);
  for (float& x : row) x = static_cast<float>(sign(rng) ? magnitude(rng) : -magnitude(rng));
  return row;
}

Context make_context(std::mt19937& rng, const Shape& shape, const std::vector<int>& lengths, bool small_integers = false) {
  int max_len = 1, blocks_needed = 0;
  for (int len : lengths) {
    max_len = std::max(max_len, len);
    blocks_needed += (len + shape.block_size - 1) / shape.block_size;
  }
  const int max_blocks = (max_len + shape.block_size - 1) / shape.block_size;
  const int num_blocks = blocks_needed + 3;  // a few blocks nobody uses
  Context c{PagedPool(KvTypes{shape.dtype, shape.v_dtype}, shape.kv_heads, shape.head_dim, shape.block_size, num_blocks),
            scattered_block_tables(rng, lengths, shape.block_size, max_blocks, num_blocks), max_blocks};
  for (size_t s = 0; s < lengths.size(); ++s) {
    for (int p = 0; p < lengths[s]; ++p) {
      const int block = c.tables[s * max_blocks + p / shape.block_size];
      for (int h = 0; h < shape.kv_heads; ++h) {
        const size_t row = c.pool.row(block, h, p % shape.block_size);
        c.pool.store(false, row, random_row(rng, shape.head_dim, small_integers).data());
        c.pool.store(true, row, random_row(rng, shape.head_dim, small_integers).data());
      }
    }
  }
  return c;
}

// softmax(q . K[first..visible) * scale) . V for one query head of sequence `s`, where first is 0, or
// visible - window for a sliding window. With `bound`, also what rounding q, K, V and the softmax weights to a
// 16-bit type of unit roundoff `unit` (f32 products and sums otherwise) can move each output by:
//  - each score s_i by at most D_i = scale x sum_d |q_d k_d| x (2 unit + unit^2) plus the f32 sum's rounding, so
//    each weight by a factor within exp(+-2 max D_i), which moves the output by at most
//    (exp(2 max D) - 1) x sum_i p_i |v_i - o| (twice that, for the normalization taken with the moved weights);
//  - rounding V and the weights P each by at most unit x sum_i p_i |v_i|;
//  - plus the f32 arithmetic of the CUDA-core kernels (2e-5 relative).
void reference_attention(const Context& c, const Shape& shape, int s, int head, int visible, const float* q, float* out, int window = 0,
                         double unit = 0, float* bound = nullptr) {
  const int kv_head = head / (shape.num_heads / shape.kv_heads);
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const int first = window > 0 ? std::max(0, visible - window) : 0;
  std::vector<double> scores(visible);
  std::vector<std::vector<float>> values(visible);
  double max = -INFINITY, score_error = 0;
  for (int p = first; p < visible; ++p) {
    const int block = c.tables[s * c.max_blocks + p / shape.block_size];
    const std::vector<float> k = c.pool.load(false, c.pool.row(block, kv_head, p % shape.block_size));
    double dot = 0, magnitude = 0;
    for (int d = 0; d < shape.head_dim; ++d) dot += static_cast<double>(q[d]) * k[d], magnitude += std::fabs(static_cast<double>(q[d]) * k[d]);
    scores[p] = dot * scale;
    max = std::max(max, scores[p]);
    score_error = std::max(score_error, scale * magnitude * (2 * unit + unit * unit + shape.head_dim * 0x1p-24));
    values[p] = c.pool.load(!shape.values_in_keys, c.pool.row(block, kv_head, p % shape.block_size));
  }
  std::vector<double> acc(shape.head_dim, 0.0), weights(visible, 0.0);
  double sum = 0;
  for (int p = first; p < visible; ++p) {
    weights[p] = std::exp(scores[p] - max);
    sum += weights[p];
    for (int d = 0; d < shape.head_dim; ++d) acc[d] += weights[p] * values[p][d];
  }
  for (int d = 0; d < shape.head_dim; ++d) out[d] = static_cast<float>(acc[d] / sum);
  if (bound == nullptr) return;
  for (int d = 0; d < shape.head_dim; ++d) {
    const double o = acc[d] / sum;
    double spread = 0, magnitude = 0;
    for (int p = first; p < visible; ++p) spread += weights[p] / sum * std::fabs(values[p][d] - o), magnitude += weights[p] / sum * std::fabs(values[p][d]);
    bound[d] = static_cast<float>(2 * std::expm1(2 * score_error) * spread + 2 * unit * magnitude + 2e-5 * (1 + std::fabs(o)));
  }
}

// The unit roundoff of the 16-bit type the tensor-core prefill kernel computes in (bf16 when either side is
// stored in bf16, else f16), or 0 for the head sizes the CUDA-core kernel takes (not multiples of 16).
double prefill_unit_roundoff(const Shape& shape) {
  if (shape.head_dim % 16 != 0) return 0;
  return shape.dtype == KvDtype::kBF16 || shape.v_dtype == KvDtype::kBF16 ? 0x1p-8 : 0x1p-11;
}

// |got - want| <= bound elementwise; reports the first violation.
::testing::AssertionResult within_bounds(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& bound) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= bound[i])) {
      return ::testing::AssertionFailure() << "element " << i << ": " << got[i] << " vs " << want[i] << " (bound " << bound[i] << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// The tables with each sequence's blocks wholly below `lowest[s]` released (-1), as the engine leaves them
// for a model windowed on every layer: the kernels must not read them.
std::vector<int32_t> released_below(const Context& c, const Shape& shape, const std::vector<int>& lowest) {
  std::vector<int32_t> tables = c.tables;
  for (size_t s = 0; s < lowest.size(); ++s) {
    for (int b = 0; b < lowest[s] / shape.block_size; ++b) tables[s * c.max_blocks + b] = -1;
  }
  return tables;
}

void check_decode(std::mt19937& rng, const Shape& shape, const std::vector<int>& context_lens, int partition_size, int window = 0) {
  const int num_seqs = static_cast<int>(context_lens.size());
  const Context c = make_context(rng, shape, context_lens);
  const auto device = c.pool.upload();
  const std::vector<float> q = random_floats(rng, static_cast<size_t>(num_seqs) * shape.num_heads * shape.head_dim);
  DeviceBuffer<float> dq(q), dout(q.size());
  std::vector<int> lowest;
  for (int len : context_lens) lowest.push_back(window > 0 ? std::max(0, len - window) : 0);
  DeviceBuffer<int32_t> tables(released_below(c, shape, lowest)), lens(context_lens);
  cuda::DecodeAttentionParams params{dq.get(), dout.get(), view_of(c.pool, *device, shape), tables.get(), lens.get(), num_seqs, shape.num_heads,
                                     c.max_blocks, *std::max_element(context_lens.begin(), context_lens.end()), partition_size,
                                     1.0f / std::sqrt(static_cast<float>(shape.head_dim)), nullptr, window};
  DeviceBuffer<float> workspace(cuda::decode_attention_workspace_bytes(params) / sizeof(float));
  params.workspace = workspace.get();
  ASSERT_EQ(cuda::launch_decode_attention(params, nullptr), cudaSuccess) << describe(shape);
  std::vector<float> want(q.size());
  for (int s = 0; s < num_seqs; ++s) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const size_t at = (static_cast<size_t>(s) * shape.num_heads + h) * shape.head_dim;
      reference_attention(c, shape, s, h, context_lens[s], q.data() + at, want.data() + at, window);
    }
  }
  EXPECT_TRUE(all_close(dout.download(), want, 2e-5f)) << describe(shape) << ", partition " << partition_size << ", window " << window;
}

TEST(CudaDecodeAttention, EveryKvTypeAndHeadSize) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(8);
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3}) {
    check_decode(rng, {dtype, 128, 16, 8, 2}, {1, 16, 17, 70}, 512);
  }
  for (int head_dim : {8, 16, 32, 64, 80, 96, 256}) check_decode(rng, {KvDtype::kF16, head_dim, 32, 4, 4}, {3, 33, 64}, 512);
}

TEST(CudaDecodeAttention, GroupsWiderThanOneBlockOfHeads) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(9);
  check_decode(rng, {KvDtype::kF16, 64, 16, 12, 1}, {5, 40}, 512);  // 12 query heads per KV head: two head chunks
  check_decode(rng, {KvDtype::kBF16, 64, 32, 6, 3}, {31, 32, 33}, 512);
}

TEST(CudaDecodeAttention, PartitionsMergeToTheWholeContext) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(10);
  // Contexts shorter than, equal to and several times a partition, in one batch; one partition is empty
  // for the short sequences.
  check_decode(rng, {KvDtype::kF16, 64, 16, 4, 2}, {1, 64, 65, 200, 333}, 64);
  check_decode(rng, {KvDtype::kBF16, 8, 16, 8, 4}, {50, 129}, 32);
  check_decode(rng, {KvDtype::kInt8, 128, 32, 8, 8}, {96, 300}, 32);
}

// A sliding window: partitions wholly below it are skipped and left out of the merge; blocks below it may be
// released.
TEST(CudaDecodeAttention, SlidingWindowReadsOnlyTheLastPositions) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(13);
  check_decode(rng, {KvDtype::kF16, 64, 16, 4, 2}, {1, 10, 64, 65, 200, 333}, 64, 50);
  check_decode(rng, {KvDtype::kInt8, 128, 16, 8, 2}, {17, 300}, 32, 33);
  check_decode(rng, {KvDtype::kF32, 64, 16, 4, 4}, {40, 130}, 512, 16);  // one partition, entered past its start
}

// Latent attention's pool: one KV head whose rows hold the latent and the RoPE key part, V being the same rows
// (every query head reads the one row, MQA); nothing reads a V array.
TEST(CudaDecodeAttention, ValuesInsideKeyRows) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(15);
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kInt8}) {
    check_decode(rng, {dtype, 64, 16, 8, 1, true}, {1, 17, 70}, 512);
    check_decode(rng, {dtype, 64, 16, 12, 1, true}, {5, 200}, 64);
  }
}

TEST(CudaDecodeAttention, RejectsMissingWorkspaceAndBadShapes) {
  cuda::DecodeAttentionParams params{};
  params.kv = {nullptr, nullptr, nullptr, nullptr, KvDtype::kF16, KvDtype::kF16, 2, 128, 16};
  params.num_seqs = 1;
  params.num_heads = 4;
  params.max_blocks_per_seq = 8;
  params.max_context_len = 1000;
  params.partition_size = 256;
  EXPECT_GT(cuda::decode_attention_workspace_bytes(params), 0u);
  EXPECT_EQ(cuda::launch_decode_attention(params, nullptr), cudaErrorInvalidValue);  // 4 partitions, no workspace
  params.max_context_len = 100;
  params.kv.head_dim = 72;
  EXPECT_EQ(cuda::launch_decode_attention(params, nullptr), cudaErrorInvalidValue);
  params.kv.head_dim = 128;
  params.num_heads = 5;
  EXPECT_EQ(cuda::launch_decode_attention(params, nullptr), cudaErrorInvalidValue);
}

TEST(CudaDecodeAttention, PartitionChoiceFillsTheDevice) {
  EXPECT_EQ(cuda::choose_decode_partition(64, 8, 4096, 264), 4096);   // a batch that fills two waves alone: no split
  EXPECT_EQ(cuda::choose_decode_partition(64, 8, 8192, 396), 2752);   // 3 partitions: 4 waves of shorter blocks end before 2 of whole contexts
  EXPECT_EQ(cuda::choose_decode_partition(1, 8, 32768, 264), 1024);   // 32 partitions x 8 heads: about the 264 blocks
  EXPECT_EQ(cuda::choose_decode_partition(1, 8, 2048, 264), 256);     // one short sequence: split down to 256 tokens
  EXPECT_EQ(cuda::choose_decode_partition(1, 8, 100, 264), 128);      // a context under one partition: a multiple of 32
}

cuda::DecodeAttentionParams shape_only(int num_seqs, int num_heads, int kv_heads, int head_dim, int context, int partition) {
  cuda::DecodeAttentionParams p{};
  p.kv = {nullptr, nullptr, nullptr, nullptr, KvDtype::kF16, KvDtype::kF16, kv_heads, head_dim, 16};
  p.num_seqs = num_seqs;
  p.num_heads = num_heads;
  p.max_context_len = context;
  p.partition_size = partition;
  return p;
}

// The workspace sized from the pool's limits holds every batch the chooser splits, up to the pool's longest
// context, including 64 sequences at 16K tokens, which 512-token partitions would split into more than
// 32 MiB of partials.
TEST(CudaDecodeAttention, WorkspaceLimitCoversEveryBatchThePoolHolds) {
  const int heads = 32, kv_heads = 8, head_dim = 128, pool_context = 32768, target = 132 * 3;
  const size_t limit = cuda::decode_attention_workspace_limit(heads, kv_heads, head_dim, pool_context, target);
  EXPECT_GT(cuda::decode_attention_workspace_bytes(shape_only(64, heads, kv_heads, head_dim, 16384, 512)), size_t{32} << 20);
  EXPECT_LT(limit, size_t{32} << 20);
  for (int seqs = 1; seqs <= 2048; seqs += seqs < 16 ? 1 : 13) {
    for (int context : {1, 255, 256, 1000, 4096, 8192, 16384, pool_context}) {
      const int partition = cuda::choose_decode_partition(seqs, kv_heads, context, target);
      EXPECT_LE(cuda::decode_attention_workspace_bytes(shape_only(seqs, heads, kv_heads, head_dim, context, partition)), limit)
          << seqs << " sequences of " << context;
    }
  }
  EXPECT_EQ(cuda::decode_attention_workspace_limit(heads, kv_heads, head_dim, 200, target), 0u);  // short contexts never split
}

TEST(CudaDecodeAttention, BlocksPerSmFollowSharedMemory) {
  const cuda::PagedKv f16{nullptr, nullptr, nullptr, nullptr, KvDtype::kF16, KvDtype::kF16, 8, 128, 16};
  const cuda::PagedKv f32_wide{nullptr, nullptr, nullptr, nullptr, KvDtype::kF32, KvDtype::kF32, 1, 256, 16};
  EXPECT_GE(cuda::decode_attention_blocks_per_sm(f16, 32), 1);
  EXPECT_LE(cuda::decode_attention_blocks_per_sm(f32_wide, 8), cuda::decode_attention_blocks_per_sm(f16, 32));
}

// GQA groups of 1, 2, 4 and 8 query heads per KV head, and wider ones split over blocks of heads; contexts
// ending inside, at and just past a block, a warp's tile of rows and a partition.
TEST(CudaDecodeAttention, GqaGroupsAcrossPartitionsBlocksAndTiles) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(41);
  for (int group : {1, 2, 4, 8, 16}) {
    check_decode(rng, {KvDtype::kF16, 128, 16, 2 * group, 2}, {1, 7, 8, 9, 16, 17, 63, 64, 65, 130}, 64);
  }
  check_decode(rng, {KvDtype::kBF16, 64, 32, 8, 2}, {31, 32, 33, 97, 300}, 96);
  check_decode(rng, {KvDtype::kF32, 96, 16, 4, 1}, {5, 129, 250}, 128);
}

// One partition over a long context: each warp cycles its pipeline stages many times (a wait missing or
// too late reads a stage before its rows land).
TEST(CudaDecodeAttention, LongPartitionsCycleThePipelineStages) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(43);
  check_decode(rng, {KvDtype::kF16, 64, 16, 4, 2}, {700, 1000}, 1024);
  check_decode(rng, {KvDtype::kInt8, 8, 16, 2, 1}, {1000}, 1024);
  check_decode(rng, {KvDtype::kInt4, 128, 32, 8, 1, false, KvDtype::kF16}, {1000}, 1024);
  check_decode(rng, {KvDtype::kF32, 256, 16, 2, 2, false, KvDtype::kFp8E4M3}, {600}, 640);
}

// Each sequence: `cached` tokens already in the pool before this step, `fresh` new ones (also in the pool).
struct PrefillSequence {
  int cached;
  int fresh;
};

void check_prefill(std::mt19937& rng, const Shape& shape, const std::vector<PrefillSequence>& seqs, int window = 0) {
  std::vector<int> lengths;
  std::vector<int32_t> starts = {0}, start_positions;
  int max_fresh = 0;
  for (const PrefillSequence& s : seqs) {
    lengths.push_back(s.cached + s.fresh);
    starts.push_back(starts.back() + s.fresh);
    start_positions.push_back(s.cached);
    max_fresh = std::max(max_fresh, s.fresh);
  }
  const int n_tokens = starts.back();
  const Context c = make_context(rng, shape, lengths);
  const auto device = c.pool.upload();
  const std::vector<float> q = random_floats(rng, static_cast<size_t>(n_tokens) * shape.num_heads * shape.head_dim);
  DeviceBuffer<float> dq(q), dout(q.size());
  std::vector<int> lowest;  // the first new token's window start
  for (const PrefillSequence& s : seqs) lowest.push_back(window > 0 ? std::max(0, s.cached - window + 1) : 0);
  DeviceBuffer<int32_t> tables(released_below(c, shape, lowest)), dstarts(starts), dpositions(start_positions);
  const cuda::PrefillAttentionParams params{dq.get(), dout.get(), view_of(c.pool, *device, shape), tables.get(), dstarts.get(), dpositions.get(),
                                            static_cast<int>(seqs.size()), shape.num_heads, c.max_blocks, max_fresh,
                                            1.0f / std::sqrt(static_cast<float>(shape.head_dim)), window};
  ASSERT_EQ(cuda::launch_prefill_attention(params, nullptr), cudaSuccess) << describe(shape);
  std::vector<float> want(q.size()), bound(q.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int j = 0; j < seqs[s].fresh; ++j) {
      for (int h = 0; h < shape.num_heads; ++h) {
        const size_t at = (static_cast<size_t>(starts[s] + j) * shape.num_heads + h) * shape.head_dim;
        reference_attention(c, shape, static_cast<int>(s), h, seqs[s].cached + j + 1, q.data() + at, want.data() + at, window,
                            prefill_unit_roundoff(shape), bound.data() + at);
      }
    }
  }
  EXPECT_TRUE(within_bounds(dout.download(), want, bound)) << describe(shape) << ", window " << window;
}

TEST(CudaPrefillAttention, CausalOverACachedPrefix) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(11);
  const std::vector<PrefillSequence> seqs = {{0, 1}, {0, 37}, {16, 16}, {33, 20}, {100, 3}};
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3}) {
    check_prefill(rng, {dtype, 128, 16, 8, 2}, seqs);
  }
}

TEST(CudaPrefillAttention, EveryHeadSizeAndGroup) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(12);
  for (int head_dim : {8, 16, 32, 64, 80, 96, 256}) check_prefill(rng, {KvDtype::kF16, head_dim, 32, 4, 4}, {{0, 40}, {31, 9}});
  check_prefill(rng, {KvDtype::kF16, 64, 16, 12, 1}, {{5, 11}, {0, 70}});
  check_prefill(rng, {KvDtype::kBF16, 64, 32, 6, 3}, {{64, 33}});
}

TEST(CudaPrefillAttention, ValuesInsideKeyRows) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(16);
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kInt8}) check_prefill(rng, {dtype, 64, 16, 8, 1, true}, {{0, 37}, {33, 20}});
}

TEST(CudaPrefillAttention, SlidingWindowMasksAndSkipsTiles) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(14);
  const std::vector<PrefillSequence> seqs = {{0, 1}, {0, 70}, {16, 16}, {33, 20}, {100, 3}};
  check_prefill(rng, {KvDtype::kF16, 64, 16, 4, 2}, seqs, 20);
  check_prefill(rng, {KvDtype::kInt8, 128, 16, 8, 2}, seqs, 5);
  check_prefill(rng, {KvDtype::kF32, 64, 32, 6, 3}, {{64, 33}}, 40);
}

TEST(CudaPrefillAttention, RejectsUnsupportedHeadSizes) {
  cuda::PrefillAttentionParams params{};
  params.kv = {nullptr, nullptr, nullptr, nullptr, KvDtype::kF16, KvDtype::kF16, 2, 112, 16};
  params.num_seqs = 1;
  params.num_heads = 4;
  params.max_blocks_per_seq = 1;
  params.max_query_len = 1;
  EXPECT_EQ(cuda::launch_prefill_attention(params, nullptr), cudaErrorInvalidValue);
}


TEST(CudaDecodeAttention, KAndVOfDifferentTypesAndInt4) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(29);
  for (const KvTypes types : kMixedPairs) check_decode(rng, {types.k, 128, 16, 8, 2, false, types.v}, {1, 16, 17, 70}, 512);
  // int4's partial last V group (head sizes below 32 or not a multiple of it), several partitions, a window.
  for (int head_dim : {8, 16, 80, 256}) check_decode(rng, {KvDtype::kInt4, head_dim, 32, 4, 4}, {3, 33, 64}, 512);
  check_decode(rng, {KvDtype::kInt4, 64, 16, 4, 2, false, KvDtype::kF16}, {1, 64, 65, 200}, 64);
  check_decode(rng, {KvDtype::kF16, 64, 16, 4, 2, false, KvDtype::kInt4}, {10, 200}, 64, 50);
  check_decode(rng, {KvDtype::kInt4, 64, 16, 8, 1, true}, {1, 17, 70}, 512);  // V inside int4 K rows: K's channel scales
  check_decode(rng, {KvDtype::kInt4, 256, 16, 4, 1, true}, {40, 300}, 128);    // a latent-sized row, split
  for (int group : {1, 2, 4, 8}) check_decode(rng, {KvDtype::kInt8, 64, 16, 2 * group, 2, false, KvDtype::kInt4}, {9, 150}, 64);
}

TEST(CudaPrefillAttention, KAndVOfDifferentTypesAndInt4) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(31);
  const std::vector<PrefillSequence> seqs = {{0, 1}, {0, 37}, {16, 16}, {33, 20}};
  for (const KvTypes types : kMixedPairs) check_prefill(rng, {types.k, 128, 16, 8, 2, false, types.v}, seqs);
  for (int head_dim : {8, 16, 80, 256}) check_prefill(rng, {KvDtype::kInt4, head_dim, 32, 4, 4}, {{0, 40}, {31, 9}});
  check_prefill(rng, {KvDtype::kInt4, 64, 16, 4, 2, false, KvDtype::kInt8}, seqs, 20);
  check_prefill(rng, {KvDtype::kInt4, 64, 16, 8, 1, true}, {{0, 37}, {33, 20}});
}


// Exact outputs from the tensor-core kernel: K and V rows of small integers (exact in f16 and bf16), and each
// query a multiple of one visible key's row, scaled so that key's score leads every other visible key's by at
// least 40. Its softmax weight is 1 and every other weight underflows (below f16's smallest subnormal, and
// below half an ulp of the output in f32), so the output is that key's V row bit for bit: a wrong fragment index,
// block-table lookup or tile offset picks another row.
void check_prefill_exact(std::mt19937& rng, const Shape& shape, const std::vector<PrefillSequence>& seqs, int window = 0) {
  std::vector<int> lengths;
  std::vector<int32_t> starts = {0}, start_positions;
  int max_fresh = 0;
  for (const PrefillSequence& s : seqs) {
    lengths.push_back(s.cached + s.fresh);
    starts.push_back(starts.back() + s.fresh);
    start_positions.push_back(s.cached);
    max_fresh = std::max(max_fresh, s.fresh);
  }
  const Context c = make_context(rng, shape, lengths, true);
  const auto device = c.pool.upload();
  const int group = shape.num_heads / shape.kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const auto row_of = [&](size_t s, int position, int kv_head) {
    return c.pool.row(c.tables[s * c.max_blocks + position / shape.block_size], kv_head, position % shape.block_size);
  };
  std::vector<float> q(static_cast<size_t>(starts.back()) * shape.num_heads * shape.head_dim), want(q.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int j = 0; j < seqs[s].fresh; ++j) {
      const int position = seqs[s].cached + j;
      const int lowest = window > 0 ? std::max(0, position - window + 1) : 0;
      for (int h = 0; h < shape.num_heads; ++h) {
        const int target = std::uniform_int_distribution<int>(lowest, position)(rng);
        const std::vector<float> key = c.pool.load(false, row_of(s, target, h / group));
        double gap = INFINITY;
        const auto dot = [&](const std::vector<float>& other) {
          double sum = 0;
          for (int d = 0; d < shape.head_dim; ++d) sum += static_cast<double>(key[d]) * other[d];
          return sum;
        };
        for (int other = lowest; other <= position; ++other) {
          if (other != target) gap = std::min(gap, dot(key) - dot(c.pool.load(false, row_of(s, other, h / group))));
        }
        const float multiple = 4.0f;
        ASSERT_GE(gap * multiple * scale, 40.0) << "the random keys do not single out the target; pick another seed";
        const size_t at = (static_cast<size_t>(starts[s] + j) * shape.num_heads + h) * shape.head_dim;
        for (int d = 0; d < shape.head_dim; ++d) q[at + d] = multiple * key[d];
        const std::vector<float> value = c.pool.load(!shape.values_in_keys, row_of(s, target, h / group));
        std::copy(value.begin(), value.end(), want.begin() + static_cast<std::ptrdiff_t>(at));
      }
    }
  }
  DeviceBuffer<float> dq(q), dout(q.size());
  std::vector<int> lowest;
  for (const PrefillSequence& s : seqs) lowest.push_back(window > 0 ? std::max(0, s.cached - window + 1) : 0);
  DeviceBuffer<int32_t> tables(released_below(c, shape, lowest)), dstarts(starts), dpositions(start_positions);
  const cuda::PrefillAttentionParams params{dq.get(), dout.get(), view_of(c.pool, *device, shape), tables.get(), dstarts.get(), dpositions.get(),
                                            static_cast<int>(seqs.size()), shape.num_heads, c.max_blocks, max_fresh, scale, window};
  ASSERT_EQ(cuda::launch_prefill_attention(params, nullptr), cudaSuccess) << describe(shape);
  const std::vector<float> got = dout.download();
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i], want[i]) << "element " << i << " (row " << i / shape.head_dim << "), " << describe(shape) << ", window " << window;
  }
}

TEST(CudaPrefillAttention, TensorCoreOutputsExactWhereRoundingCannotReachThem) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(41);
  // Query counts that are not multiples of a block's tokens, prefixes over several blocks, GQA 1 / 4 / 8.
  const std::vector<PrefillSequence> seqs = {{0, 5}, {21, 19}, {40, 2}};
  for (KvDtype dtype : {KvDtype::kF16, KvDtype::kBF16, KvDtype::kF32}) check_prefill_exact(rng, {dtype, 64, 16, 4, 4}, seqs);
  check_prefill_exact(rng, {KvDtype::kF16, 64, 16, 8, 2}, seqs);
  check_prefill_exact(rng, {KvDtype::kF16, 128, 16, 8, 1}, seqs);
  check_prefill_exact(rng, {KvDtype::kF16, 80, 32, 2, 1, false, KvDtype::kBF16}, seqs, 9);
  check_prefill_exact(rng, {KvDtype::kF16, 64, 16, 4, 1, true}, {{3, 30}});
}

TEST(CudaPrefillAttention, TensorCoreRaggedBatchesGroupsAndEveryTypePair) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(43);
  const std::vector<PrefillSequence> seqs = {{0, 3}, {47, 18}, {16, 1}};
  for (int group : {1, 4, 8}) check_prefill(rng, {KvDtype::kF16, 64, 16, group * 2, 2}, seqs);
  const KvDtype types[] = {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3, KvDtype::kInt4};
  for (KvDtype k : types) {
    for (KvDtype v : types) check_prefill(rng, {k, 32, 16, 2, 1, false, v}, {{0, 9}, {20, 5}});
  }
  check_prefill(rng, {KvDtype::kFp8E4M3, 96, 16, 8, 2}, seqs, 7);
}

#ifdef PAGEDLM_CUDA_EMULATION
// The mma and ldmatrix helpers against a plain matrix product, on the emulator, whose fragments are the PTX
// ISA's: one warp builds A (16x16) and B (16x8) fragments from the documented layout, or loads them with
// ldmatrix from shared memory (B transposed from its k-major rows), and writes D from C/D's layout.
template <bool kBf16, bool kLdmatrix>
__global__ void mma_probe_kernel(const uint16_t* a, const uint16_t* b, const float* c, float* d) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t a_frag[4], b_frag[4];
  if constexpr (kLdmatrix) {
    PAGEDLM_DYNAMIC_SHARED(uint4, shared);
    uint16_t* a_s = reinterpret_cast<uint16_t*>(shared);  // [16][24]
    uint16_t* b_s = a_s + 16 * 24;                         // [16 k][8 n]
    for (int i = lane; i < 16 * 16; i += 32) a_s[i / 16 * 24 + i % 16] = a[i];
    for (int i = lane; i < 16 * 8; i += 32) b_s[i] = b[i];
    __syncwarp();
    cuda::ldmatrix_x4<false>(a_frag, a_s + lane % 16 * 24 + lane / 16 * 8);
    cuda::ldmatrix_x4<true>(b_frag, b_s + lane % 16 * 8);  // matrices 2 and 3 repeat 0 and 1
  } else {
    const auto pair = [](const uint16_t* m, int at, int next) { return m[at] | static_cast<uint32_t>(m[next]) << 16; };
    a_frag[0] = pair(a, g * 16 + 2 * t, g * 16 + 2 * t + 1);
    a_frag[1] = pair(a, (g + 8) * 16 + 2 * t, (g + 8) * 16 + 2 * t + 1);
    a_frag[2] = pair(a, g * 16 + 2 * t + 8, g * 16 + 2 * t + 9);
    a_frag[3] = pair(a, (g + 8) * 16 + 2 * t + 8, (g + 8) * 16 + 2 * t + 9);
    b_frag[0] = pair(b, 2 * t * 8 + g, (2 * t + 1) * 8 + g);
    b_frag[1] = pair(b, (2 * t + 8) * 8 + g, (2 * t + 9) * 8 + g);
  }
  float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
  cuda::mma_m16n8k16<kBf16>(acc, a_frag, b_frag);
  d[g * 8 + 2 * t] = acc[0], d[g * 8 + 2 * t + 1] = acc[1], d[(g + 8) * 8 + 2 * t] = acc[2], d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

template <bool kBf16, bool kLdmatrix>
void check_mma(std::mt19937& rng) {
  const auto to_bits = [](float x) { return kBf16 ? float_to_bf16(x) : float_to_fp16(x); };
  const auto from_bits = [](uint16_t h) { return kBf16 ? bf16_to_float(h) : fp16_to_float(h); };
  std::vector<uint16_t> a(16 * 16), b(16 * 8);
  for (uint16_t& x : a) x = to_bits(random_floats(rng, 1)[0]);
  for (uint16_t& x : b) x = to_bits(random_floats(rng, 1)[0]);
  const std::vector<float> c = random_floats(rng, 16 * 8);
  std::vector<float> want(16 * 8);
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 8; ++n) {
      double sum = c[m * 8 + n];
      for (int k = 0; k < 16; ++k) sum += static_cast<double>(from_bits(a[m * 16 + k])) * from_bits(b[k * 8 + n]);
      want[m * 8 + n] = static_cast<float>(sum);
    }
  }
  DeviceBuffer<uint16_t> da(a), db(b);
  DeviceBuffer<float> dc(c), dd(16 * 8);
  constexpr auto kernel = mma_probe_kernel<kBf16, kLdmatrix>;
  PAGEDLM_LAUNCH(kernel, 1, 32, (16 * 24 + 16 * 8) * sizeof(uint16_t), nullptr)(da.get(), db.get(), dc.get(), dd.get());
  // Products of 16-bit values are exact, so the f32-rounded sums agree to the last bit or two.
  EXPECT_TRUE(all_close(dd.download(), want, 1e-6f)) << (kBf16 ? "bf16" : "f16") << (kLdmatrix ? " via ldmatrix" : "");
}

TEST(CudaWarpMatrix, MmaAndLdmatrixFollowThePtxFragmentLayouts) {
  std::mt19937 rng(47);
  check_mma<false, false>(rng);
  check_mma<true, false>(rng);
  check_mma<false, true>(rng);
  check_mma<true, true>(rng);
}
#endif

}  // namespace
}  // namespace pagedlm
