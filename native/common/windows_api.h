// <windows.h> for the *_windows.cpp files, without its min and max macros (they break std::min), and the
// text of a Win32 error.
#pragma once

#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <string>

namespace pagedlm {

// FormatMessage's description of `code` (GetLastError()), in UTF-8, with the code itself.
std::string windows_error_message(unsigned long code);

}  // namespace pagedlm
