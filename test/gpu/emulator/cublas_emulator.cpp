#include "cublas_emulator.h"

#include "common/half.h"

// A handle queues its GEMMs on the stream cublasSetStream gave it, as cuBLAS does.
struct EmulatedCublas {
  cudaStream_t stream = nullptr;
};

namespace {

double element(const void* base, cudaDataType type, size_t i) {
  switch (type) {
    case CUDA_R_32F: return static_cast<const float*>(base)[i];
    case CUDA_R_16F: return pagedlm::fp16_to_float(static_cast<const uint16_t*>(base)[i]);
    case CUDA_R_16BF: return pagedlm::bf16_to_float(static_cast<const uint16_t*>(base)[i]);
  }
  return 0;
}

void gemm(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, float a, const void* A, cudaDataType a_type, int lda,
          const void* B, cudaDataType b_type, int ldb, float b, float* c, int ldc);

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new EmulatedCublas();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_NOT_SUPPORTED";
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType a_type, int lda, const void* B, cudaDataType b_type, int ldb, const void* beta,
                            void* C, cudaDataType c_type, int ldc, cublasComputeType_t, cublasGemmAlgo_t) {
  if (c_type != CUDA_R_32F || m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  pagedlm::emu::note_kernel_node(handle->stream);
  pagedlm::emu::enqueue(handle->stream, [=] { gemm(transa, transb, m, n, k, a, A, a_type, lda, B, b_type, ldb, b, static_cast<float*>(C), ldc); });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }

namespace {

void gemm(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, float a, const void* A, cudaDataType a_type, int lda,
          const void* B, cudaDataType b_type, int ldb, float b, float* c, int ldc) {
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double sum = 0;
      for (int p = 0; p < k; ++p) {
        const size_t ai = transa == CUBLAS_OP_N ? static_cast<size_t>(p) * lda + i : static_cast<size_t>(i) * lda + p;
        const size_t bi = transb == CUBLAS_OP_N ? static_cast<size_t>(j) * ldb + p : static_cast<size_t>(p) * ldb + j;
        sum += element(A, a_type, ai) * element(B, b_type, bi);
      }
      float& out = c[static_cast<size_t>(j) * ldc + i];
      out = static_cast<float>(a * sum + (b != 0.0f ? b * out : 0.0));
    }
  }
}

}  // namespace
