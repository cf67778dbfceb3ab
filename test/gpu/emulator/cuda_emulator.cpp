// The fiber scheduler behind cuda_emulator.h. Single OS thread: state here belongs to the running grid.
#include "cuda_emulator.h"

#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace pagedlm::emu {

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreads = 1024;

struct Barrier {
  int arrived = 0;
  uint64_t generation = 0;
};

// A warp operation's barrier: the lanes named in `mask` meet there.
struct WarpBarrier {
  unsigned mask = 0;
  Barrier barrier;
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
  std::vector<std::vector<WarpBarrier>> masked_barriers;  // [warps]
  std::vector<unsigned> warp_lanes;                       // [warps]: the lanes that exist (a partial last warp has fewer)
  std::vector<uint64_t> warp_slots;                       // [warps][32]
  std::vector<int> order;                                 // the fibers, in this round's order
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

// ---- interleaving ----
uint64_t seed_value = 0;
bool seed_chosen = false;
std::mt19937_64 order_generator;

void choose_seed() {
  if (seed_chosen) return;
  const char* env = std::getenv("PAGEDLM_EMULATOR_SEED");
  seed_value = env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10) : std::random_device{}();
  seed_chosen = true;
  order_generator.seed(seed_value);
  std::fprintf(stderr, "cuda emulator: interleaving seed %llu (PAGEDLM_EMULATOR_SEED=%llu repeats it)\n", static_cast<unsigned long long>(seed_value),
               static_cast<unsigned long long>(seed_value));
}

// Reports a kernel's misuse of the thread model and aborts, as a device's hang or fault would end the test.
[[noreturn]] void report(const std::string& what) {
  const Fiber* f = grid_state.current >= 0 ? &grid_state.fibers[grid_state.current] : nullptr;
  std::fprintf(stderr, "cuda emulator: %s in block (%u,%u,%u)", what.c_str(), blockIdx.x, blockIdx.y, blockIdx.z);
  if (f != nullptr) std::fprintf(stderr, ", thread (%u,%u,%u)", f->index.x, f->index.y, f->index.z);
  std::fprintf(stderr, " [interleaving seed %llu]\n", static_cast<unsigned long long>(seed_value));
  std::abort();
}

std::string hex(unsigned mask) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", mask);
  return text;
}

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
  for (const WarpBarrier& w : grid_state.masked_barriers[self.warp]) {
    if (w.barrier.arrived > 0 && (w.mask >> self.lane & 1u)) {
      report("lane " + std::to_string(self.lane) + " exited while other lanes wait for it in a warp operation with mask " + hex(w.mask));
    }
  }
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
  g.masked_barriers.assign(warps, {});
  g.warp_lanes.assign(warps, 0);
  g.warp_slots.assign(static_cast<size_t>(warps) * 32, 0);
  g.block_barrier = Barrier{};
  std::fill(g.shared.begin(), g.shared.end(), static_cast<char>(0xFF));
  g.order.resize(threads);
  for (int t = 0; t < threads; ++t) {
    Fiber& f = g.fibers[t];
    f.index = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
    f.warp = t / 32;
    f.lane = t % 32;
    f.done = false;
    ++g.live_in_warp[f.warp];
    g.warp_lanes[f.warp] |= 1u << f.lane;
    g.order[t] = t;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &g.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  while (g.live > 0) {
    const uint64_t before = g.progress;
    std::shuffle(g.order.begin(), g.order.end(), order_generator);
    for (const int t : g.order) {
      if (g.fibers[t].done) continue;
      g.current = t;
      threadIdx = g.fibers[t].index;
      swapcontext(&g.scheduler, &g.fibers[t].context);
    }
    if (g.progress == before && g.live > 0) {
      g.current = -1;
      report("deadlock: threads wait at different barriers");
    }
  }
  g.current = -1;
}

}  // namespace

uint64_t interleaving_seed() {
  choose_seed();
  return seed_value;
}

void set_interleaving_seed(uint64_t seed) {
  choose_seed();
  seed_value = seed;
  order_generator.seed(seed);
}

void sync_block() {
  wait_at(grid_state.block_barrier, [] { return grid_state.live; });
}

void sync_warp() {
  const int warp = current_fiber().warp;
  wait_at(grid_state.warp_barriers[warp], [warp] { return grid_state.live_in_warp[warp]; });
}

