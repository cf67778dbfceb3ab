# Cross build for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu; the binaries run under qemu-user
# (Debian's qemu-user-static), which CMake and CTest call through CMAKE_CROSSCOMPILING_EMULATOR. QEMU_CPU
# picks the CPU model qemu emulates (.ci/arm64 runs the suite with and without the dot-product extension).
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#     -DPAGEDLM_GTEST_SOURCE_DIR=/usr/src/googletest -DPAGEDLM_CUDA=OFF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# nlohmann/json is header-only and architecture-independent: the host's package serves the target.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L /usr/aarch64-linux-gnu)
