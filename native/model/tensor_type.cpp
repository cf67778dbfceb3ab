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
    case TensorType::kQ4_1: return TensorTypeInfo{"Q4_1", 32, sizeof(BlockQ4_1)};
    case TensorType::kQ5_0: return TensorTypeInfo{"Q5_0", 32, sizeof(BlockQ5_0)};
    case TensorType::kQ5_1: return TensorTypeInfo{"Q5_1", 32, sizeof(BlockQ5_1)};
    case TensorType::kIQ4_NL: return TensorTypeInfo{"IQ4_NL", 32, sizeof(BlockIQ4_NL)};
    case TensorType::kQ2_K: return TensorTypeInfo{"Q2_K", kQKElements, sizeof(BlockQ2_K)};
    case TensorType::kQ3_K: return TensorTypeInfo{"Q3_K", kQKElements, sizeof(BlockQ3_K)};
    case TensorType::kQ4_K: return TensorTypeInfo{"Q4_K", kQKElements, sizeof(BlockQ4_K)};
    case TensorType::kQ5_K: return TensorTypeInfo{"Q5_K", kQKElements, sizeof(BlockQ5_K)};
    case TensorType::kQ6_K: return TensorTypeInfo{"Q6_K", kQKElements, sizeof(BlockQ6_K)};
    case TensorType::kIQ4_XS: return TensorTypeInfo{"IQ4_XS", kQKElements, sizeof(BlockIQ4_XS)};
  }
  return std::nullopt;
}

const char* ggml_type_name(uint32_t type_id) {
  if (const auto info = tensor_type_info(type_id)) return info->name;
  // GGML's ids for the types pagedlm reads no weights of (4 and 5 are retired and stay unnamed).
  switch (type_id) {
    case 9: return "Q8_1";
    case 15: return "Q8_K";
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 24: return "I8";
    case 25: return "I16";
    case 26: return "I32";
    case 27: return "I64";
    case 28: return "F64";
    case 29: return "IQ1_M";
    case 34: return "TQ1_0";
    case 35: return "TQ2_0";
    case 39: return "MXFP4";
    default: return nullptr;
  }
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

// The 5-bit Q5_0 / Q5_1 values of one block (before offset or scale), element order.
void q5_values(const uint8_t* nibbles, const uint8_t* high_bytes, int out[32]) {
  uint32_t high;
  std::memcpy(&high, high_bytes, 4);
  for (int j = 0; j < 16; ++j) {
    out[j] = (nibbles[j] & 0xF) | ((high >> j) & 1) << 4;
    out[j + 16] = (nibbles[j] >> 4) | ((high >> (j + 16)) & 1) << 4;
  }
}

void dequantize_q5_k(const BlockQ5_K* blocks, float* out, size_t count) {
  for (size_t b = 0; b < count / kQKElements; ++b) {
    const BlockQ5_K& block = blocks[b];
    const float d = fp16_to_float(block.d);
    const float dmin = fp16_to_float(block.dmin);
    float* y = out + b * kQKElements;
    for (int group = 0; group < 4; ++group) {
      const uint8_t* q = block.nibbles + 32 * group;
      for (int h = 0; h < 2; ++h) {
        uint8_t sc, m;
        q4_k_scale_min(2 * group + h, block.scales, &sc, &m);
        const int bit = 2 * group + h;
        for (int l = 0; l < 32; ++l) {
          const int low = h == 0 ? q[l] & 0xF : q[l] >> 4;
          *y++ = d * sc * (low | ((block.high[l] >> bit) & 1) << 4) - dmin * m;
        }
      }
    }
  }
}

int q3_k_scale(const uint8_t* packed, int s) {
  const int low = s < 8 ? packed[s] & 0xF : packed[s - 8] >> 4;
  const int top = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low | top << 4) - 32;
}

void dequantize_q3_k(const BlockQ3_K* blocks, float* out, size_t count) {
  for (size_t b = 0; b < count / kQKElements; ++b) {
    const BlockQ3_K& block = blocks[b];
    const float d = fp16_to_float(block.d);
    float steps[16];
    for (int s = 0; s < 16; ++s) steps[s] = d * q3_k_scale(block.scales, s);
    float* y = out + b * kQKElements;
    for (int half = 0; half < 2; ++half) {
      for (int k = 0; k < 4; ++k) {
        for (int l = 0; l < 32; ++l) {
          const int low = (block.low[32 * half + l] >> (2 * k)) & 3;
          const int third = (block.high[l] >> (4 * half + k)) & 1;
          *y++ = steps[8 * half + 2 * k + l / 16] * ((low | third << 2) - 4);
        }
      }
    }
  }
}

