// The seam between the engine and the CUDA half (longer form: "The CUDA seam" in docs/backends.md).
//
// The engine opens libpagedlm_kernels with dlopen (cuda_loader.cpp) only when a GPU is asked for, so the
// addon needs no CUDA library to load. Two symbols cross the line by name: pagedlm_create_cuda_backend
// (cuda_backend.cpp), and beside it pagedlm_query_cuda_device (cuda_device.cpp), which reads one device's
// memory for planning. Through them cross C++ values: the request (the engine's shared LlamaModel, read while
// the weights upload; the KV layout), the reply (a Status, the layout as allocated) and the backend, whose
// virtual calls (forward, block export/import/copy, the destructor) run library code from then on. So the
// line is a C++ ABI, not a stable C one: both sides come from the same build, with these headers, the same
// compiler and the same shared libstdc++. No CUDA headers here: the engine and the addon compile without them.
//
// The library compiles in pagedlm_core (Status, tensor types, KV dtypes, the RoPE table) and nothing else of
// the engine: it cannot reach the addon's copy, which Node loads RTLD_LOCAL. That code is stateless, so the
// two copies cannot disagree, and the library's version script (exports.map) keeps its copy private.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/llama_model.h"

// How the library declares the two entry points: exported by name, beside nothing else of it (a Windows DLL
// exports what is marked; elsewhere exports.map narrows the default visibility).
#if defined(_WIN32)
#define PAGEDLM_CUDA_ENTRY_POINT extern "C" __declspec(dllexport)
#else
#define PAGEDLM_CUDA_ENTRY_POINT extern "C" __attribute__((visibility("default")))
#endif

namespace pagedlm {

struct CudaBackendRequest {
  std::shared_ptr<const LlamaModel> model;
  KvLayout layout;               // num_blocks 0: size the pool from gpu_memory_fraction of the free memory
  int device = 0;                // CUDA device index
  int max_batch_tokens = 512;    // the largest step the scheduler plans
  double gpu_memory_fraction = 0.9;
  int32_t max_blocks = 0;        // with num_blocks 0: at most this many blocks (0: no cap)
};

struct CudaBackendReply {
  std::unique_ptr<Backend> backend;
  Status status;             // why there is no backend
  bool unavailable = false;  // this machine cannot run CUDA (no driver, no device): 'auto' falls back to the CPU
  KvLayout layout;           // the pool as allocated
  std::string device_name;
  uint64_t weight_bytes = 0;  // device memory the weights take
};

using CreateCudaBackend = void (*)(const CudaBackendRequest& request, CudaBackendReply& reply);
inline constexpr const char* kCreateCudaBackendSymbol = "pagedlm_create_cuda_backend";

struct CudaDeviceReply {
  Status status;             // why there is no answer
  bool unavailable = false;  // this machine cannot run CUDA (no library, driver or device)
  std::string name;
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};
using QueryCudaDevice = void (*)(int device, CudaDeviceReply& reply);
inline constexpr const char* kQueryCudaDeviceSymbol = "pagedlm_query_cuda_device";

// Opens libpagedlm_kernels (PAGEDLM_CUDA_LIBRARY alone when set, else beside the module holding this code,
// else the loader's search path; unless the process already holds the entry point) and creates the backend.
// The library stays loaded for the life of the process: the backends it creates run its code.
void open_cuda_backend(const CudaBackendRequest& request, CudaBackendReply& reply);
// The same library's device query.
void query_cuda_device(int device, CudaDeviceReply& reply);

}  // namespace pagedlm