// ---- warp masks ----
void sync_warp(unsigned mask) {
  const Fiber& self = current_fiber();
  if (!(mask >> self.lane & 1u)) report("lane " + std::to_string(self.lane) + " runs a warp operation whose mask " + hex(mask) + " does not name it");
  const unsigned missing = mask & ~grid_state.warp_lanes[self.warp];
  if (missing != 0) report("warp operation with mask " + hex(mask) + " names lanes " + hex(missing) + " that the block does not have");
  for (int lane = 0; lane < 32; ++lane) {
    if ((mask >> lane & 1u) && grid_state.fibers[self.warp * 32 + lane].done) {
      report("warp operation with mask " + hex(mask) + " names lane " + std::to_string(lane) + ", which has exited");
    }
  }
  std::vector<WarpBarrier>& barriers = grid_state.masked_barriers[self.warp];
  auto it = std::find_if(barriers.begin(), barriers.end(), [mask](const WarpBarrier& w) { return w.mask == mask; });
  if (it == barriers.end()) it = barriers.insert(barriers.end(), WarpBarrier{mask, {}});
  const size_t index = static_cast<size_t>(it - barriers.begin());  // the vector may grow while this lane waits
  const int participants = __builtin_popcount(mask);
  wait_at(barriers[index].barrier, [participants] { return participants; });
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

uint64_t exchange(uint64_t value, int source_lane, unsigned mask) {
  const Fiber& self = current_fiber();
  if (!(mask >> (source_lane & 31) & 1u)) {
    report("lane " + std::to_string(self.lane) + " shuffles from lane " + std::to_string(source_lane & 31) + ", outside the mask " + hex(mask));
  }
  uint64_t* slots = &grid_state.warp_slots[static_cast<size_t>(self.warp) * 32];
  slots[self.lane] = value;
  sync_warp(mask);
  const uint64_t out = slots[source_lane & 31];
  sync_warp(mask);
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

unsigned ballot(bool predicate, unsigned mask) {
  const Fiber& self = current_fiber();
  uint64_t* slots = &grid_state.warp_slots[static_cast<size_t>(self.warp) * 32];
  slots[self.lane] = predicate;
  sync_warp(mask);
  unsigned votes = 0;
  for (int lane = 0; lane < 32; ++lane) votes |= ((mask >> lane & 1u) && slots[lane] != 0 ? 1u : 0u) << lane;
  sync_warp(mask);
  return votes;
}

void* dynamic_shared() { return grid_state.shared.data(); }

// ---- dynamic shared memory opt-in ----
namespace {
std::mutex attributes_mutex;
std::map<const void*, size_t> dynamic_shared_limits;  // kernel -> bytes opted in
}  // namespace

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > kMaxDynamicSharedBytes) return last_error = cudaErrorInvalidValue;
  const std::lock_guard<std::mutex> lock(attributes_mutex);
  dynamic_shared_limits[kernel] = static_cast<size_t>(bytes);
  return cudaSuccess;
}

cudaError_t check_launch(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes) {
  const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
    return last_error = cudaErrorInvalidConfiguration;
  }
  size_t limit = kDefaultDynamicSharedBytes;
  {
    const std::lock_guard<std::mutex> lock(attributes_mutex);
    const auto it = dynamic_shared_limits.find(kernel);
    if (it != dynamic_shared_limits.end()) limit = std::max(limit, it->second);
  }
  if (shared_bytes > limit) return last_error = cudaErrorInvalidValue;
  return cudaSuccess;
}

cudaError_t run_grid(dim3 grid, dim3 block, size_t shared_bytes, BlockBody body, void* closure) {
  // One grid at a time in the process: engines on their own threads take turns, as on one device.
  static std::mutex device;
  const std::lock_guard<std::mutex> lock(device);
  const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      shared_bytes > kMaxDynamicSharedBytes) {
    return last_error = cudaErrorInvalidConfiguration;
  }
  Grid& g = grid_state;
  if (g.current >= 0) {
    std::fprintf(stderr, "cuda emulator: a kernel launched another kernel\n");
    std::abort();
  }
  choose_seed();
  while (g.fibers.size() < threads) {
    g.fibers.emplace_back();
    g.fibers.back().stack = std::make_unique<char[]>(kStackBytes);
  }
  g.shared.assign(shared_bytes, 0);
  g.body = body;
  g.closure = closure;
  gridDim = grid;
  blockDim = block;
  // The blocks in a random order too: no block may depend on another having run first.
  const size_t blocks = static_cast<size_t>(grid.x) * grid.y * grid.z;
  std::vector<uint32_t> block_order(blocks);
  for (size_t b = 0; b < blocks; ++b) block_order[b] = static_cast<uint32_t>(b);
  std::shuffle(block_order.begin(), block_order.end(), order_generator);
  for (const uint32_t b : block_order) {
    blockIdx = {b % grid.x, b / grid.x % grid.y, static_cast<unsigned>(b / (static_cast<size_t>(grid.x) * grid.y))};
    run_block(block);
  }
  return cudaSuccess;
}

