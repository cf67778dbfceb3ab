// The x86 kernels for AVX2 + FMA + F16C (compiled with -mavx2 -mfma -mf16c): see kernels_x86.inl.
#define PAGEDLM_X86_AVX512 0
#define PAGEDLM_X86_TABLE avx2_kernels
#include "backend/cpu/kernels_x86.inl"
