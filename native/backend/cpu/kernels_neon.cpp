// The ARM64 kernels with plain NEON (Advanced SIMD, in every ARMv8-A CPU; compiled with -march=armv8-a): see
// kernels_neon.inl.
#define PAGEDLM_NEON_DOTPROD 0
#define PAGEDLM_NEON_TABLE neon_kernels
#include "backend/cpu/kernels_neon.inl"