// ---- streams ----
namespace {

struct Pending {
  uint64_t sequence;
  std::function<void()> work;
};

}  // namespace
}  // namespace pagedlm::emu

struct EmulatedStream {
  bool non_blocking = false;
  std::deque<pagedlm::emu::Pending> queue;
  std::vector<std::function<void()>>* capture = nullptr;
  uint64_t kernels_captured = 0;  // kernel nodes of the capture in progress
};

namespace pagedlm::emu {
namespace {

std::recursive_mutex streams_mutex;
EmulatedStream legacy_stream;
std::set<EmulatedStream*> created_streams;
uint64_t next_sequence = 0;
uint64_t launches_of_graphs = 0;
// Host memory from cudaMallocHost (start -> bytes): copies from it are not staged.
std::map<const char*, size_t> pinned_ranges;
int allocations_left = -1;  // negative: no limit

EmulatedStream* resolve(cudaStream_t stream) { return stream != nullptr ? stream : &legacy_stream; }

bool in_legacy_group(const EmulatedStream* s) { return s == &legacy_stream || !s->non_blocking; }

// Runs the queued work of the streams `select` picks, oldest first, until they are empty.
template <typename Select>
void drain(Select select) {
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  for (;;) {
    EmulatedStream* next = nullptr;
    const auto consider = [&](EmulatedStream* s) {
      if (!s->queue.empty() && select(s) && (next == nullptr || s->queue.front().sequence < next->queue.front().sequence)) next = s;
    };
    consider(&legacy_stream);
    for (EmulatedStream* s : created_streams) consider(s);
    if (next == nullptr) return;
    std::function<void()> work = std::move(next->queue.front().work);
    next->queue.pop_front();
    work();
  }
}

void drain_all() {
  drain([](const EmulatedStream*) { return true; });
}
void drain_legacy() { drain(in_legacy_group); }

bool pinned(const void* p) {
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  const char* c = static_cast<const char*>(p);
  auto it = pinned_ranges.upper_bound(c);
  if (it == pinned_ranges.begin()) return false;
  --it;
  return c < it->first + it->second;
}

}  // namespace

void enqueue(cudaStream_t stream, std::function<void()> work) {
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  EmulatedStream* s = resolve(stream);
  if (s->capture != nullptr) s->capture->push_back(std::move(work));
  else s->queue.push_back({next_sequence++, std::move(work)});
}

void run_or_record(std::function<void()> work) {
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  for (EmulatedStream* s : created_streams) {
    if (s->capture != nullptr) return enqueue(s, std::move(work));
  }
  enqueue(nullptr, std::move(work));
}

uint64_t graph_launches() { return launches_of_graphs; }

// ---- allocation failures ----
void fail_allocations_after(int successes) {
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  allocations_left = successes;
}

// ---- graph kernel nodes (test hook) ----
namespace {
uint64_t kernels_of_last_capture = 0;
}  // namespace

void note_kernel_node(cudaStream_t stream) {
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  EmulatedStream* s = resolve(stream);
  if (s->capture != nullptr) ++s->kernels_captured;
}
uint64_t captured_kernel_nodes() { return kernels_of_last_capture; }

}  // namespace pagedlm::emu

struct EmulatedGraph {
  std::shared_ptr<const std::vector<std::function<void()>>> steps;
};

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  using namespace pagedlm::emu;
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  EmulatedStream* s = resolve(stream);
  if (s == &legacy_stream || s->capture != nullptr) return cudaErrorInvalidValue;
  s->capture = new std::vector<std::function<void()>>();
  s->kernels_captured = 0;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  using namespace pagedlm::emu;
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  EmulatedStream* s = resolve(stream);
  if (s->capture == nullptr) return cudaErrorInvalidValue;
  *graph = new EmulatedGraph{std::make_shared<const std::vector<std::function<void()>>>(std::move(*s->capture))};
  kernels_of_last_capture = s->kernels_captured;
  delete s->capture;
  s->capture = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = new EmulatedGraph{graph->steps};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  using namespace pagedlm::emu;
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  ++launches_of_graphs;
  enqueue(stream, [steps = exec->steps] {
    for (const auto& step : *steps) step();
  });
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
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  *ptr = ::operator new(bytes, std::nothrow);
  if (*ptr == nullptr) return cudaErrorMemoryAllocation;
  const std::lock_guard<std::recursive_mutex> lock(pagedlm::emu::streams_mutex);
  pagedlm::emu::pinned_ranges[static_cast<const char*>(*ptr)] = bytes;
  return cudaSuccess;
}
// Waits for the device, as the runtime's cudaFreeHost does.
cudaError_t cudaFreeHost(void* ptr) {
  pagedlm::emu::drain_all();
  if (ptr == nullptr) return cudaSuccess;
  {
    const std::lock_guard<std::recursive_mutex> lock(pagedlm::emu::streams_mutex);
    pagedlm::emu::pinned_ranges.erase(static_cast<const char*>(ptr));
  }
  ::operator delete(ptr);
  return cudaSuccess;
}

