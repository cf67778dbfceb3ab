// The entry point of the CUDA backend, shared by the engine (which opens libpagedlm_kernels at run time,
// cuda_loader.cpp) and the library (which defines it, cuda_backend.cpp). No CUDA headers here: the engine
// and the addon are built and loaded without them.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/llama_model.h"

namespace pagedlm {

struct CudaBackendRequest {
  std::shared_ptr<const LlamaModel> model;
  KvLayout layout;               // num_blocks 0: size the pool from gpu_memory_fraction of the free memory
  int device = 0;                // CUDA device index
  int max_batch_tokens = 512;    // the largest step the scheduler plans
  double gpu_memory_fraction = 0.9;
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
inline constexpr const char* kCudaLibraryName = "libpagedlm_kernels.so";

// Opens libpagedlm_kernels (PAGEDLM_CUDA_LIBRARY alone when set, else beside the module holding this code,
// else the loader's search path; unless the process already holds the entry point) and creates the backend. The library stays loaded for the life of the process.
void open_cuda_backend(const CudaBackendRequest& request, CudaBackendReply& reply);

}  // namespace pagedlm
