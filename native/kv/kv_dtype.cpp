#include "kv/kv_dtype.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/half.h"

namespace pagedlm {

namespace {

constexpr float kFp8Max = 448.0f;
constexpr float kInt8Max = 127.0f;

struct Fp8Table {
  float values[256];
  Fp8Table() {
    for (int b = 0; b < 256; ++b) {
      const int sign = b >> 7, exponent = (b >> 3) & 0xF, mantissa = b & 7;
      float v;
      if (exponent == 0xF && mantissa == 7) {
        v = NAN;
      } else if (exponent == 0) {
        v = std::ldexp(static_cast<float>(mantissa) / 8.0f, -6);
      } else {
        v = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
      }
      values[b] = sign ? -v : v;
    }
  }
};
const Fp8Table kFp8;

float row_abs_max(const float* x, int n) {
  float m = 0;
  for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

size_t int4_value_groups(int head_dim) { return static_cast<size_t>((head_dim + kInt4ValueGroup - 1) / kInt4ValueGroup); }

uint8_t int4_code(float x, float inverse_scale) {
  return static_cast<uint8_t>(std::clamp(std::lrint(x * inverse_scale + kInt4Levels), 0L, 15L));
}
float int4_value(uint8_t code, float scale) { return (static_cast<float>(code) - kInt4Levels) * scale; }
float inverse_of(float scale) { return scale > 0 ? 1.0f / scale : 0.0f; }

uint8_t get_nibble(const uint8_t* row, int i) { return (row[i / 2] >> (4 * (i & 1))) & 0xF; }
void set_nibble(uint8_t* row, int i, uint8_t code) {
  const int shift = 4 * (i & 1);
  row[i / 2] = static_cast<uint8_t>((row[i / 2] & ~(0xF << shift)) | (code << shift));
}

}  // namespace

const char* kv_dtype_name(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32: return "f32";
    case KvDtype::kF16: return "f16";
    case KvDtype::kBF16: return "bf16";
    case KvDtype::kInt8: return "int8";
    case KvDtype::kFp8E4M3: return "fp8";
    case KvDtype::kInt4: return "int4";
  }
  return "f16";
}

std::optional<KvDtype> parse_kv_dtype(std::string_view name) {
  for (KvDtype d : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3, KvDtype::kInt4}) {
    if (name == kv_dtype_name(d)) return d;
  }
  return std::nullopt;
}

const char* kv_dtype_choices() { return "f32, f16, bf16, int8, fp8 or int4"; }

bool kv_dtype_has_scales(KvDtype dtype) { return dtype == KvDtype::kInt8 || dtype == KvDtype::kFp8E4M3 || dtype == KvDtype::kInt4; }

size_t kv_row_bytes(KvDtype dtype, int head_dim) {
  const auto n = static_cast<size_t>(head_dim);
  switch (dtype) {
    case KvDtype::kF32: return 4 * n;
    case KvDtype::kF16:
    case KvDtype::kBF16: return 2 * n;
    case KvDtype::kInt8:
    case KvDtype::kFp8E4M3: return n;
    case KvDtype::kInt4: return (n + 1) / 2;
  }
  return 2 * n;
}

size_t kv_piece_scale_bytes(KvDtype dtype, KvRole role, int head_dim, int block_size) {
  switch (dtype) {
    case KvDtype::kInt8:
    case KvDtype::kFp8E4M3: return static_cast<size_t>(block_size) * sizeof(float);
    case KvDtype::kInt4:
      if (role == KvRole::kKey) return static_cast<size_t>(head_dim) * sizeof(uint16_t);
      return static_cast<size_t>(block_size) * int4_value_groups(head_dim) * sizeof(uint16_t);
    default: return 0;
  }
}

uint8_t float_to_fp8_e4m3(float value) {
  if (std::isnan(value)) return 0x7F;
  const uint8_t sign = std::signbit(value) ? 0x80 : 0;
  const float a = std::min(std::fabs(value), kFp8Max);
  // The table is monotonic over the 127 finite magnitudes: pick the nearest, ties to the even code.
  int lo = 0, hi = 126;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (kFp8.values[mid] <= a) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  int best = lo;
  if (lo < 126) {
    const float below = a - kFp8.values[lo], above = kFp8.values[lo + 1] - a;
    if (above < below || (above == below && (lo & 1))) best = lo + 1;
  }
  return static_cast<uint8_t>(sign | best);
}

