// Streaming-read bandwidth of this machine, measured the way decode reads weights: every thread sums its own
// slice of a buffer far larger than the caches. Decode tokens/s can be judged against it (its floor is the
// bytes read per token over this bandwidth).
#pragma once

#include <cstddef>

namespace pagedlm {

struct BandwidthSample {
  double bytes_per_second;         // the best of the passes
  double median_bytes_per_second;  // their median: on a shared machine, what a run of seconds typically gets
  size_t buffer_bytes;
  int threads;
  int passes;
};

// Allocates `buffer_bytes`, touches it, then reads it `passes` times with `threads` threads.
BandwidthSample measure_read_bandwidth(size_t buffer_bytes, int threads, int passes);

}  // namespace pagedlm
