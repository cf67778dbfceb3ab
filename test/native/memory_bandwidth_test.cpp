#include "backend/cpu/memory_bandwidth.h"

#include <gtest/gtest.h>

namespace pagedlm {
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

}  // namespace
}  // namespace pagedlm
