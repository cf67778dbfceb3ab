# The CUDA half of pagedlm, in one place: its sources, whether it is built, and libpagedlm_kernels.
#
# kernels/*.cu and the CUDA backend over them (native/backend/cuda/cuda_backend.h and its .cpp files) form
# libpagedlm_kernels, a shared library that the engine opens with dlopen (native/backend/cuda/cuda_loader.cpp)
# only when a GPU is asked for, so the addon loads on machines without CUDA. What crosses that line and why:
# the top of native/backend/cuda/cuda_entry.h, and "The CUDA seam" in docs/backends.md. test/gpu compiles the
# same sources a second time, as C++ against a CPU emulator of the CUDA thread model, whether or not nvcc is
# present.

# ---- sources (test/gpu reads these lists too) -----------------------------------------------------------
set(PAGEDLM_CUDA_KERNEL_NAMES
  rms_norm rope swiglu elementwise embedding q8_0 matvec kv_append decode_attention prefill_attention sampling)
list(TRANSFORM PAGEDLM_CUDA_KERNEL_NAMES REPLACE "(.+)" "${PROJECT_SOURCE_DIR}/kernels/\\1.cu"
     OUTPUT_VARIABLE PAGEDLM_CUDA_KERNEL_SOURCES)
set(PAGEDLM_CUDA_BACKEND_SOURCES
  ${PROJECT_SOURCE_DIR}/native/backend/cuda/cuda_backend.cpp
  ${PROJECT_SOURCE_DIR}/native/backend/cuda/cuda_memory.cpp
  ${PROJECT_SOURCE_DIR}/native/backend/cuda/cuda_step.cpp
  ${PROJECT_SOURCE_DIR}/native/backend/cuda/cuda_device.cpp)
# The engine's side of the seam: no CUDA headers, so it is built into the engine whether or not CUDA is.
set(PAGEDLM_CUDA_LOADER_SOURCES ${PROJECT_SOURCE_DIR}/native/backend/cuda/cuda_loader.cpp)
# The file name the loader opens, as this platform names the library below: libpagedlm_kernels.so (Linux),
# .dylib (macOS), libpagedlm_kernels.dll (mingw) or pagedlm_kernels.dll (MSVC).
set(PAGEDLM_CUDA_LIBRARY_FILE_NAME "${CMAKE_SHARED_LIBRARY_PREFIX}pagedlm_kernels${CMAKE_SHARED_LIBRARY_SUFFIX}")
set_property(SOURCE ${PAGEDLM_CUDA_LOADER_SOURCES} APPEND PROPERTY
  COMPILE_DEFINITIONS "PAGEDLM_CUDA_LIBRARY_FILE_NAME=\"${PAGEDLM_CUDA_LIBRARY_FILE_NAME}\"")

# ---- PAGEDLM_CUDA=AUTO|ON|OFF -> PAGEDLM_CUDA_ENABLED ---------------------------------------------------
# AUTO enables CUDA when a CUDA compiler and cuBLAS are found; ON fails the configure step without them.
set(PAGEDLM_CUDA_ENABLED OFF)
string(TOUPPER "${PAGEDLM_CUDA}" _pagedlm_cuda)
if(NOT _pagedlm_cuda MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "PAGEDLM_CUDA must be AUTO, ON or OFF (got '${PAGEDLM_CUDA}')")
endif()
if(NOT _pagedlm_cuda STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # The CUDA backend also needs the toolkit's cuBLAS.
    find_package(CUDAToolkit QUIET)
    if(TARGET CUDA::cublas)
      set(PAGEDLM_CUDA_ENABLED ON)
    elseif(_pagedlm_cuda STREQUAL "ON")
      message(FATAL_ERROR "PAGEDLM_CUDA=ON but the CUDA Toolkit's cuBLAS was not found")
    else()
      message(STATUS "pagedlm: nvcc found but not cuBLAS: building without CUDA")
    endif()
  elseif(_pagedlm_cuda STREQUAL "ON")
    message(FATAL_ERROR "PAGEDLM_CUDA=ON but no CUDA compiler was found: install the CUDA Toolkit or set CUDACXX")
  endif()
endif()
message(STATUS "pagedlm: CUDA kernels ${PAGEDLM_CUDA_ENABLED} (PAGEDLM_CUDA=${PAGEDLM_CUDA})")
if(NOT PAGEDLM_CUDA_ENABLED)
  return()
endif()

# ---- libpagedlm_kernels ---------------------------------------------------------------------------------
# Set before enable_language(CUDA), which otherwise fills in the compiler's own default architecture.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;90-virtual" CACHE STRING "GPU architectures of libpagedlm_kernels")
endif()
enable_language(CUDA)
# CMake 3.25 predates nvcc 13 and does not know its C++20 flag.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
find_package(CUDAToolkit REQUIRED)

add_library(pagedlm_kernels SHARED ${PAGEDLM_CUDA_KERNEL_SOURCES} ${PAGEDLM_CUDA_BACKEND_SOURCES})
target_include_directories(pagedlm_kernels PUBLIC ${PROJECT_SOURCE_DIR}/kernels ${PROJECT_SOURCE_DIR}/native)
set_target_properties(pagedlm_kernels PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
target_compile_options(pagedlm_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr --threads=0>)
# The static runtime: opening the library needs the driver (libcuda) and cuBLAS, not a matching libcudart.
# Of the engine it links pagedlm_core alone (the seam's vocabulary, see cuda_entry.h); --no-undefined turns
# a reach past it into a link error instead of a dlopen failure on a user's machine.
target_link_libraries(pagedlm_kernels PUBLIC CUDA::cudart_static PRIVATE CUDA::cublas pagedlm_core)
# The version script exports the entry point and the launchers, nothing else: the library's copies of
# pagedlm_core, the CUDA runtime and C++ templates stay private, so neither side interposes on the other.
# A Windows DLL exports only what cuda_entry.h marks, and links with no undefined symbol anyway.
if(NOT WIN32)
  set(_pagedlm_kernels_exports ${PROJECT_SOURCE_DIR}/native/backend/cuda/exports.map)
  target_link_options(pagedlm_kernels PRIVATE "LINKER:--version-script=${_pagedlm_kernels_exports}" "LINKER:--no-undefined")
  set_target_properties(pagedlm_kernels PROPERTIES LINK_DEPENDS ${_pagedlm_kernels_exports})
endif()

if(PAGEDLM_BUILD_TESTS AND NOT CMAKE_JS_VERSION)
  add_subdirectory(${PROJECT_SOURCE_DIR}/bench/kernels ${PROJECT_BINARY_DIR}/bench/kernels)
endif()
