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
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
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
// The GGML name of any type id GGUF files use, supported or not ("IQ2_XXS", "Q8_K"); nullptr for an id
// GGML does not define. For the error that refuses a file.
const char* ggml_type_name(uint32_t type_id);

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

// Q4_1: 32 4-bit values q, each d * q + m; byte j holds element j (low nibble) and j + 16 (high).
struct BlockQ4_1 {
  uint16_t d;  // f16
  uint16_t m;  // f16
  uint8_t nibbles[16];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q5_0: 32 5-bit values (offset 16) sharing one f16 scale. The low 4 bits lie as Q4_0's nibbles; bit j of
// `high` (a little-endian uint32) is bit 4 of element j.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t high[4];
  uint8_t nibbles[16];
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1: Q5_0's bits without the offset, each value d * q + m.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t high[4];
  uint8_t nibbles[16];
};
static_assert(sizeof(BlockQ5_1) == 24);

// IQ4_NL: 32 4-bit indices into the non-linear kIq4Values, sharing one f16 scale; nibbles as Q4_0's.
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t nibbles[16];
};
static_assert(sizeof(BlockIQ4_NL) == 18);
// The 16 levels IQ4_NL and IQ4_XS indices select (denser near zero, where weights cluster).
inline constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Q4_K: 256 values in 8 sub-blocks of 32, 6-bit sub-block scales and mins, f16 super-block scale and min.
constexpr size_t kQKElements = 256;
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t nibbles[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K: Q4_K's scales and nibbles plus a fifth bit per value: bit 2g + h of `high` byte l is bit 4 of
// value 64g + 32h + l (the value whose low 4 bits are nibble h of `nibbles` byte 32g + l).
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t high[32];
  uint8_t nibbles[128];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q3_K: 256 3-bit values (offset 4) in 16 sub-blocks of 16, 6-bit sub-block scales (offset 32), one f16
// scale. In each 128-value half h, value l + 32k (l < 32, k < 4) keeps its low 2 bits in `low` byte
// 32h + l, bits 2k and 2k + 1, and its third bit in `high` byte l, bit 4h + k. Sub-block scale s keeps its
// low 4 bits in `scales` byte s % 8 (low nibble for s < 8, high for s >= 8) and its top 2 bits in byte
// 8 + s % 4, bits 2(s / 4) and 2(s / 4) + 1.
struct BlockQ3_K {
  uint8_t high[32];
  uint8_t low[64];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q2_K: 256 2-bit values in 16 sub-blocks of 16, each sub-block a 4-bit scale (low nibble of `scales`) and
// 4-bit min (high nibble) multiplying the f16 d and dmin: value d * sc * q - dmin * m. In each 128-value
// half h, value l + 32k (l < 32, k < 4) is bits 2k and 2k + 1 of `values` byte 32h + l.
struct BlockQ2_K {
  uint8_t scales[16];
  uint8_t values[64];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// IQ4_XS: 256 4-bit indices into kIq4Values in 8 sub-blocks of 32, 6-bit sub-block scales (offset 32) and
// one f16 scale. Sub-block s's scale keeps its low 4 bits in nibble s % 2 of `scales_low` byte s / 2 and
// its top 2 bits in bits 2s and 2s + 1 of `scales_high`; its 32 indices are laid as one Q4_0 block's
// nibbles in `nibbles` bytes 16s .. 16s + 15.
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_high;
  uint8_t scales_low[4];
  uint8_t nibbles[128];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

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
