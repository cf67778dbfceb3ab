#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build with CUDA required, run every test (the kernel, backend and engine
# tests on the device this time, not skipped), then bench/kernels and, where PyTorch is installed, its SDPA
# on the same shapes; with node and node_modules present, the addon built with CUDA and bench/cuda.js.
# Usage: bash test/gpu/run.sh [--quick]   (--quick: fewer benchmark shapes)
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "no NVIDIA driver: nothing to run"; exit 1; }
build=build-gpu
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPAGEDLM_CUDA=ON -DPAGEDLM_BUILD_TESTS=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${PAGEDLM_CUDA_ARCHITECTURES:-native}"
cmake --build "$build" -j "$(nproc)"
# Every stage runs even when one fails, so one run on a lent machine reports everything.
failed=0
echo "== kernel tests on the device"
"$build/test/gpu/pagedlm_kernel_tests" --gtest_brief=1 || failed=1
echo "== every test"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" || failed=1
echo "== bench/kernels"
"$build/bench/kernels/pagedlm_kernel_bench" "$@" || failed=1
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  python3 bench/kernels/sdpa_bench.py "$@" || failed=1
else
  echo "PyTorch with CUDA not found: SDPA comparison skipped"
fi
if command -v node >/dev/null && [ -d node_modules/cmake-js ]; then
  echo "== the addon with CUDA: JS tests and bench/cuda.js"
  npx cmake-js compile --CDPAGEDLM_CUDA=ON --CDCMAKE_CUDA_ARCHITECTURES="${PAGEDLM_CUDA_ARCHITECTURES:-native}" || failed=1
  npx jest --runInBand || failed=1
  PAGEDLM_BENCH_QUICK="${PAGEDLM_BENCH_QUICK:-0}" node bench/cuda.js || failed=1
else
  echo "node or node_modules missing: the JS tests and bench/cuda.js were skipped"
fi
exit "$failed"
