// The slice of cuBLAS the CUDA backend calls (cublasGemmEx on f32 / f16 / bf16 inputs, f32 output), as plain
// CPU loops in double precision, so the backend runs end to end under the CUDA emulator.
#pragma once

#include "cuda_emulator.h"

using cublasHandle_t = struct EmulatedCublas*;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
const char* cublasGetStatusString(cublasStatus_t status);
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes);
// Column-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C.
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType a_type, int lda, const void* B, cudaDataType b_type, int ldb, const void* beta,
                            void* C, cudaDataType c_type, int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo);
