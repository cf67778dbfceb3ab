// The emulator's models of real-hardware behaviour (emulator/cuda_emulator.h), each shown catching the bug it
// exists for: a tiny kernel with that bug fails under the emulator, its fixed twin passes. Emulated build only.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "cuda_emulator.h"

namespace pagedlm {
namespace {

constexpr int kThreads = 64;

// ---- dynamic shared memory opt-in ----
__global__ void fill_shared_kernel(int* out) {
  PAGEDLM_DYNAMIC_SHARED(int, shared);
  shared[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = shared[(threadIdx.x + 1) % blockDim.x];
}

TEST(EmulatedSharedMemory, LaunchAbove48KbFailsWithoutTheOptIn) {
  int* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, kThreads * sizeof(int)), cudaSuccess);
  cudaGetLastError();
  PAGEDLM_LAUNCH(fill_shared_kernel, 1, kThreads, 48 * 1024, nullptr)(out);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  PAGEDLM_LAUNCH(fill_shared_kernel, 1, kThreads, 64 * 1024, nullptr)(out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  // The opt-in raises this kernel's limit to what it asked for, no further, and never past 227 KB.
  ASSERT_EQ(cudaFuncSetAttribute(fill_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024), cudaSuccess);
  PAGEDLM_LAUNCH(fill_shared_kernel, 1, kThreads, 64 * 1024, nullptr)(out);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  PAGEDLM_LAUNCH(fill_shared_kernel, 1, kThreads, 64 * 1024 + 4, nullptr)(out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFuncSetAttribute(fill_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024), cudaErrorInvalidValue);
  cudaGetLastError();
  std::vector<int> host(kThreads);
  ASSERT_EQ(cudaMemcpy(host.data(), out, host.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(host[t], (t + 1) % kThreads);
  cudaFree(out);
}

// ---- warp masks ----
// Lanes 16..31 leave before the full-warp reduction: on a device the shuffle reads lanes that have exited.
__global__ void exit_then_full_shuffle_kernel(float* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
// The same reduction with the mask of the lanes that stay.
__global__ void exit_then_masked_shuffle_kernel(float* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, static_cast<float>(threadIdx.x), 1);
}
// Every lane syncs with a mask that names only half of them.
__global__ void mask_missing_caller_kernel(float*) { __syncwarp(0x0000ffffu); }
// A 16-thread block whose warp operation names 32 lanes.
__global__ void full_mask_in_half_warp_kernel(float* out) { out[threadIdx.x] = static_cast<float>(__ballot_sync(0xffffffffu, 1)); }

template <typename Kernel>
void run_on_one_block(Kernel kernel, int threads) {
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 64 * sizeof(float)), cudaSuccess);
  PAGEDLM_LAUNCH(kernel, 1, threads, 0, nullptr)(out);
  cudaDeviceSynchronize();
  cudaFree(out);
}

TEST(EmulatedWarpMasksDeathTest, ReportsAMaskNamingAnExitedLane) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_on_one_block(exit_then_full_shuffle_kernel, 32), "cuda emulator: .*exited");
}

TEST(EmulatedWarpMasksDeathTest, ReportsALaneOutsideItsOwnMask) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_on_one_block(mask_missing_caller_kernel, 32), "cuda emulator: lane .* does not name it");
}

TEST(EmulatedWarpMasksDeathTest, ReportsAMaskNamingLanesThePartialWarpLacks) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_on_one_block(full_mask_in_half_warp_kernel, 16), "cuda emulator: .*that the block does not have");
}

TEST(EmulatedWarpMasks, AMaskOfTheLanesThatStayWorks) {
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 32 * sizeof(float)), cudaSuccess);
  PAGEDLM_LAUNCH(exit_then_masked_shuffle_kernel, 1, 32, 0, nullptr)(out);
  std::vector<float> host(32);
  ASSERT_EQ(cudaMemcpy(host.data(), out, host.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int lane = 0; lane < 16; ++lane) EXPECT_EQ(host[lane], static_cast<float>(lane ^ 1));
  cudaFree(out);
}

