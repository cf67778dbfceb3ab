#include "kv/kv_dtype.h"

#include <algorithm>
#include <cmath>
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

}  // namespace

const char* kv_dtype_name(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32: return "f32";
    case KvDtype::kF16: return "f16";
    case KvDtype::kBF16: return "bf16";
    case KvDtype::kInt8: return "int8";
    case KvDtype::kFp8E4M3: return "fp8";
  }
  return "f16";
}

std::optional<KvDtype> parse_kv_dtype(std::string_view name) {
  for (KvDtype d : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3}) {
    if (name == kv_dtype_name(d)) return d;
  }
  return std::nullopt;
}

size_t kv_dtype_bytes(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32: return 4;
    case KvDtype::kF16:
    case KvDtype::kBF16: return 2;
    case KvDtype::kInt8:
    case KvDtype::kFp8E4M3: return 1;
  }
  return 2;
}

bool kv_dtype_has_scales(KvDtype dtype) { return dtype == KvDtype::kInt8 || dtype == KvDtype::kFp8E4M3; }

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
  }
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
  }
}

}  // namespace pagedlm
