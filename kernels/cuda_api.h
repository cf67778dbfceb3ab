// The CUDA runtime types the launchers use (cudaError_t, cudaStream_t), or their CPU emulation when the
// kernels are compiled as C++ for the emulated tests (test/gpu/emulator).
#pragma once

#ifdef PAGEDLM_CUDA_EMULATION
#include "cuda_emulator.h"
#else
#include <cuda_runtime_api.h>
#endif
