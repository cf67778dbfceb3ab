#include <gtest/gtest.h>

#include <cmath>

#include "common/half.h"

namespace pagedlm {
namespace {

TEST(Half, EveryF16RoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_fp16(f), h) << std::hex << h;
  }
}

TEST(Half, RoundsToNearestEven) {
  EXPECT_EQ(fp16_to_float(float_to_fp16(1.0f + 1.0f / 2048)), 1.0f);            // halfway, even below
  EXPECT_EQ(fp16_to_float(float_to_fp16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);  // halfway, even above
  EXPECT_EQ(fp16_to_float(float_to_fp16(1e6f)), INFINITY);
  EXPECT_EQ(fp16_to_float(float_to_fp16(6e-8f)), 5.9604644775390625e-08f);      // smallest subnormal
  EXPECT_EQ(float_to_fp16(1e-9f), 0);
}

TEST(Half, Bf16KeepsTheTopSixteenBits) {
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(float_to_bf16(1.0f + 1.0f / 256), float_to_bf16(1.0f));  // halfway rounds to even
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

}  // namespace
}  // namespace pagedlm
