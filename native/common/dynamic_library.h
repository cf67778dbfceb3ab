// A shared library (.so on Linux, .dylib on macOS, .dll on Windows) opened by path, and its symbols. Nothing
// closes it: code it created (a backend, its threads) may run until the process exits.
#pragma once

#include <string>

#include "common/status.h"

namespace pagedlm {

class DynamicLibrary {
 public:
  // `path` is UTF-8; a bare file name is searched for the way the system searches for libraries.
  static Result<DynamicLibrary> open(const std::string& path);
  // The address of `name` in this library; nullptr when it has none.
  void* symbol(const char* name) const;

  // `name` where the process already holds it, in the program or a library loaded with it; nullptr otherwise.
  static void* process_symbol(const char* name);
  // The directory, ending in a separator, of the program or library whose code holds `address`; empty when
  // the system does not say.
  static std::string directory_of(const void* address);

 private:
  void* handle_ = nullptr;
};

}  // namespace pagedlm
