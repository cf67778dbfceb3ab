#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build with CUDA required, run the tests on the device (the kernel, backend
# and engine tests, not skipped this time), then bench/kernels (decode and prefill attention) and, where
# PyTorch is installed, its SDPA on the same shapes; with node and node_modules present, the addon built with
# CUDA and bench/cuda.js. Every stage runs even when one fails, so one run on a lent machine reports
# everything, and one summary table closes the output.
# Usage: bash test/gpu/run.sh [--quick]
#   --quick: for a machine lent for minutes (about 8 on an H100, build included): builds for the local card
#   only, the device tests and the kernel bench's headline shapes, bench/cuda.js if the addon builds, no Jest.
set -uo pipefail
cd "$(dirname "$0")/../.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "no NVIDIA driver: nothing to run"; exit 1; }
build=build-gpu
logs="$build/run-logs"
jobs="$(nproc)"
mkdir -p "$logs"
failed=0
declare -A stage_status

# run_stage NAME COMMAND...: runs it with its output shown and kept in $logs/NAME.log, and records the outcome.
run_stage() {
  local name="$1"
  shift
  echo "== $name"
  "$@" 2>&1 | tee "$logs/$name.log"
  local rc="${PIPESTATUS[0]}"
  stage_status[$name]=$([ "$rc" = 0 ] && echo ok || echo "failed ($rc)")
  [ "$rc" = 0 ] || failed=1
}

architectures="${PAGEDLM_CUDA_ARCHITECTURES:-native}"
[ "$quick" = 1 ] && architectures=native
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
run_stage configure cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPAGEDLM_CUDA=ON -DPAGEDLM_BUILD_TESTS=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$architectures" "${launcher[@]}"
if [ "$quick" = 1 ]; then
  run_stage build cmake --build "$build" -j "$jobs" --target pagedlm_kernel_tests pagedlm_kernel_bench pagedlm_prefill_bench
else
  run_stage build cmake --build "$build" -j "$jobs"
fi

run_stage device-tests "$build/test/gpu/pagedlm_kernel_tests" --gtest_brief=1
if [ "$quick" = 0 ]; then
  run_stage all-tests ctest --test-dir "$build" --output-on-failure -j "$jobs"
fi
bench_args=()
[ "$quick" = 1 ] && bench_args=(--quick)
run_stage kernel-bench "$build/bench/kernels/pagedlm_kernel_bench" "${bench_args[@]}"
run_stage prefill-bench "$build/bench/kernels/pagedlm_prefill_bench" "${bench_args[@]}"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  run_stage sdpa-bench python3 bench/kernels/sdpa_bench.py "${bench_args[@]}"
  run_stage sdpa-prefill-bench python3 bench/kernels/sdpa_bench.py --prefill "${bench_args[@]}"
else
  echo "PyTorch with CUDA not found: SDPA comparison skipped"
fi
if command -v node >/dev/null && [ -d node_modules/cmake-js ]; then
  # --quick leaves the addon what is left of its minutes; a slower build reports a failed stage, not a hang.
  addon_limit=()
  [ "$quick" = 1 ] && addon_limit=(timeout 300)
  run_stage addon "${addon_limit[@]}" npx cmake-js compile --CDPAGEDLM_CUDA=ON --CDCMAKE_CUDA_ARCHITECTURES="$architectures"
  if [ "$quick" = 0 ]; then
    run_stage jest npx jest --runInBand
  fi
  if [ "${stage_status[addon]}" = ok ]; then
    run_stage cuda-bench env PAGEDLM_BENCH_QUICK="${PAGEDLM_BENCH_QUICK:-$quick}" PAGEDLM_KERNEL_BENCH="$build/bench/kernels/pagedlm_kernel_bench" node bench/cuda.js
  fi
else
  echo "node or node_modules missing: the addon, the JS tests and bench/cuda.js were skipped"
fi

# ---- the summary: what each stage did and the headline figures from its log ----
# Value of a "SUMMARY key value" line of the kernel bench, or "-".
bench_figure() { grep -h "^SUMMARY $1 " "$logs/kernel-bench.log" "$logs/prefill-bench.log" 2>/dev/null | awk '{print $3}' | tail -1 | grep . || echo -; }
# gtest's "[  PASSED  ] N tests" / "[  FAILED  ] N tests" counts.
gtest_count() { grep -h "^\[  $1  \] [0-9]* test" "$logs/device-tests.log" 2>/dev/null | awk '{print $4}' | tail -1 | grep . || echo 0; }
decode_rate() { grep -h "^| decode tok/s, batch $1 |" "$logs/cuda-bench.log" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $3); print $3}' | tail -1 | grep . || echo -; }
echo
echo "== summary ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d))"
echo "| figure | value |"
echo "|---|---|"
for stage in configure build device-tests all-tests kernel-bench prefill-bench sdpa-bench sdpa-prefill-bench addon jest cuda-bench; do
  [ -n "${stage_status[$stage]:-}" ] && echo "| stage $stage | ${stage_status[$stage]} |"
done
echo "| device tests passed / failed | $(gtest_count PASSED) / $(gtest_count FAILED) |"
echo "| copy bandwidth, GB/s (read + write) | $(bench_figure copy_gbs) |"
echo "| decode attention, batch 1 / 32K, fraction of copy bandwidth | $(bench_figure decode_b1_32k_copy_fraction) |"
echo "| decode attention, batch 64 / 8K, fraction of copy bandwidth | $(bench_figure decode_b64_8k_copy_fraction) |"
echo "| prefill attention, 1 x 8K causal (32/8 heads x 128, f16 pool), TFLOP/s | $(bench_figure prefill_1x8k_tflops) |"
echo "| bench/cuda.js decode tok/s, batch 1 / 8 / 32 | $(decode_rate 1) / $(decode_rate 8) / $(decode_rate 32) |"
exit "$failed"
