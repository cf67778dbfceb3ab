// The sampled token's candidates picked from a row of logits where they were computed, so that a greedy or
// top-k step does not hand the whole vocabulary to the sampler (which copies and orders it, every token, at
// a cost that grows with the vocabulary). Same choices as Sampler::sample: NaN ranks as -inf, ties go to the
// lower id.
#pragma once

#include <cstdint>

#include "backend/cpu/kernels.h"

namespace pagedlm {

// The id of the largest logit of x[0, n), n > 0.
int32_t argmax_logits(const CpuKernels& kernels, const float* x, int n);

// The k (0 < k <= n) largest logits of x[0, n), best first: ids[i] and values[i] (the logits, NaN as -inf).
void top_k_logits(const float* x, int n, int k, int32_t* ids, float* values);

}  // namespace pagedlm
