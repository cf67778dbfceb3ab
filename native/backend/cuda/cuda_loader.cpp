#include <mutex>
#include <string>

#include "backend/cuda/cuda_entry.h"
#include "common/dynamic_library.h"
#include "common/platform.h"

namespace pagedlm {

namespace {

// The kernels library's file name on this system (cmake/cuda.cmake): libpagedlm_kernels.so, .dylib or .dll.
constexpr const char* kCudaLibraryName = PAGEDLM_CUDA_LIBRARY_FILE_NAME;

struct Library {
  CreateCudaBackend create = nullptr;
  QueryCudaDevice query = nullptr;
  std::string error;
};

const Library& library() {
  static Library lib;
  static std::once_flag once;
  std::call_once(once, [] {
    // Already in the process (a test binary linked with the emulated backend): nothing to open.
    lib.create = reinterpret_cast<CreateCudaBackend>(DynamicLibrary::process_symbol(kCreateCudaBackendSymbol));
    lib.query = reinterpret_cast<QueryCudaDevice>(DynamicLibrary::process_symbol(kQueryCudaDeviceSymbol));
    if (lib.create != nullptr && lib.query != nullptr) return;
    std::string candidates[3];
    if (std::string chosen = utf8_environment_variable("PAGEDLM_CUDA_LIBRARY"); !chosen.empty()) {
      candidates[0] = chosen;  // an explicit choice: nothing else is tried
    } else {
      candidates[1] = DynamicLibrary::directory_of(reinterpret_cast<const void*>(&open_cuda_backend)) + kCudaLibraryName;
      candidates[2] = kCudaLibraryName;
    }
    for (const std::string& path : candidates) {
      if (path.empty()) continue;
      auto opened = DynamicLibrary::open(path);
      if (!opened.is_ok()) {
        if (lib.error.empty()) lib.error = opened.status().message();
        continue;
      }
      lib.create = reinterpret_cast<CreateCudaBackend>(opened.value().symbol(kCreateCudaBackendSymbol));
      lib.query = reinterpret_cast<QueryCudaDevice>(opened.value().symbol(kQueryCudaDeviceSymbol));
      if (lib.create != nullptr && lib.query != nullptr) return;
      lib.error = path + " lacks " + kCreateCudaBackendSymbol + " or " + kQueryCudaDeviceSymbol;
    }
  });
  return lib;
}

}  // namespace

void open_cuda_backend(const CudaBackendRequest& request, CudaBackendReply& reply) {
  const Library& lib = library();
  if (lib.create == nullptr) {
    reply.unavailable = true;
    reply.status = Status(ErrorCode::kUnsupported, "built without CUDA (" + lib.error + ")");
    return;
  }
  lib.create(request, reply);
}

void query_cuda_device(int device, CudaDeviceReply& reply) {
  const Library& lib = library();
  if (lib.query == nullptr) {
    reply.unavailable = true;
    reply.status = Status(ErrorCode::kUnsupported, "built without CUDA (" + lib.error + ")");
    return;
  }
  lib.query(device, reply);
}

}  // namespace pagedlm
