// GGML tensor element types pagedlm reads, their block geometry, and row dequantization.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace pagedlm {

// Values are the on-disk GGUF type ids.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
};

struct TensorTypeInfo {
  const char* name;
  size_t block_elements;  // elements per quantization block (1 for plain types)
  size_t block_bytes;     // bytes per block
};

// nullopt for a type id pagedlm does not support.
std::optional<TensorTypeInfo> tensor_type_info(uint32_t type_id);
const char* tensor_type_name(TensorType type);

// Q8_0: 32 int8 values sharing one f16 scale.
constexpr size_t kQ8BlockElements = 32;
struct BlockQ8_0 {
  uint16_t scale;  // f16
  int8_t values[kQ8BlockElements];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q4_0: 32 4-bit values (offset 8) sharing one f16 scale; byte j holds element j (low) and j+16 (high).
struct BlockQ4_0 {
  uint16_t scale;
  uint8_t nibbles[16];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_K: 256 values in 8 sub-blocks of 32, 6-bit sub-block scales and mins, f16 super-block scale and min.
constexpr size_t kQKElements = 256;
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t nibbles[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q6_K: 256 values in 16 sub-blocks of 16, 6 bits each (offset 32), int8 sub-block scales, one f16 scale.
// In each 128-value half, value l + 32k (l < 32, k < 4) keeps its low 4 bits in `low` byte l + 32(k % 2)
// (low nibble for k < 2, high for k >= 2) and its high 2 bits in `high` byte l, bits 2k and 2k + 1.
struct BlockQ6_K {
  uint8_t low[128];
  uint8_t high[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Converts `count` elements starting at `row` (which must start on a block boundary) to float.
void dequantize_row(TensorType type, const void* row, float* out, size_t count);

// Bytes taken by `count` elements of `type` (count a multiple of the block size).
size_t tensor_row_bytes(TensorType type, size_t count);

}  // namespace pagedlm
