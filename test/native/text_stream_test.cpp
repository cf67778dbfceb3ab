#include <gtest/gtest.h>

#include "engine/text_stream.h"

namespace pagedlm {
namespace {

TEST(TextStream, HoldsBackIncompleteUtf8) {
  TextStream s({});
  bool stopped;
  const std::string snowman = "\xE2\x98\x83";
  EXPECT_EQ(s.push("a" + snowman.substr(0, 1), &stopped), "a");
  EXPECT_EQ(s.push(snowman.substr(1, 1), &stopped), "");
  EXPECT_EQ(s.push(snowman.substr(2), &stopped), snowman);
  EXPECT_FALSE(stopped);
  EXPECT_EQ(s.push("\xF0\x9F", &stopped), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD\xEF\xBF\xBD");  // an unfinished character becomes U+FFFD at the end
}

TEST(TextStream, StopStringsSpanningTokens) {
  TextStream s({"END", "\n\n"});
  bool stopped;
  EXPECT_EQ(s.push("hello E", &stopped), "hello ");  // "E" may start "END"
  EXPECT_EQ(s.push("N", &stopped), "");
  EXPECT_EQ(s.push("Dless", &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(TextStream, ReleasesAFalseStart) {
  TextStream s({"END"});
  bool stopped;
  EXPECT_EQ(s.push("EN", &stopped), "");
  EXPECT_EQ(s.push("Xy", &stopped), "ENXy");
  EXPECT_FALSE(stopped);
}

TEST(TextStream, EarliestStopWins) {
  TextStream s({"b", "a"});
  bool stopped;
  EXPECT_EQ(s.push("xxabyy", &stopped), "xx");
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace pagedlm