// ---- interleaving ----
// Thread 0 publishes a value the others read, with or without the barrier between.
template <bool kBarrier>
__global__ void broadcast_kernel(int* out) {
  __shared__ int value;
  if (threadIdx.x == 0) value = 42;
  if (kBarrier) __syncthreads();
  out[threadIdx.x] = value;
}
// Lane 0 publishes to its warp, with or without __syncwarp.
template <bool kBarrier>
__global__ void warp_broadcast_kernel(int* out) {
  __shared__ int value[kThreads / 32];
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) value[warp] = 42 + warp;
  if (kBarrier) __syncwarp();
  out[threadIdx.x] = value[warp];
}
// Each thread takes a ticket: the order in which the threads ran.
__global__ void ticket_kernel(int* counter, int* out) { out[threadIdx.x] = atomicAdd(counter, 1); }

template <typename Kernel>
std::vector<int> run_with_seed(Kernel kernel, uint64_t seed) {
  pagedlm::emu::set_interleaving_seed(seed);
  int* out = nullptr;
  EXPECT_EQ(cudaMalloc(&out, kThreads * sizeof(int)), cudaSuccess);
  PAGEDLM_LAUNCH(kernel, 1, kThreads, 0, nullptr)(out);
  std::vector<int> host(kThreads);
  EXPECT_EQ(cudaMemcpy(host.data(), out, host.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(out);
  return host;
}

TEST(EmulatedInterleaving, AMissingSyncthreadsGivesWrongResults) {
  const uint64_t seed = pagedlm::emu::interleaving_seed();
  int wrong_runs = 0;
  for (uint64_t s = 1; s <= 4; ++s) {
    const std::vector<int> racy = run_with_seed(broadcast_kernel<false>, s);
    wrong_runs += std::count(racy.begin(), racy.end(), 42) != kThreads;
    const std::vector<int> fixed = run_with_seed(broadcast_kernel<true>, s);
    EXPECT_EQ(std::count(fixed.begin(), fixed.end(), 42), kThreads) << "seed " << s;
  }
  EXPECT_GT(wrong_runs, 0);
  pagedlm::emu::set_interleaving_seed(seed);
}

TEST(EmulatedInterleaving, AMissingSyncwarpGivesWrongResults) {
  const uint64_t seed = pagedlm::emu::interleaving_seed();
  int wrong_runs = 0;
  for (uint64_t s = 1; s <= 4; ++s) {
    const std::vector<int> racy = run_with_seed(warp_broadcast_kernel<false>, s);
    const std::vector<int> fixed = run_with_seed(warp_broadcast_kernel<true>, s);
    bool racy_right = true;
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_EQ(fixed[t], 42 + t / 32) << "seed " << s;
      racy_right = racy_right && racy[t] == 42 + t / 32;
    }
    wrong_runs += !racy_right;
  }
  EXPECT_GT(wrong_runs, 0);
  pagedlm::emu::set_interleaving_seed(seed);
}

TEST(EmulatedInterleaving, TheOrderOfThreadsVariesWithTheSeedAndRepeatsWithIt) {
  const uint64_t seed = pagedlm::emu::interleaving_seed();
  const auto order = [](uint64_t s) {
    pagedlm::emu::set_interleaving_seed(s);
    int* buffers = nullptr;
    EXPECT_EQ(cudaMalloc(&buffers, (kThreads + 1) * sizeof(int)), cudaSuccess);
    EXPECT_EQ(cudaMemset(buffers, 0, (kThreads + 1) * sizeof(int)), cudaSuccess);
    PAGEDLM_LAUNCH(ticket_kernel, 1, kThreads, 0, nullptr)(buffers, buffers + 1);
    std::vector<int> host(kThreads);
    EXPECT_EQ(cudaMemcpy(host.data(), buffers + 1, host.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(buffers);
    return host;
  };
  std::vector<int> in_order(kThreads);
  std::iota(in_order.begin(), in_order.end(), 0);
  const std::vector<int> first = order(7);
  EXPECT_NE(first, in_order);
  EXPECT_NE(first, order(8));
  EXPECT_EQ(first, order(7));
  pagedlm::emu::set_interleaving_seed(seed);
}

// ---- streams ----
__global__ void copy_kernel(const int* in, int* out) { out[threadIdx.x] = in[threadIdx.x] + 1; }

struct StreamFixture : ::testing::Test {
  void SetUp() override {
    ASSERT_EQ(cudaMalloc(&in, kThreads * sizeof(int)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&out, kThreads * sizeof(int)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(in, zeros.data(), kThreads * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(out, zeros.data(), kThreads * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  void TearDown() override {
    cudaFree(in);
    cudaFree(out);
  }
  int read_out() {
    std::vector<int> host(kThreads);
    EXPECT_EQ(cudaMemcpy(host.data(), out, host.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
    return host[0];
  }
  std::vector<int> zeros = std::vector<int>(kThreads, 0), sevens = std::vector<int>(kThreads, 7);
  int *in = nullptr, *out = nullptr;
};

TEST_F(StreamFixture, ASynchronousCopyDoesNotWaitForANonBlockingStream) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  PAGEDLM_LAUNCH(copy_kernel, 1, kThreads, 0, stream)(in, out);
  EXPECT_EQ(read_out(), 0) << "the kernel has not run: nothing ordered the copy after it";
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(read_out(), 1);
  // A pageable upload lands after the legacy stream's earlier work, not before the non-blocking stream's next.
  ASSERT_EQ(cudaMemcpy(in, sevens.data(), kThreads * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
  PAGEDLM_LAUNCH(copy_kernel, 1, kThreads, 0, stream)(in, out);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(read_out(), 1) << "the kernel read the input before the staged copy landed";
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST_F(StreamFixture, WorkOnOneStreamRunsInOrderWhenTheHostWaits) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(in, sevens.data(), kThreads * sizeof(int), cudaMemcpyHostToDevice, stream), cudaSuccess);
  PAGEDLM_LAUNCH(copy_kernel, 1, kThreads, 0, stream)(in, out);
  ASSERT_EQ(cudaMemsetAsync(in, 0, kThreads * sizeof(int), stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(read_out(), 8);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST_F(StreamFixture, TheLegacyStreamAndBlockingStreamsAreOrdered) {
  cudaStream_t blocking = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&blocking, 0), cudaSuccess);
  PAGEDLM_LAUNCH(copy_kernel, 1, kThreads, 0, blocking)(in, out);
  EXPECT_EQ(read_out(), 1);
  ASSERT_EQ(cudaMemcpy(in, sevens.data(), kThreads * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
  PAGEDLM_LAUNCH(copy_kernel, 1, kThreads, 0, nullptr)(in, out);
  EXPECT_EQ(read_out(), 8);
  ASSERT_EQ(cudaStreamDestroy(blocking), cudaSuccess);
}

TEST_F(StreamFixture, AGraphCapturedOnAStreamReplaysOnIt) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  PAGEDLM_LAUNCH(copy_kernel, 1, kThreads, 0, stream)(in, out);
  PAGEDLM_LAUNCH(copy_kernel, 1, kThreads, 0, stream)(out, in);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(read_out(), 0) << "capture records; it does not run";
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  EXPECT_EQ(read_out(), 0) << "nothing waited for the stream yet";
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(read_out(), 3);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// ---- allocation failures ----
TEST(EmulatedAllocation, FailsAfterTheGivenNumberOfSuccesses) {
  void* a = nullptr;
  void* b = nullptr;
  pagedlm::emu::fail_allocations_after(1);
  EXPECT_EQ(cudaMalloc(&a, 16), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&b, 16), cudaErrorMemoryAllocation);
  EXPECT_EQ(b, nullptr);
  pagedlm::emu::fail_allocations_after(-1);
  EXPECT_EQ(cudaMalloc(&b, 16), cudaSuccess);
  cudaGetLastError();
  cudaFree(a);
  cudaFree(b);
}

}  // namespace
}  // namespace pagedlm
