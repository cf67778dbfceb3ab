// Streaming-read bandwidth of this machine, measured the way decode reads weights: every thread sums its own
// slice of a buffer far larger than the caches. Decode tokens/s can be judged against it (its floor is the
// bytes read per token over this bandwidth). For the benchmarks only: the engine never measures it.
#pragma once

#include <cstddef>
#include <memory>

#include "common/huge_page_buffer.h"

namespace pagedlm {

class ThreadPool;

namespace bench {

struct BandwidthSample {
  double bytes_per_second;         // the best of the passes
  double median_bytes_per_second;  // their median: on a shared machine, what a run of seconds typically gets
  size_t buffer_bytes;
  int threads;
  int passes;
};

// A buffer, touched once, and the threads that read it: measurements taken again and again (around decode
// runs) neither allocate nor free. Freeing hundreds of MiB is not free on a virtual machine whose balloon
// reports free pages to the host: the guest kernel does that work seconds later, on the cores a decode is
// using, and the next allocation faults every page in again.
class ReadBandwidthProbe {
 public:
  // Throws std::bad_alloc when the buffer cannot be had.
  ReadBandwidthProbe(size_t buffer_bytes, int threads);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // Reads the whole buffer `passes` times. One caller at a time.
  BandwidthSample measure(int passes);

 private:
  HugePageBuffer storage_;
  size_t count_;  // floats in the buffer
  int threads_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace bench
}  // namespace pagedlm
