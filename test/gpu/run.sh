#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build with CUDA required, then run every test, GPU tests included.
# Prints a summary line per suite. Usage: bash test/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "no NVIDIA driver: nothing to run"; exit 1; }
build=build-gpu
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPAGEDLM_CUDA=ON -DPAGEDLM_BUILD_TESTS=ON
cmake --build "$build" -j "$(nproc)"
"$build/kernels/pagedlm_kernel_tests" --gtest_brief=1
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
