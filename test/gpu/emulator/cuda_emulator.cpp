// The fiber scheduler behind cuda_emulator.h. Single OS thread: state here belongs to the running grid.
#include "cuda_emulator.h"

#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace pagedlm::emu {

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreads = 1024;
constexpr size_t kMaxSharedBytes = 227 * 1024;

struct Barrier {
  int arrived = 0;
  uint64_t generation = 0;
};

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  uint3 index{};
  int warp = 0;
  int lane = 0;
  bool done = false;
};

struct Grid {
  std::vector<Fiber> fibers;
  std::vector<int> live_in_warp;
  std::vector<Barrier> warp_barriers;
  std::vector<uint64_t> warp_slots;  // [warps][32]
  Barrier block_barrier;
  int live = 0;
  int current = -1;
  uint64_t progress = 0;
  ucontext_t scheduler;
  std::vector<char> shared;
  BlockBody body = nullptr;
  void* closure = nullptr;
};

Grid grid_state;
cudaError_t last_error = cudaSuccess;

Fiber& current_fiber() { return grid_state.fibers[grid_state.current]; }

void yield_to_scheduler() { swapcontext(&current_fiber().context, &grid_state.scheduler); }

// Arrives at `barrier` and waits until `participants()` threads have (threads that exited count as arrived).
template <typename Participants>
void wait_at(Barrier& barrier, Participants participants) {
  const uint64_t generation = barrier.generation;
  ++grid_state.progress;
  if (++barrier.arrived >= participants()) {
    barrier.arrived = 0;
    ++barrier.generation;
    return;
  }
  while (barrier.generation == generation) yield_to_scheduler();
}

// A barrier whose waiting threads are now all the live ones opens (some threads exited instead of arriving).
void release_if_complete(Barrier& barrier, int participants) {
  if (barrier.arrived > 0 && barrier.arrived >= participants) {
    barrier.arrived = 0;
    ++barrier.generation;
  }
}

void fiber_main() {
  grid_state.body(grid_state.closure);
  Fiber& self = current_fiber();
  self.done = true;
  --grid_state.live;
  --grid_state.live_in_warp[self.warp];
  ++grid_state.progress;
  release_if_complete(grid_state.block_barrier, grid_state.live);
  release_if_complete(grid_state.warp_barriers[self.warp], grid_state.live_in_warp[self.warp]);
  // Returning switches to uc_link, the scheduler.
}

void run_block(const dim3& block) {
  Grid& g = grid_state;
  const int threads = static_cast<int>(block.x * block.y * block.z);
  const int warps = (threads + 31) / 32;
  g.live = threads;
  g.live_in_warp.assign(warps, 0);
  g.warp_barriers.assign(warps, Barrier{});
  g.warp_slots.assign(static_cast<size_t>(warps) * 32, 0);
  g.block_barrier = Barrier{};
  std::fill(g.shared.begin(), g.shared.end(), static_cast<char>(0xFF));
  for (int t = 0; t < threads; ++t) {
    Fiber& f = g.fibers[t];
    f.index = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
    f.warp = t / 32;
    f.lane = t % 32;
    f.done = false;
    ++g.live_in_warp[f.warp];
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &g.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  while (g.live > 0) {
    const uint64_t before = g.progress;
    for (int t = 0; t < threads; ++t) {
      if (g.fibers[t].done) continue;
      g.current = t;
      threadIdx = g.fibers[t].index;
      swapcontext(&g.scheduler, &g.fibers[t].context);
    }
    if (g.progress == before && g.live > 0) {
      std::fprintf(stderr, "cuda emulator: deadlock in block (%u,%u,%u): threads wait at different barriers\n", blockIdx.x, blockIdx.y, blockIdx.z);
      std::abort();
    }
  }
  g.current = -1;
}

}  // namespace

void sync_block() {
  wait_at(grid_state.block_barrier, [] { return grid_state.live; });
}

void sync_warp() {
  const int warp = current_fiber().warp;
  wait_at(grid_state.warp_barriers[warp], [warp] { return grid_state.live_in_warp[warp]; });
}

int lane_id() { return current_fiber().lane; }

uint64_t exchange(uint64_t value, int source_lane) {
  const Fiber& self = current_fiber();
  uint64_t* slots = &grid_state.warp_slots[static_cast<size_t>(self.warp) * 32];
  slots[self.lane] = value;
  sync_warp();
  const uint64_t out = slots[source_lane & 31];
  sync_warp();
  return out;
}

