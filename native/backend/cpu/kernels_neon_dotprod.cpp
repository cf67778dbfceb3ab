// The ARM64 kernels with the dot-product instructions (sdot; compiled with -march=armv8.2-a+dotprod and
// called only where the CPU reports them): see kernels_neon.inl.
#define PAGEDLM_NEON_DOTPROD 1
#define PAGEDLM_NEON_TABLE neon_dotprod_kernels
#include "backend/cpu/kernels_neon.inl"
