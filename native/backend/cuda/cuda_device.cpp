// The second entry point of libpagedlm_kernels: one device's name and memory, for planning before a load
// (Engine.inspect with device 'cuda'), without creating a backend.
#include "backend/cuda/cuda_entry.h"
#include "cuda_api.h"

PAGEDLM_CUDA_ENTRY_POINT void pagedlm_query_cuda_device(int device, pagedlm::CudaDeviceReply& reply) {
  using pagedlm::ErrorCode;
  using pagedlm::Status;
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    reply.unavailable = true;
    reply.status = Status(ErrorCode::kUnsupported, error == cudaSuccess || error == cudaErrorNoDevice
                                                       ? std::string("no CUDA device found")
                                                       : std::string("CUDA is not usable: ") + cudaGetErrorString(error));
    return;
  }
  if (device < 0 || device >= count) {
    reply.status = Status(ErrorCode::kInvalidArgument, "gpu " + std::to_string(device) + " does not exist: this machine has " + std::to_string(count) +
                                                           " CUDA device" + (count == 1 ? "" : "s"));
    return;
  }
  cudaDeviceProp prop{};
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    reply.status = Status(ErrorCode::kCuda, std::string("selecting gpu ") + std::to_string(device) + ": " + cudaGetErrorString(e));
    return;
  }
  if (cudaError_t e = cudaGetDeviceProperties(&prop, device); e != cudaSuccess) {
    reply.status = Status(ErrorCode::kCuda, std::string("reading the device's properties: ") + cudaGetErrorString(e));
    return;
  }
  if (cudaError_t e = cudaMemGetInfo(&free_bytes, &total_bytes); e != cudaSuccess) {
    reply.status = Status(ErrorCode::kCuda, std::string("reading free device memory: ") + cudaGetErrorString(e));
    return;
  }
  reply.name = prop.name;
  reply.free_bytes = free_bytes;
  reply.total_bytes = total_bytes;
}
