// The x86 kernels for AVX-512 F/BW/VL/VNNI (compiled with those -m flags on top of AVX2's): see
// kernels_x86.inl.
// GCC 12 warns inside its own 512-bit intrinsics (their _mm512_undefined_ps() placeholder source).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define PAGEDLM_X86_AVX512 1
#define PAGEDLM_X86_TABLE avx512_kernels
#include "backend/cpu/kernels_x86.inl"
