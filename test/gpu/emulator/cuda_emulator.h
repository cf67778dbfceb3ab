// A CPU stand-in for the parts of the CUDA runtime and device language that pagedlm's kernels use, so that
// the kernels' indexing, reductions and barriers run under GoogleTest on machines without a GPU (CI).
//
// Every CUDA thread of a block is a fiber (ucontext) on the calling OS thread; blocks run one after another.
// __syncthreads() and the warp shuffles are barriers: a fiber that reaches one yields until every live
// thread of its block (or warp) has arrived. Threads waiting at different barriers are reported as a
// deadlock instead of hanging. What this cannot show: data races between threads (fibers never
// interleave between barriers), memory coalescing, and timing; those need the GPU (test/gpu/run.sh).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>

#define PAGEDLM_CUDA_EMULATION 1

// ---- language ------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __constant__ inline
// Shared memory is static storage: all fibers of the running block see the same variable, and blocks run
// one at a time.
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};

inline uint3 threadIdx{}, blockIdx{};
inline dim3 blockDim, gridDim;

// ---- runtime API ---------------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
using cudaStream_t = struct EmulatedStream*;
using cudaGraph_t = struct EmulatedGraph*;
using cudaGraphExec_t = struct EmulatedGraph*;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
constexpr unsigned cudaStreamNonBlocking = 1;
struct cudaDeviceProp {
  char name[256];
  int multiProcessorCount;
  size_t totalGlobalMem;
};

cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
// `height` rows of `width` bytes, each `dpitch` / `spitch` bytes after the one before.
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
// Graphs: while a stream captures, launches, async copies and emulated cuBLAS calls are recorded instead of
// run; a launch of the instantiated graph runs them in order.
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t error);
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel, cudaFuncAttribute, int) {
  return cudaSuccess;
}

// ---- device functions ----------------------------------------------------------------------------------
namespace pagedlm::emu {

void sync_block();
void sync_warp();
int lane_id();
// Publishes this lane's 8-byte value to its warp and returns the one published by `source_lane`.
uint64_t exchange(uint64_t value, int source_lane);
unsigned ballot(bool predicate);

template <typename T>
T shuffle_from(T value, int source_lane) {
  static_assert(sizeof(T) <= 8);
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = exchange(bits, source_lane);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// The block's dynamic shared memory (the launch's third argument), filled with 0xFF (NaN floats) at start.
void* dynamic_shared();

using BlockBody = void (*)(void* closure);
cudaError_t run_grid(dim3 grid, dim3 block, size_t shared_bytes, BlockBody body, void* closure);
// Runs `work` now, or records it when a stream is capturing.
void run_or_record(std::function<void()> work);
// Graph launches so far, for tests that check the replayed path ran.
uint64_t graph_launches();

// What PAGEDLM_LAUNCH(kernel, grid, block, shared, stream)(args...) becomes: runs the grid to completion.
template <typename... Params>
class Launch {
 public:
  Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes)
      : kernel_(kernel), grid_(grid), block_(block), shared_bytes_(shared_bytes) {}
  template <typename... Args>
  void operator()(Args&&... args) {
    auto bound = [kernel = kernel_, params = std::make_tuple(static_cast<Params>(args)...)]() { std::apply(kernel, params); };
    using Bound = decltype(bound);
    run_or_record([bound, grid = grid_, block = block_, shared = shared_bytes_]() mutable {
      run_grid(grid, block, shared, [](void* closure) { (*static_cast<Bound*>(closure))(); }, &bound);
    });
  }

 private:
  void (*kernel_)(Params...);
  dim3 grid_, block_;
  size_t shared_bytes_;
};

}  // namespace pagedlm::emu

#define PAGEDLM_LAUNCH(kernel, grid, block, shared_bytes, stream) ::pagedlm::emu::Launch(kernel, dim3(grid), dim3(block), shared_bytes)
#define PAGEDLM_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::pagedlm::emu::dynamic_shared())

inline void __syncthreads() { ::pagedlm::emu::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::pagedlm::emu::sync_warp(); }

template <typename T>
T __shfl_sync(unsigned, T value, int source, int width = 32) {
  const int lane = ::pagedlm::emu::lane_id();
  return ::pagedlm::emu::shuffle_from(value, lane / width * width + (source % width));
}
template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask, int width = 32) {
  const int lane = ::pagedlm::emu::lane_id();
  const int source = lane ^ lane_mask;
  return ::pagedlm::emu::shuffle_from(value, source / width == lane / width ? source : lane);
}
template <typename T>
T __shfl_down_sync(unsigned, T value, unsigned delta, int width = 32) {
  const int lane = ::pagedlm::emu::lane_id();
  const int source = lane + static_cast<int>(delta);
  return ::pagedlm::emu::shuffle_from(value, source / width == lane / width ? source : lane);
}
inline unsigned __ballot_sync(unsigned, int predicate) { return ::pagedlm::emu::ballot(predicate != 0); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }

// No two fibers run at once, so plain read-modify-writes are atomic.
template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <typename T>
T atomicMax(T* address, T value) {
  const T old = *address;
  if (value > old) *address = value;
  return old;
}

inline float __uint_as_float(unsigned bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}
inline int __float2int_rn(float f) { return static_cast<int>(std::nearbyint(f)); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline void sincosf(float x, float* s, float* c) {
  *s = std::sin(x);
  *c = std::cos(x);
}
using std::max;
using std::min;

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};

#include "async_copy_emulator.h"
