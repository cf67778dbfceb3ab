#include "read_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "read_sum.h"

namespace pagedlm::bench {

namespace {

size_t floats_for(size_t buffer_bytes) { return std::max<size_t>(buffer_bytes / sizeof(float), 1024); }

}  // namespace

// On the pages the engine keeps its packed weights and KV pool in (2 MiB where the kernel has them), so the
// floor is the best read this memory gives, not one slowed by 4 KiB TLB misses. Written once so every page
// is resident before timing.
ReadBandwidthProbe::ReadBandwidthProbe(size_t buffer_bytes, int threads)
    : storage_(floats_for(buffer_bytes) * sizeof(float)),
      count_(floats_for(buffer_bytes)),
      threads_(std::max(1, threads)),
      pool_(std::make_unique<ThreadPool>(static_cast<size_t>(threads_))) {
  float* buffer = reinterpret_cast<float*>(storage_.data());
  std::fill(buffer, buffer + count_, 1.0f);
}

ReadBandwidthProbe::~ReadBandwidthProbe() = default;

BandwidthSample ReadBandwidthProbe::measure(int passes) {
  passes = std::max(1, passes);
  const float* buffer = reinterpret_cast<const float*>(storage_.data());
  const size_t slice = (count_ + threads_ - 1) / threads_;
  std::vector<float> sums(threads_);  // kept, so that the reads cannot be optimized away
  std::vector<double> rates;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    pool_->parallel_for(static_cast<size_t>(threads_), [&](size_t task, size_t) {
      const size_t begin = std::min(count_, task * slice);
      sums[task] += read_sum(buffer + begin, std::min(count_, begin + slice) - begin);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(static_cast<double>(count_ * sizeof(float)) / seconds);
  }
  volatile float sink = 0;
  for (float s : sums) sink = sink + s;
  std::sort(rates.begin(), rates.end());
  const size_t middle = rates.size() / 2;
  const double median = rates.size() % 2 == 1 ? rates[middle] : (rates[middle - 1] + rates[middle]) / 2;
  return BandwidthSample{rates.back(), median, count_ * sizeof(float), threads_, passes};
}

}  // namespace pagedlm::bench
