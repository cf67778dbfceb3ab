// What the engine asks of the operating system besides mapped files (mapped_file.h), huge-page buffers
// (huge_page_buffer.h) and shared libraries (dynamic_library.h). Each of these has one implementation per
// system, <name>_posix.cpp (Linux, macOS) or <name>_windows.cpp, and CMakeLists.txt picks the set.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/status.h"

namespace pagedlm {

// The engine's paths are UTF-8 (they come from JavaScript strings). This is the path the C++ library and
// the system take for one: converted to UTF-16 on Windows, the same bytes elsewhere. Every file the engine
// opens by name goes through it.
std::filesystem::path native_path(const std::string& utf8);
// The reverse, for a path the system hands back.
std::string utf8_path(const std::filesystem::path& path);

// An environment variable's value in UTF-8 ("" when unset): for the ones that hold paths, which Windows'
// getenv would give in the system's code page.
std::string utf8_environment_variable(const char* name);

// Moves `from` onto `to`, replacing what is there: readers see the old file or the new one, never a part.
Status replace_file(const std::string& from, const std::string& to);

// Physical memory installed; 0 when the system does not say.
uint64_t physical_memory_bytes();
// Memory a process can allocate now without swapping, reclaimable page cache included (Linux's
// MemAvailable, Windows' available physical memory); 0 where the system does not say (macOS).
uint64_t available_memory_bytes();

}  // namespace pagedlm
