// The KV pool's memory: zeroed, 2 MiB-aligned, writable to its last byte, and handed over on move.
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

#include "common/huge_page_buffer.h"

namespace pagedlm {
namespace {

TEST(HugePageBuffer, IsZeroedAlignedAndWritableToTheEnd) {
  const size_t bytes = (size_t{5} << 20) + 123;  // not a whole number of huge pages
  HugePageBuffer buffer(bytes);
  ASSERT_NE(buffer.data(), nullptr);
  EXPECT_EQ(buffer.size(), bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % (size_t{2} << 20), 0u);
  for (size_t i = 0; i < bytes; i += 4096) ASSERT_EQ(buffer.data()[i], 0) << i;
  EXPECT_EQ(buffer.data()[bytes - 1], 0);
  buffer.data()[0] = 1;
  buffer.data()[bytes - 1] = 2;
  EXPECT_EQ(buffer.data()[bytes - 1], 2);
}

TEST(HugePageBuffer, MovesItsMemory) {
  HugePageBuffer a(4096);
  a.data()[7] = 42;
  uint8_t* const memory = a.data();
  HugePageBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data(), memory);
  EXPECT_EQ(b.data()[7], 42);
  HugePageBuffer c;
  c = std::move(b);
  EXPECT_EQ(c.data(), memory);
  EXPECT_EQ(c.size(), 4096u);
  EXPECT_EQ(HugePageBuffer(0).data(), nullptr);
}

}  // namespace
}  // namespace pagedlm