unsigned ballot(bool predicate) {
  const Fiber& self = current_fiber();
  uint64_t* slots = &grid_state.warp_slots[static_cast<size_t>(self.warp) * 32];
  slots[self.lane] = predicate;
  sync_warp();
  unsigned mask = 0;
  for (int lane = 0; lane < 32; ++lane) mask |= (slots[lane] != 0 ? 1u : 0u) << lane;
  sync_warp();
  return mask;
}

void* dynamic_shared() { return grid_state.shared.data(); }

cudaError_t run_grid(dim3 grid, dim3 block, size_t shared_bytes, BlockBody body, void* closure) {
  // One grid at a time in the process: engines on their own threads take turns, as on one device.
  static std::mutex device;
  const std::lock_guard<std::mutex> lock(device);
  const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      shared_bytes > kMaxSharedBytes) {
    return last_error = cudaErrorInvalidConfiguration;
  }
  Grid& g = grid_state;
  if (g.current >= 0) {
    std::fprintf(stderr, "cuda emulator: a kernel launched another kernel\n");
    std::abort();
  }
  while (g.fibers.size() < threads) {
    g.fibers.emplace_back();
    g.fibers.back().stack = std::make_unique<char[]>(kStackBytes);
  }
  g.shared.assign(shared_bytes, 0);
  g.body = body;
  g.closure = closure;
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {x, y, z};
        run_block(block);
      }
    }
  }
  return cudaSuccess;
}

namespace {
std::vector<std::function<void()>>* capturing = nullptr;
uint64_t launches_of_graphs = 0;
}  // namespace

void run_or_record(std::function<void()> work) {
  if (capturing != nullptr) capturing->push_back(std::move(work));
  else work();
}

uint64_t graph_launches() { return launches_of_graphs; }

// ---- graph kernel nodes (test hook) ----
namespace {
uint64_t kernels_in_capture = 0, kernels_of_last_capture = 0;
}  // namespace

void note_kernel_node() {
  if (capturing != nullptr) ++kernels_in_capture;
}
uint64_t captured_kernel_nodes() { return kernels_of_last_capture; }

}  // namespace pagedlm::emu

struct EmulatedGraph {
  std::vector<std::function<void()>> steps;
};

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  if (pagedlm::emu::capturing != nullptr) return cudaErrorInvalidValue;
  pagedlm::emu::capturing = new std::vector<std::function<void()>>();
  pagedlm::emu::kernels_in_capture = 0;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* graph) {
  if (pagedlm::emu::capturing == nullptr) return cudaErrorInvalidValue;
  *graph = new EmulatedGraph{std::move(*pagedlm::emu::capturing)};
  pagedlm::emu::kernels_of_last_capture = pagedlm::emu::kernels_in_capture;
  delete pagedlm::emu::capturing;
  pagedlm::emu::capturing = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = new EmulatedGraph{graph->steps};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
  ++pagedlm::emu::launches_of_graphs;
  for (const auto& step : exec->steps) step();
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return cudaMalloc(ptr, bytes); }
cudaError_t cudaFreeHost(void* ptr) { return cudaFree(ptr); }

// ---- runtime API ---------------------------------------------------------------------------------------

// Exactly `bytes`, aligned as cudaMalloc's are: under AddressSanitizer a kernel reading past its buffer fails.
constexpr std::align_val_t kDeviceAlignment{256};
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = ::operator new(bytes, kDeviceAlignment, std::nothrow);
  return *ptr != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* ptr) {
  if (ptr != nullptr) ::operator delete(ptr, kDeviceAlignment);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  pagedlm::emu::run_or_record([=] { cudaMemcpy(dst, src, bytes, kind); });
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t) {
  pagedlm::emu::run_or_record([=] {
    for (size_t row = 0; row < height; ++row) {
      cudaMemcpy(static_cast<char*>(dst) + row * dpitch, static_cast<const char*>(src) + row * spitch, width, kind);
    }
  });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t) { return cudaMemset(ptr, value, bytes); }
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
  *prop = {};
  std::strcpy(prop->name, "CUDA emulator (CPU)");
  prop->multiProcessorCount = 4;
  prop->totalGlobalMem = size_t{1} << 30;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = *total_bytes = size_t{1} << 30;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = nullptr;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  const cudaError_t e = pagedlm::emu::last_error;
  pagedlm::emu::last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "unknown error";
  }
}
