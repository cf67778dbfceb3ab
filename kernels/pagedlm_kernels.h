// Launchers of pagedlm's CUDA kernels. Each takes a params struct and a stream and returns the CUDA error
// code; launchers never allocate or synchronize. Built into libpagedlm_kernels, which the engine opens
// only when a GPU is asked for, so the addon loads on machines without CUDA.
#pragma once

#include <cuda_runtime_api.h>

namespace pagedlm::cuda {

struct RmsNormParams {
  const float* x;       // [rows, dim]
  const float* weight;  // [dim]
  float* out;           // [rows, dim]
  int rows;
  int dim;
  float eps;
};

cudaError_t launch_rms_norm(const RmsNormParams& params, cudaStream_t stream);

}  // namespace pagedlm::cuda
