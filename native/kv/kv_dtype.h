// Element types of the KV pool and the conversions between them and float. int8 and fp8 keep one float scale
// per (token, head) row, so a new token never forces earlier ones in its block to be requantized. int4 groups
// K and V differently (as KIVI does): K per channel within a block piece (one f16 scale per channel shared by
// the block's tokens), V per token in groups of kInt4ValueGroup values along head_dim (one f16 scale each).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pagedlm {

enum class KvDtype { kF32, kF16, kBF16, kInt8, kFp8E4M3, kInt4 };

// Which of K and V a row belongs to: int4 groups their scales differently.
enum class KvRole { kKey, kValue };

// The element types of K and of V (kvCache.kType / vType; kvCache.dtype sets both).
struct KvTypes {
  KvDtype k = KvDtype::kF16;
  KvDtype v = KvDtype::kF16;
  static KvTypes both(KvDtype dtype) { return {dtype, dtype}; }
  bool operator==(const KvTypes&) const = default;
};

// int4 V: values of one row that share a scale (the last group of a row narrower than this is partial).
constexpr int kInt4ValueGroup = 32;
// int4 codes c in [0, 15] stand for (c - 7.5) x scale: 16 levels symmetric about zero, the largest magnitude
// of the group exactly 7.5 scales.
constexpr float kInt4Levels = 7.5f;

const char* kv_dtype_name(KvDtype dtype);
std::optional<KvDtype> parse_kv_dtype(std::string_view name);
// The names as a list for messages: "f32, f16, bf16, int8, fp8 or int4".
const char* kv_dtype_choices();
bool kv_dtype_has_scales(KvDtype dtype);
// Bytes of one (token, head) row of `head_dim` elements (int4: two per byte).
size_t kv_row_bytes(KvDtype dtype, int head_dim);
// Scale bytes of one block piece (block_size rows of one KV head): int8/fp8 a float per row; int4 K an f16
// per channel, int4 V an f16 per group of each row; 0 for the float types.
size_t kv_piece_scale_bytes(KvDtype dtype, KvRole role, int head_dim, int block_size);

// Row `slot` of a block piece: `piece` holds the piece's rows (kv_row_bytes each) and `scales` its scale
// bytes. int4 K may rewrite the piece's earlier rows [0, slot) (its channel scales widen); slot 0 starts a
// fresh piece whatever the bytes held before.
void kv_store(KvDtype dtype, KvRole role, const float* src, uint8_t* piece, uint8_t* scales, int slot, int head_dim);
// Decodes rows [first, first + count) of a block piece into `dst` ([count][head_dim] floats).
void kv_load(KvDtype dtype, KvRole role, const uint8_t* piece, const uint8_t* scales, int first, int count, int head_dim, float* dst);

// The per-row types (every type but int4): converts `head_dim` floats into the pool's encoding at `dst`,
// writing the row's scale when the type has one, and back.
void kv_store_row(KvDtype dtype, const float* src, uint8_t* dst, float* scale, int head_dim);
void kv_load_row(KvDtype dtype, const uint8_t* src, const float* scale, float* dst, int head_dim);

// int4 V: one row in groups of kInt4ValueGroup, `scales` one f16 per group; and back.
void int4_store_value_row(const float* src, uint8_t* dst, uint16_t* scales, int head_dim);
void int4_load_value_row(const uint8_t* src, const uint16_t* scales, float* dst, int head_dim);
// int4 K: row `slot` of a piece whose channels share one f16 scale each (`scales`: [head_dim]).
void int4_store_key_row(const float* src, uint8_t* piece, uint16_t* scales, int slot, int head_dim);
void int4_load_key_rows(const uint8_t* piece, const uint16_t* scales, int first, int count, int head_dim, float* dst);
// The smallest f16 scale whose 7.5 steps reach `magnitude` (saturating at the largest finite f16).
uint16_t int4_scale_for(float magnitude);

// OCP fp8 e4m3 ("FN": no infinities, max 448), round to nearest even, saturating.
uint8_t float_to_fp8_e4m3(float value);
float fp8_e4m3_to_float(uint8_t bits);

}  // namespace pagedlm