float fp8_e4m3_to_float(uint8_t bits) { return kFp8.values[bits]; }

void kv_store_row(KvDtype dtype, const float* src, uint8_t* dst, float* scale, int n) {
  switch (dtype) {
    case KvDtype::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case KvDtype::kF16:
    case KvDtype::kBF16: {
      auto* out = reinterpret_cast<uint16_t*>(dst);
      for (int i = 0; i < n; ++i) out[i] = dtype == KvDtype::kF16 ? float_to_fp16(src[i]) : float_to_bf16(src[i]);
      return;
    }
    case KvDtype::kInt8: {
      const float s = row_abs_max(src, n) / kInt8Max;
      *scale = s;
      const float inv = s > 0 ? 1.0f / s : 0.0f;
      auto* out = reinterpret_cast<int8_t*>(dst);
      for (int i = 0; i < n; ++i) out[i] = static_cast<int8_t>(std::lrint(std::clamp(src[i] * inv, -kInt8Max, kInt8Max)));
      return;
    }
    case KvDtype::kFp8E4M3: {
      const float s = row_abs_max(src, n) / kFp8Max;
      *scale = s;
      const float inv = s > 0 ? 1.0f / s : 0.0f;
      for (int i = 0; i < n; ++i) dst[i] = float_to_fp8_e4m3(src[i] * inv);
      return;
    }
    case KvDtype::kInt4:
      break;
  }
  // int4 rows have group scales of their own (kv_store): a caller that gets here is wrong.
  std::abort();
}

void kv_load_row(KvDtype dtype, const uint8_t* src, const float* scale, float* dst, int n) {
  switch (dtype) {
    case KvDtype::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case KvDtype::kF16:
    case KvDtype::kBF16: {
      const auto* in = reinterpret_cast<const uint16_t*>(src);
      for (int i = 0; i < n; ++i) dst[i] = dtype == KvDtype::kF16 ? fp16_to_float(in[i]) : bf16_to_float(in[i]);
      return;
    }
    case KvDtype::kInt8: {
      const auto* in = reinterpret_cast<const int8_t*>(src);
      for (int i = 0; i < n; ++i) dst[i] = *scale * in[i];
      return;
    }
    case KvDtype::kFp8E4M3:
      for (int i = 0; i < n; ++i) dst[i] = *scale * kFp8.values[src[i]];
      return;
    case KvDtype::kInt4:
      break;
  }
  std::abort();
}

uint16_t int4_scale_for(float magnitude) {
  constexpr uint16_t kLargestHalf = 0x7BFF;
  if (!(magnitude < 65504.0f * kInt4Levels)) return kLargestHalf;  // also NaN
  uint16_t h = float_to_fp16(magnitude / kInt4Levels);
  // Rounded down, the group's largest value would clip: take the next f16 up.
  if (fp16_to_float(h) * kInt4Levels < magnitude && h < kLargestHalf) ++h;
  return h;
}

void int4_store_value_row(const float* src, uint8_t* dst, uint16_t* scales, int n) {
  for (int first = 0, g = 0; first < n; first += kInt4ValueGroup, ++g) {
    const int end = std::min(n, first + kInt4ValueGroup);
    scales[g] = int4_scale_for(row_abs_max(src + first, end - first));
    const float inverse = inverse_of(fp16_to_float(scales[g]));
    for (int i = first; i < end; ++i) set_nibble(dst, i, int4_code(src[i], inverse));
  }
}

void int4_load_value_row(const uint8_t* src, const uint16_t* scales, float* dst, int n) {
  for (int i = 0; i < n; ++i) dst[i] = int4_value(get_nibble(src, i), fp16_to_float(scales[i / kInt4ValueGroup]));
}

