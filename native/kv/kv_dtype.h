// Element types of the KV pool and the conversions between them and float, one (token, head) row at a
// time. int8 and fp8 keep one float scale per row (per token and KV head), so a new token never forces
// earlier ones in its block to be requantized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pagedlm {

enum class KvDtype { kF32, kF16, kBF16, kInt8, kFp8E4M3 };

const char* kv_dtype_name(KvDtype dtype);
std::optional<KvDtype> parse_kv_dtype(std::string_view name);
size_t kv_dtype_bytes(KvDtype dtype);        // bytes per element
bool kv_dtype_has_scales(KvDtype dtype);     // one float scale per (token, head) row

// Converts `head_dim` floats into the pool's encoding at `dst`, writing the row's scale when the type has one.
void kv_store_row(KvDtype dtype, const float* src, uint8_t* dst, float* scale, int head_dim);
// Decodes one row back to floats.
void kv_load_row(KvDtype dtype, const uint8_t* src, const float* scale, float* dst, int head_dim);

// OCP fp8 e4m3 ("FN": no infinities, max 448), round to nearest even, saturating.
uint8_t float_to_fp8_e4m3(float value);
float fp8_e4m3_to_float(uint8_t bits);

}  // namespace pagedlm
