// The streaming read the bandwidth probe times: the sum of n floats with independent accumulators, so that
// the loads, not the additions, bound it.
#pragma once

#include <cstddef>

namespace pagedlm::bench {

// AVX2 loads where the engine picks an x86 kernel table, the portable loop where it picks the portable one
// (PAGEDLM_CPU_KERNELS=portable included): the probe reads the way the engine's kernels would.
float read_sum(const float* x, size_t n);

#if defined(PAGEDLM_HAVE_X86_READ_SUM)
float read_sum_avx2(const float* x, size_t n);  // read_sum_avx2.cpp, compiled with -mavx2
#endif

}  // namespace pagedlm::bench
