#include "read_bandwidth.h"

#include <gtest/gtest.h>

#include <vector>

#include "read_sum.h"

namespace pagedlm::bench {
namespace {

TEST(ReadBandwidthProbe, MeasuresAgainAndAgainOverItsOneBuffer) {
  ReadBandwidthProbe probe(16u << 20, 2);
  for (int passes : {1, 4}) {
    const BandwidthSample sample = probe.measure(passes);
    EXPECT_EQ(sample.buffer_bytes, 16u << 20);
    EXPECT_EQ(sample.threads, 2);
    EXPECT_EQ(sample.passes, passes);
    EXPECT_GT(sample.median_bytes_per_second, 1e8);
    EXPECT_LE(sample.median_bytes_per_second, sample.bytes_per_second);
  }
}

TEST(ReadBandwidthProbe, ClampsThreadsAndPassesToOne) {
  const BandwidthSample sample = ReadBandwidthProbe(1u << 20, 0).measure(0);
  EXPECT_EQ(sample.threads, 1);
  EXPECT_EQ(sample.passes, 1);
  EXPECT_GT(sample.bytes_per_second, 0);
}

// Sums of ones are exact in float up to 2^24, so each loop's tail and accumulators are checked to the unit.
TEST(ReadSum, AddsEveryValueOnce) {
  for (size_t n : {0, 1, 15, 16, 17, 31, 32, 33, 63, 1000, 4099}) {
    const std::vector<float> ones(n, 1.0f);
    EXPECT_EQ(read_sum(ones.data(), n), static_cast<float>(n)) << n;
#if defined(PAGEDLM_HAVE_X86_READ_SUM)
    if (__builtin_cpu_supports("avx2")) EXPECT_EQ(read_sum_avx2(ones.data(), n), static_cast<float>(n)) << n;
#endif
  }
}

}  // namespace
}  // namespace pagedlm::bench
