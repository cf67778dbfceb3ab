#include "model/tensor_type.h"

#include <cstring>

#include "common/half.h"

namespace pagedlm {

std::optional<TensorTypeInfo> tensor_type_info(uint32_t type_id) {
  switch (static_cast<TensorType>(type_id)) {
    case TensorType::kF32: return TensorTypeInfo{"F32", 1, 4};
    case TensorType::kF16: return TensorTypeInfo{"F16", 1, 2};
    case TensorType::kBF16: return TensorTypeInfo{"BF16", 1, 2};
    case TensorType::kQ8_0: return TensorTypeInfo{"Q8_0", kQ8BlockElements, sizeof(BlockQ8_0)};
    case TensorType::kQ4_0: return TensorTypeInfo{"Q4_0", 32, sizeof(BlockQ4_0)};
    case TensorType::kQ4_K: return TensorTypeInfo{"Q4_K", kQKElements, sizeof(BlockQ4_K)};
    case TensorType::kQ6_K: return TensorTypeInfo{"Q6_K", kQKElements, sizeof(BlockQ6_K)};
  }
  return std::nullopt;
}

const char* tensor_type_name(TensorType type) {
  const auto info = tensor_type_info(static_cast<uint32_t>(type));
  return info ? info->name : "unknown";
}

size_t tensor_row_bytes(TensorType type, size_t count) {
  const auto info = *tensor_type_info(static_cast<uint32_t>(type));
  return count / info.block_elements * info.block_bytes;
}

namespace {

// Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes.
void q4_k_scale_min(int sub_block, const uint8_t* packed, uint8_t* scale, uint8_t* min) {
  if (sub_block < 4) {
    *scale = packed[sub_block] & 63;
    *min = packed[sub_block + 4] & 63;
  } else {
    *scale = (packed[sub_block + 4] & 0xF) | ((packed[sub_block - 4] >> 6) << 4);
    *min = (packed[sub_block + 4] >> 4) | ((packed[sub_block] >> 6) << 4);
  }
}

void dequantize_q4_k(const BlockQ4_K* blocks, float* out, size_t count) {
  for (size_t b = 0; b < count / kQKElements; ++b) {
    const BlockQ4_K& block = blocks[b];
    const float d = fp16_to_float(block.d);
    const float dmin = fp16_to_float(block.dmin);
    const uint8_t* q = block.nibbles;
    float* y = out + b * kQKElements;
    // Each 32-byte group of nibbles holds two sub-blocks: low nibbles first, then high nibbles.
    for (int group = 0; group < 4; ++group) {
      uint8_t sc_lo, m_lo, sc_hi, m_hi;
      q4_k_scale_min(2 * group, block.scales, &sc_lo, &m_lo);
      q4_k_scale_min(2 * group + 1, block.scales, &sc_hi, &m_hi);
      for (int l = 0; l < 32; ++l) *y++ = d * sc_lo * (q[l] & 0xF) - dmin * m_lo;
      for (int l = 0; l < 32; ++l) *y++ = d * sc_hi * (q[l] >> 4) - dmin * m_hi;
      q += 32;
    }
  }
}

void dequantize_q6_k(const BlockQ6_K* blocks, float* out, size_t count) {
  for (size_t b = 0; b < count / kQKElements; ++b) {
    const BlockQ6_K& block = blocks[b];
    const float d = fp16_to_float(block.d);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* low = block.low + 64 * half;
      const uint8_t* high = block.high + 32 * half;
      const int8_t* scales = block.scales + 8 * half;
      float* y = out + b * kQKElements + 128 * half;
      for (int l = 0; l < 32; ++l) {
        for (int k = 0; k < 4; ++k) {
          const uint8_t byte = low[l + 32 * (k % 2)];
          const int low_bits = k < 2 ? byte & 0xF : byte >> 4;
          const int q = (low_bits | (((high[l] >> (2 * k)) & 3) << 4)) - 32;
          y[l + 32 * k] = d * scales[l / 16 + 2 * k] * q;
        }
      }
    }
  }
}

}  // namespace

void dequantize_row(TensorType type, const void* row, float* out, size_t count) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, row, count * sizeof(float));
      return;
    case TensorType::kF16: {
      const auto* h = static_cast<const uint16_t*>(row);
      for (size_t i = 0; i < count; ++i) out[i] = fp16_to_float(h[i]);
      return;
    }
    case TensorType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(row);
      for (size_t i = 0; i < count; ++i) out[i] = bf16_to_float(h[i]);
      return;
    }
    case TensorType::kQ8_0: {
      const auto* blocks = static_cast<const BlockQ8_0*>(row);
      for (size_t b = 0; b < count / kQ8BlockElements; ++b) {
        const float scale = fp16_to_float(blocks[b].scale);
        for (size_t j = 0; j < kQ8BlockElements; ++j) out[b * kQ8BlockElements + j] = scale * blocks[b].values[j];
      }
      return;
    }
    case TensorType::kQ4_0: {
      const auto* blocks = static_cast<const BlockQ4_0*>(row);
      for (size_t b = 0; b < count / 32; ++b) {
        const float scale = fp16_to_float(blocks[b].scale);
        for (size_t j = 0; j < 16; ++j) {
          out[b * 32 + j] = scale * ((blocks[b].nibbles[j] & 0xF) - 8);
          out[b * 32 + j + 16] = scale * ((blocks[b].nibbles[j] >> 4) - 8);
        }
      }
      return;
    }
    case TensorType::kQ4_K:
      dequantize_q4_k(static_cast<const BlockQ4_K*>(row), out, count);
      return;
    case TensorType::kQ6_K:
      dequantize_q6_k(static_cast<const BlockQ6_K*>(row), out, count);
      return;
  }
}

}  // namespace pagedlm
