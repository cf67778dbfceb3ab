// One KV block's share of attention for one token's query rows of a KV head, on a kernel table: its fused
// form where it has one, else the per-row kernels (dot_rows, exp_sum, axpy_rows) composed here.
#pragma once

#include "backend/cpu/kernels.h"

namespace pagedlm {

// K/V rows [0, n) of width d; `scores` holds n floats of scratch (used by the per-row form only).
void attend_block(const CpuKernels& kernels, const float* k, const float* v, int n, int d, const AttentionRows& rows, float* scores);
void attend_block(const CpuKernels& kernels, const uint16_t* k, const uint16_t* v, int n, int d, const AttentionRows& rows, float* scores);

// The per-row form alone, whatever the table has.
void attend_block_by_rows(const CpuKernels& kernels, const float* k, const float* v, int n, int d, const AttentionRows& rows, float* scores);
void attend_block_by_rows(const CpuKernels& kernels, const uint16_t* k, const uint16_t* v, int n, int d, const AttentionRows& rows,
                          float* scores);

}  // namespace pagedlm