// ---- runtime API ---------------------------------------------------------------------------------------

// Exactly `bytes`, aligned as cudaMalloc's are: under AddressSanitizer a kernel reading past its buffer fails.
constexpr std::align_val_t kDeviceAlignment{256};
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  {
    const std::lock_guard<std::recursive_mutex> lock(pagedlm::emu::streams_mutex);
    if (pagedlm::emu::allocations_left == 0) {
      *ptr = nullptr;
      return pagedlm::emu::last_error = cudaErrorMemoryAllocation;
    }
    if (pagedlm::emu::allocations_left > 0) --pagedlm::emu::allocations_left;
  }
  *ptr = ::operator new(bytes, kDeviceAlignment, std::nothrow);
  return *ptr != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
// Waits for the device, as the runtime's cudaFree does.
cudaError_t cudaFree(void* ptr) {
  pagedlm::emu::drain_all();
  if (ptr != nullptr) ::operator delete(ptr, kDeviceAlignment);
  return cudaSuccess;
}
namespace {
void copy_now(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memmove(dst, src, bytes);
}
}  // namespace
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  using namespace pagedlm::emu;
  if (kind == cudaMemcpyDeviceToDevice) {
    enqueue(nullptr, [=] { copy_now(dst, src, bytes); });
    return cudaSuccess;
  }
  drain_legacy();
  if (kind == cudaMemcpyHostToDevice && !pinned(src)) {
    // Staged: the call returns once the pageable bytes are copied out; the device gets them later.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    enqueue(nullptr, [=] { copy_now(dst, staged->data(), bytes); });
    return cudaSuccess;
  }
  copy_now(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (kind == cudaMemcpyHostToDevice && !pagedlm::emu::pinned(src)) {
    // The runtime stages pageable bytes before returning: the caller may reuse them at once.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    pagedlm::emu::enqueue(stream, [=] { copy_now(dst, staged->data(), bytes); });
    return cudaSuccess;
  }
  // Pinned memory is read (or written) when the copy runs on its stream.
  pagedlm::emu::enqueue(stream, [=] { copy_now(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height, cudaMemcpyKind,
                              cudaStream_t stream) {
  pagedlm::emu::enqueue(stream, [=] {
    for (size_t row = 0; row < height; ++row) copy_now(static_cast<char*>(dst) + row * dpitch, static_cast<const char*>(src) + row * spitch, width);
  });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) { return cudaMemsetAsync(ptr, value, bytes, nullptr); }
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  pagedlm::emu::enqueue(stream, [=] { std::memset(ptr, value, bytes); });
  return cudaSuccess;
}
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
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  const std::lock_guard<std::recursive_mutex> lock(pagedlm::emu::streams_mutex);
  *stream = new EmulatedStream();
  (*stream)->non_blocking = (flags & cudaStreamNonBlocking) != 0;
  pagedlm::emu::created_streams.insert(*stream);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  using namespace pagedlm::emu;
  if (stream == nullptr) return cudaErrorInvalidValue;
  drain([stream](const EmulatedStream* s) { return s == stream; });
  const std::lock_guard<std::recursive_mutex> lock(streams_mutex);
  created_streams.erase(stream);
  delete stream->capture;
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  pagedlm::emu::drain_all();
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  using namespace pagedlm::emu;
  EmulatedStream* target = resolve(stream);
  if (in_legacy_group(target)) {
    // Work on a blocking stream waits for the legacy stream's earlier work, and the legacy stream for theirs.
    drain(in_legacy_group);
  } else {
    drain([target](const EmulatedStream* s) { return s == target; });
  }
  return cudaSuccess;
}
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
