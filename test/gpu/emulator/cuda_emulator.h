// A CPU stand-in for the parts of the CUDA runtime and device language that pagedlm's kernels use, so that
// the kernels' indexing, reductions and barriers run under GoogleTest on machines without a GPU (CI).
//
// Every CUDA thread of a block is a fiber (ucontext) on the calling OS thread; blocks run one after another.
// __syncthreads() and the warp operations are barriers: a fiber that reaches one yields until every thread
// it waits for has arrived. Threads waiting at different barriers are reported as a deadlock instead of
// hanging. What real hardware does that the emulator models, each in its own section below: the 48 KB
// dynamic shared memory limit without an opt-in, warp masks checked against the lanes that arrive, a
// seeded random order of the threads between barriers, and streams whose work runs late unless ordered.
// What it cannot show: a race between two threads inside one barrier-to-barrier segment that no order of
// whole segments exposes, memory coalescing, and timing; those need the GPU (test/gpu/run.sh).
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
// ---- streams ------------------------------------------------------------------------------------------------
// As on the device, work queued on a stream (launches, the Async copies and sets, cuBLAS calls, graph launches)
// runs later, in the stream's order: when the host waits for it (cudaStreamSynchronize, cudaDeviceSynchronize,
// cudaFree, cudaFreeHost, cudaStreamDestroy). The legacy default stream (nullptr) and the streams created
// without cudaStreamNonBlocking are ordered with each other; a non-blocking stream is ordered with nothing
// else. The synchronous calls follow the runtime's documented behaviour: cudaMemcpy waits for the legacy
// stream's work, then a copy to the host completes before it returns, a copy from pageable host memory is
// staged and lands on the device later (with the legacy stream's next work), a device-to-device copy and
// cudaMemset are only queued on the legacy stream. cudaMemcpyAsync stages pageable host bytes when called and
// reads pinned ones (cudaMallocHost) when it runs. So a kernel on a non-blocking stream that reads what a
// synchronous cudaMemcpy wrote, without a wait between them, reads the old bytes.
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

// ---- dynamic shared memory opt-in --------------------------------------------------------------------------
// As on the device: a launch asking for more than 48 KB of dynamic shared memory fails with
// cudaErrorInvalidValue unless cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n)
// raised that kernel's limit to at least the request first; no kernel may ask for more than 227 KB.
namespace pagedlm::emu {
constexpr size_t kDefaultDynamicSharedBytes = 48 * 1024;
constexpr size_t kMaxDynamicSharedBytes = 227 * 1024;
cudaError_t set_max_dynamic_shared(const void* kernel, int bytes);
// cudaSuccess, or the error the launch of `kernel` with this configuration returns on a device.
cudaError_t check_launch(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes);
}  // namespace pagedlm::emu

template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute attribute, int value) {
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return ::pagedlm::emu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
}

// ---- allocation failures ------------------------------------------------------------------------------------
namespace pagedlm::emu {
// Lets the next `successes` cudaMalloc calls succeed and fails every one after with cudaErrorMemoryAllocation,
// as a full device would; a negative count lets every allocation succeed again.
void fail_allocations_after(int successes);
}  // namespace pagedlm::emu

