#include "common/dynamic_library.h"

#include <dlfcn.h>

namespace pagedlm {

Result<DynamicLibrary> DynamicLibrary::open(const std::string& path) {
  DynamicLibrary library;
  library.handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library.handle_ == nullptr) {
    const char* error = dlerror();
    return Status(ErrorCode::kUnsupported, error != nullptr ? error : "cannot open '" + path + "'");
  }
  return library;
}

void* DynamicLibrary::symbol(const char* name) const { return dlsym(handle_, name); }

void* DynamicLibrary::process_symbol(const char* name) { return dlsym(RTLD_DEFAULT, name); }

std::string DynamicLibrary::directory_of(const void* address) {
  Dl_info info{};
  if (dladdr(address, &info) == 0 || info.dli_fname == nullptr) return {};
  const std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

}  // namespace pagedlm
