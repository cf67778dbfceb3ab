// cuBLAS, or its CPU emulation when the CUDA backend is compiled as C++ for the emulated tests.
#pragma once

#ifdef PAGEDLM_CUDA_EMULATION
#include "cublas_emulator.h"
#else
#include <cublas_v2.h>
#endif
