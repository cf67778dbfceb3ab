// Pooling of hidden rows into one embedding, chunk by chunk, as the runner feeds it.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/pooling.h"

namespace pagedlm {
namespace {

// 4 tokens x 3 wide: row t is (t + 1, 10 (t + 1), -(t + 1)).
std::vector<float> rows_of(int first, int count) {
  std::vector<float> rows;
  for (int t = first; t < first + count; ++t) {
    const float v = static_cast<float>(t + 1);
    rows.insert(rows.end(), {v, 10 * v, -v});
  }
  return rows;
}

std::vector<float> pooled_in_chunks(Pooling pooling, std::initializer_list<int> chunks, bool normalize = false) {
  EmbeddingPool pool(pooling, 3);
  int start = 0;
  int length = 0;
  for (int c : chunks) length += c;
  for (int c : chunks) {
    pool.add(rows_of(start, c).data(), start, c, length);
    start += c;
  }
  return pool.result(normalize);
}

TEST(Pooling, TypesFollowLlamaCppNumbering) {
  EXPECT_EQ(pooling_for_type(kPoolingTypeMean).value(), Pooling::kMean);
  EXPECT_EQ(pooling_for_type(kPoolingTypeCls).value(), Pooling::kCls);
  EXPECT_EQ(pooling_for_type(kPoolingTypeLast).value(), Pooling::kLast);
  EXPECT_EQ(pooling_for_type(kPoolingTypeNone).value(), Pooling::kMean);
  EXPECT_EQ(pooling_for_type(kPoolingTypeAbsent).value(), Pooling::kMean);
  const auto rank = pooling_for_type(kPoolingTypeRank);
  ASSERT_FALSE(rank.is_ok());
  EXPECT_EQ(rank.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(rank.status().message().find("rank"), std::string::npos);
  EXPECT_EQ(pooling_for_type(7).status().code(), ErrorCode::kUnsupported);
}

TEST(Pooling, NamesRoundTrip) {
  for (Pooling p : {Pooling::kMean, Pooling::kCls, Pooling::kLast}) EXPECT_EQ(pooling_from_name(pooling_name(p)), p);
  EXPECT_EQ(pooling_from_name("rank"), std::nullopt);
}

TEST(Pooling, MeanAveragesEveryRowWhateverTheChunks) {
  const std::vector<float> expected = {2.5f, 25.0f, -2.5f};
  EXPECT_EQ(pooled_in_chunks(Pooling::kMean, {4}), expected);
  EXPECT_EQ(pooled_in_chunks(Pooling::kMean, {1, 2, 1}), expected);
}

TEST(Pooling, ClsTakesTheFirstRowAndLastTheLast) {
  EXPECT_EQ(pooled_in_chunks(Pooling::kCls, {2, 2}), (std::vector<float>{1, 10, -1}));
  EXPECT_EQ(pooled_in_chunks(Pooling::kLast, {3, 1}), (std::vector<float>{4, 40, -4}));
  EXPECT_EQ(pooled_in_chunks(Pooling::kLast, {1, 3}), (std::vector<float>{4, 40, -4}));
}

TEST(Pooling, StartingOverFromPositionZeroDiscardsWhatWasPooled) {
  // A preempted sequence recomputes from its first token.
  EmbeddingPool pool(Pooling::kMean, 3);
  pool.add(rows_of(0, 2).data(), 0, 2, 4);
  pool.add(rows_of(0, 4).data(), 0, 4, 4);
  EXPECT_EQ(pool.result(false), (std::vector<float>{2.5f, 25.0f, -2.5f}));
}

TEST(Pooling, NormalizedVectorHasUnitLength) {
  const std::vector<float> v = pooled_in_chunks(Pooling::kLast, {4}, true);
  const double norm = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  EXPECT_NEAR(norm, 1.0, 1e-6);
  EXPECT_NEAR(v[1] / v[0], 10.0, 1e-5);
  std::vector<float> zero(3, 0.0f);
  l2_normalize(zero);
  EXPECT_EQ(zero, std::vector<float>(3, 0.0f));
}

}  // namespace
}  // namespace pagedlm