void dequantize_q2_k(const BlockQ2_K* blocks, float* out, size_t count) {
  for (size_t b = 0; b < count / kQKElements; ++b) {
    const BlockQ2_K& block = blocks[b];
    const float d = fp16_to_float(block.d);
    const float dmin = fp16_to_float(block.dmin);
    float* y = out + b * kQKElements;
    for (int half = 0; half < 2; ++half) {
      for (int k = 0; k < 4; ++k) {
        for (int l = 0; l < 32; ++l) {
          const uint8_t sc = block.scales[8 * half + 2 * k + l / 16];
          const int q = (block.values[32 * half + l] >> (2 * k)) & 3;
          *y++ = d * (sc & 0xF) * q - dmin * (sc >> 4);
        }
      }
    }
  }
}

void dequantize_iq4_xs(const BlockIQ4_XS* blocks, float* out, size_t count) {
  for (size_t b = 0; b < count / kQKElements; ++b) {
    const BlockIQ4_XS& block = blocks[b];
    const float d = fp16_to_float(block.d);
    for (int s = 0; s < 8; ++s) {
      const int scale = (((block.scales_low[s / 2] >> (4 * (s % 2))) & 0xF) | ((block.scales_high >> (2 * s)) & 3) << 4) - 32;
      const float step = d * scale;
      const uint8_t* q = block.nibbles + 16 * s;
      float* y = out + b * kQKElements + 32 * s;
      for (int j = 0; j < 16; ++j) {
        y[j] = step * kIq4Values[q[j] & 0xF];
        y[j + 16] = step * kIq4Values[q[j] >> 4];
      }
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
    case TensorType::kQ4_1: {
      const auto* blocks = static_cast<const BlockQ4_1*>(row);
      for (size_t b = 0; b < count / 32; ++b) {
        const float d = fp16_to_float(blocks[b].d), m = fp16_to_float(blocks[b].m);
        for (size_t j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * (blocks[b].nibbles[j] & 0xF) + m;
          out[b * 32 + j + 16] = d * (blocks[b].nibbles[j] >> 4) + m;
        }
      }
      return;
    }
    case TensorType::kQ5_0: {
      const auto* blocks = static_cast<const BlockQ5_0*>(row);
      int q[32];
      for (size_t b = 0; b < count / 32; ++b) {
        const float d = fp16_to_float(blocks[b].d);
        q5_values(blocks[b].nibbles, blocks[b].high, q);
        for (size_t j = 0; j < 32; ++j) out[b * 32 + j] = d * (q[j] - 16);
      }
      return;
    }
    case TensorType::kQ5_1: {
      const auto* blocks = static_cast<const BlockQ5_1*>(row);
      int q[32];
      for (size_t b = 0; b < count / 32; ++b) {
        const float d = fp16_to_float(blocks[b].d), m = fp16_to_float(blocks[b].m);
        q5_values(blocks[b].nibbles, blocks[b].high, q);
        for (size_t j = 0; j < 32; ++j) out[b * 32 + j] = d * q[j] + m;
      }
      return;
    }
    case TensorType::kIQ4_NL: {
      const auto* blocks = static_cast<const BlockIQ4_NL*>(row);
      for (size_t b = 0; b < count / 32; ++b) {
        const float d = fp16_to_float(blocks[b].d);
        for (size_t j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * kIq4Values[blocks[b].nibbles[j] & 0xF];
          out[b * 32 + j + 16] = d * kIq4Values[blocks[b].nibbles[j] >> 4];
        }
      }
      return;
    }
    case TensorType::kQ2_K:
      dequantize_q2_k(static_cast<const BlockQ2_K*>(row), out, count);
      return;
    case TensorType::kQ3_K:
      dequantize_q3_k(static_cast<const BlockQ3_K*>(row), out, count);
      return;
    case TensorType::kQ4_K:
      dequantize_q4_k(static_cast<const BlockQ4_K*>(row), out, count);
      return;
    case TensorType::kQ5_K:
      dequantize_q5_k(static_cast<const BlockQ5_K*>(row), out, count);
      return;
    case TensorType::kIQ4_XS:
      dequantize_iq4_xs(static_cast<const BlockIQ4_XS*>(row), out, count);
      return;
    case TensorType::kQ6_K:
      dequantize_q6_k(static_cast<const BlockQ6_K*>(row), out, count);
      return;
  }
}

}  // namespace pagedlm
