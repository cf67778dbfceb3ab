# Cross-compiles pagedlm for Windows x64 with Debian's mingw-w64 (package g++-mingw-w64-x86-64), as .ci/windows
# does: cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/x86_64-w64-mingw32.cmake ...
# The posix-thread variant of the compiler: the engine's std::thread and std::mutex need it (the win32 one
# has neither).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)

set(_pagedlm_mingw x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${_pagedlm_mingw}-gcc-posix)
set(CMAKE_CXX_COMPILER ${_pagedlm_mingw}-g++-posix)
set(CMAKE_RC_COMPILER ${_pagedlm_mingw}-windres)

# Libraries and headers come from the mingw sysroot only; programs (ninja, the host's tools) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${_pagedlm_mingw})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# The C++ runtime and winpthread linked in, so the executables need no mingw DLL beside them (under wine
# either).
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")

# gtest_discover_tests lists a test binary's tests by running it: after the build that needs Windows, so
# leave it to ctest, which runs them through CMAKE_CROSSCOMPILING_EMULATOR (e.g. wine) when set.
set(CMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE PRE_TEST)