// ---- device functions ----------------------------------------------------------------------------------
namespace pagedlm::emu {

void sync_block();
// Waits for the live lanes of the warp (no mask to check).
void sync_warp();
int lane_id();
// Publishes this lane's 8-byte value to its warp and returns the one published by `source_lane`.
uint64_t exchange(uint64_t value, int source_lane);
unsigned ballot(bool predicate);

// Warp masks, checked as the device requires them: every lane named in `mask` must arrive at the same
// operation with the same mask, the calling lane must be in it, and a shuffle must read from a lane in it.
// A lane named that has exited (or does not exist in a partial warp) is reported and the process aborts, as
// for a deadlock.
void sync_warp(unsigned mask);
uint64_t exchange(uint64_t value, int source_lane, unsigned mask);
unsigned ballot(bool predicate, unsigned mask);

template <typename T>
T shuffle_from(T value, int source_lane, unsigned mask = 0xffffffffu) {
  static_assert(sizeof(T) <= 8);
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = exchange(bits, source_lane, mask);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// The block's dynamic shared memory (the launch's third argument), filled with 0xFF (NaN floats) at start.
void* dynamic_shared();

using BlockBody = void (*)(void* closure);
cudaError_t run_grid(dim3 grid, dim3 block, size_t shared_bytes, BlockBody body, void* closure);
// Queues `work` on the legacy default stream, or records it when a stream is capturing.
void run_or_record(std::function<void()> work);
// Queues `work` on `stream` (nullptr: the legacy default stream), or records it while the stream captures.
void enqueue(cudaStream_t stream, std::function<void()> work);
// Graph launches so far, for tests that check the replayed path ran.
uint64_t graph_launches();

// ---- graph kernel nodes (test hook) ----------------------------------------------------------------------
// A captured graph holds one kernel node per kernel launch and per GEMM (a real cuBLAS GEMM is one kernel,
// or a few for split-K), beside its copy nodes; each costs launch latency on the device. Launches and the
// emulated cuBLAS note themselves here, so tests can count the kernel nodes a step's capture recorded.
void note_kernel_node(cudaStream_t stream);
// Kernel nodes recorded by the most recent cudaStreamBeginCapture .. cudaStreamEndCapture.
uint64_t captured_kernel_nodes();

// ---- interleaving -------------------------------------------------------------------------------------------
// A device runs the warps of a block in no fixed order, and the lanes of a warp independently (Volta and
// later): between two barriers, the emulator runs the block's threads in an order drawn from a seeded
// generator, and the blocks of a grid too, so a missing __syncthreads / __syncwarp changes the results.
// The seed is printed once per process; PAGEDLM_EMULATOR_SEED=<n> repeats a run.
uint64_t interleaving_seed();
void set_interleaving_seed(uint64_t seed);

// What PAGEDLM_LAUNCH(kernel, grid, block, shared, stream)(args...) becomes: a launch checked now (its error
// for cudaGetLastError) and run when its stream's work runs.
template <typename... Params>
class Launch {
 public:
  Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream = nullptr)
      : kernel_(kernel), grid_(grid), block_(block), shared_bytes_(shared_bytes), stream_(stream) {}
  template <typename... Args>
  void operator()(Args&&... args) {
    if (check_launch(reinterpret_cast<const void*>(kernel_), grid_, block_, shared_bytes_) != cudaSuccess) return;
    note_kernel_node(stream_);
    auto bound = [kernel = kernel_, params = std::make_tuple(static_cast<Params>(args)...)]() { std::apply(kernel, params); };
    using Bound = decltype(bound);
    enqueue(stream_, [bound, grid = grid_, block = block_, shared = shared_bytes_]() mutable {
      run_grid(grid, block, shared, [](void* closure) { (*static_cast<Bound*>(closure))(); }, &bound);
    });
  }

 private:
  void (*kernel_)(Params...);
  dim3 grid_, block_;
  size_t shared_bytes_;
  cudaStream_t stream_;
};

}  // namespace pagedlm::emu

#define PAGEDLM_LAUNCH(kernel, grid, block, shared_bytes, stream) ::pagedlm::emu::Launch(kernel, dim3(grid), dim3(block), shared_bytes, stream)
#define PAGEDLM_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::pagedlm::emu::dynamic_shared())

inline void __syncthreads() { ::pagedlm::emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::pagedlm::emu::sync_warp(mask); }

template <typename T>
T __shfl_sync(unsigned mask, T value, int source, int width = 32) {
  const int lane = ::pagedlm::emu::lane_id();
  return ::pagedlm::emu::shuffle_from(value, lane / width * width + (source % width), mask);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  const int lane = ::pagedlm::emu::lane_id();
  const int source = lane ^ lane_mask;
  return ::pagedlm::emu::shuffle_from(value, source / width == lane / width ? source : lane, mask);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  const int lane = ::pagedlm::emu::lane_id();
  const int source = lane + static_cast<int>(delta);
  return ::pagedlm::emu::shuffle_from(value, source / width == lane / width ? source : lane, mask);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) { return ::pagedlm::emu::ballot(predicate != 0, mask); }
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

// ---- warp-level matrix instructions (mma.sync, ldmatrix) -------------------------------------------------
#include "warp_matrix_emulator.h"

// ---- integer dot products (__dp4a) --------------------------------------------------------------------
// PTX dp4a.s32.s32 (sm_61+): the four signed bytes of a times the four signed bytes of b, summed into c.
// The products and the sum are exact in 32 bits; the final add wraps modulo 2^32 as the hardware's does.
inline int __dp4a(int a, int b, int c) {
  uint32_t sum = static_cast<uint32_t>(c);
  for (int i = 0; i < 4; ++i) {
    const int product = static_cast<int>(static_cast<int8_t>(a >> (8 * i))) * static_cast<int>(static_cast<int8_t>(b >> (8 * i)));
    sum += static_cast<uint32_t>(product);
  }
  return static_cast<int>(sum);
}

// ---- asynchronous copies (cp.async) -------------------------------------------------------------------
#include "async_copy_emulator.h"
