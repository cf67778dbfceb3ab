#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "backend/cuda/cuda_entry.h"

namespace pagedlm {

namespace {

std::string directory_of_this_module() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&open_cuda_backend), &info) == 0 || info.dli_fname == nullptr) return {};
  const std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

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
    lib.create = reinterpret_cast<CreateCudaBackend>(dlsym(RTLD_DEFAULT, kCreateCudaBackendSymbol));
    lib.query = reinterpret_cast<QueryCudaDevice>(dlsym(RTLD_DEFAULT, kQueryCudaDeviceSymbol));
    if (lib.create != nullptr && lib.query != nullptr) return;
    std::string candidates[3];
    if (const char* env = std::getenv("PAGEDLM_CUDA_LIBRARY"); env != nullptr && *env != '\0') {
      candidates[0] = env;  // an explicit choice: nothing else is tried
    } else {
      candidates[1] = directory_of_this_module() + kCudaLibraryName;
      candidates[2] = kCudaLibraryName;
    }
    for (const std::string& path : candidates) {
      if (path.empty()) continue;
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) {
        if (lib.error.empty()) lib.error = dlerror();
        continue;
      }
      lib.create = reinterpret_cast<CreateCudaBackend>(dlsym(handle, kCreateCudaBackendSymbol));
      lib.query = reinterpret_cast<QueryCudaDevice>(dlsym(handle, kQueryCudaDeviceSymbol));
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