// A channel's scale covers every token of the block piece written so far, so a token that widens the
// channel's range requantizes that channel of the earlier tokens (decoded under the old scale, encoded under
// the new). The piece then depends only on its tokens' values in the order they were written (slot 0 first),
// never on which step wrote them: a block filled by a prefill chunk, by decode steps, or loaded from a prefix
// hit holds the same bits. Keeping the partial block's tokens in full precision until it fills (KIVI's
// residual) would need memory outside the pool's formula and a copy that every block move has to follow.
// Rows after `slot` are not looked at, yet their ranges stay in the scales: a slot written again (a rejected
// speculative guess, a copied block's first rows continued) would differ from a cold run, so an int4-K pool
// shares whole blocks only and refuses speculation (KvLayout::rows_independent).
void int4_store_key_row(const float* src, uint8_t* piece, uint16_t* scales, int slot, int n) {
  const size_t row_bytes = kv_row_bytes(KvDtype::kInt4, n);
  uint8_t* row = piece + static_cast<size_t>(slot) * row_bytes;
  for (int c = 0; c < n; ++c) {
    const float old_scale = slot == 0 ? 0.0f : fp16_to_float(scales[c]);
    const float magnitude = std::fabs(src[c]);
    if (slot == 0 || magnitude > old_scale * kInt4Levels) {
      scales[c] = int4_scale_for(magnitude);
      const float new_scale = fp16_to_float(scales[c]);
      if (new_scale != old_scale) {
        const float inverse = inverse_of(new_scale);
        for (int r = 0; r < slot; ++r) {
          uint8_t* earlier = piece + static_cast<size_t>(r) * row_bytes;
          set_nibble(earlier, c, int4_code(int4_value(get_nibble(earlier, c), old_scale), inverse));
        }
      }
    }
    set_nibble(row, c, int4_code(src[c], inverse_of(fp16_to_float(scales[c]))));
  }
}

void int4_load_key_rows(const uint8_t* piece, const uint16_t* scales, int first, int count, int n, float* dst) {
  const size_t row_bytes = kv_row_bytes(KvDtype::kInt4, n);
  for (int c = 0; c < n; ++c) {
    const float scale = fp16_to_float(scales[c]);
    for (int r = 0; r < count; ++r) dst[static_cast<size_t>(r) * n + c] = int4_value(get_nibble(piece + (first + r) * row_bytes, c), scale);
  }
}

void kv_store(KvDtype dtype, KvRole role, const float* src, uint8_t* piece, uint8_t* scales, int slot, int n) {
  if (dtype == KvDtype::kInt4) {
    if (role == KvRole::kKey) return int4_store_key_row(src, piece, reinterpret_cast<uint16_t*>(scales), slot, n);
    return int4_store_value_row(src, piece + static_cast<size_t>(slot) * kv_row_bytes(dtype, n),
                                reinterpret_cast<uint16_t*>(scales) + static_cast<size_t>(slot) * int4_value_groups(n), n);
  }
  kv_store_row(dtype, src, piece + static_cast<size_t>(slot) * kv_row_bytes(dtype, n), scales ? reinterpret_cast<float*>(scales) + slot : nullptr, n);
}

void kv_load(KvDtype dtype, KvRole role, const uint8_t* piece, const uint8_t* scales, int first, int count, int n, float* dst) {
  if (dtype == KvDtype::kInt4 && role == KvRole::kKey) return int4_load_key_rows(piece, reinterpret_cast<const uint16_t*>(scales), first, count, n, dst);
  const size_t row_bytes = kv_row_bytes(dtype, n);
  for (int r = first; r < first + count; ++r) {
    float* out = dst + static_cast<size_t>(r - first) * n;
    if (dtype == KvDtype::kInt4) {
      int4_load_value_row(piece + r * row_bytes, reinterpret_cast<const uint16_t*>(scales) + r * int4_value_groups(n), out, n);
    } else {
      kv_load_row(dtype, piece + r * row_bytes, scales ? reinterpret_cast<const float*>(scales) + r : nullptr, out, n);
    }
  }
}

}  // namespace pagedlm
