#include "common/dynamic_library.h"

#include "common/windows_api.h"

#include "common/platform.h"

namespace pagedlm {

namespace {

HMODULE module_containing(const void* address) {
  HMODULE module = nullptr;
  const DWORD flags = GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT;
  return GetModuleHandleExW(flags, static_cast<LPCWSTR>(address), &module) ? module : nullptr;
}

}  // namespace

Result<DynamicLibrary> DynamicLibrary::open(const std::string& path) {
  DynamicLibrary library;
  library.handle_ = LoadLibraryW(native_path(path).c_str());
  if (library.handle_ == nullptr) return Status(ErrorCode::kUnsupported, "cannot open '" + path + "': " + windows_error_message(GetLastError()));
  return library;
}

void* DynamicLibrary::symbol(const char* name) const {
  return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(handle_), name));
}

void* DynamicLibrary::process_symbol(const char* name) {
  // Windows has no process-wide symbol table: look in the program, then in the module holding this code
  // (the addon, when the engine is built into one).
  for (HMODULE module : {GetModuleHandleW(nullptr), module_containing(reinterpret_cast<const void*>(&DynamicLibrary::process_symbol))}) {
    if (module == nullptr) continue;
    if (FARPROC found = GetProcAddress(module, name)) return reinterpret_cast<void*>(found);
  }
  return nullptr;
}

std::string DynamicLibrary::directory_of(const void* address) {
  HMODULE module = module_containing(address);
  if (module == nullptr) return {};
  std::wstring path(MAX_PATH, L'\0');
  for (;;) {
    const DWORD length = GetModuleFileNameW(module, path.data(), static_cast<DWORD>(path.size()));
    if (length == 0) return {};
    if (length < path.size()) {
      path.resize(length);
      break;
    }
    path.resize(path.size() * 2);  // truncated: a longer path than MAX_PATH
  }
  const size_t separator = path.find_last_of(L"\\/");
  return separator == std::wstring::npos ? std::string() : utf8_path(std::filesystem::path(path.substr(0, separator + 1)));
}

}  // namespace pagedlm
