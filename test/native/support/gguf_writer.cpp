#include "support/gguf_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <type_traits>

#include "common/half.h"

namespace pagedlm::testing {

namespace {
void put(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
template <typename T>
void put_value(std::vector<uint8_t>& out, T v) {
  put(out, &v, sizeof v);
}
void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put_value<uint64_t>(out, s.size());
  put(out, s.data(), s.size());
}
}  // namespace

void GgufWriter::scalar(const std::string& key, uint32_t type, const void* v, size_t n) {
  put_string(metadata_, key);
  put_value(metadata_, type);
  put(metadata_, v, n);
  ++metadata_count_;
}

void GgufWriter::add_string(const std::string& key, const std::string& v) {
  put_string(metadata_, key);
  put_value<uint32_t>(metadata_, 8);
  put_string(metadata_, v);
  ++metadata_count_;
}

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  put_string(metadata_, key);
  put_value<uint32_t>(metadata_, 9);
  put_value<uint32_t>(metadata_, 8);
  put_value<uint64_t>(metadata_, v.size());
  for (const auto& s : v) put_string(metadata_, s);
  ++metadata_count_;
}

void GgufWriter::numeric_array(const std::string& key, uint32_t element_type, const void* data, size_t count, size_t width) {
  put_string(metadata_, key);
  put_value<uint32_t>(metadata_, 9);
  put_value<uint32_t>(metadata_, element_type);
  put_value<uint64_t>(metadata_, count);
  put(metadata_, data, count * width);
  ++metadata_count_;
}

void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& v) { numeric_array(key, 6, v.data(), v.size(), 4); }
void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& v) { numeric_array(key, 5, v.data(), v.size(), 4); }

void GgufWriter::add_raw(const std::string& key, const std::vector<uint8_t>& type_and_payload) {
  put_string(metadata_, key);
  put(metadata_, type_and_payload.data(), type_and_payload.size());
  ++metadata_count_;
}

void GgufWriter::add_tensor(const std::string& name, std::vector<uint64_t> dims, TensorType type, std::vector<uint8_t> data) {
  tensors_.push_back({name, std::move(dims), type, std::move(data)});
}

std::vector<uint8_t> GgufWriter::build() const {
  // Reserved up front: growing a 4-byte vector made GCC 12 warn (-Wstringop-overread) on a copy it cannot prove empty.
  std::vector<uint8_t> out;
  out.reserve(4096 + metadata_.size());
  for (const char c : {'G', 'G', 'U', 'F'}) out.push_back(static_cast<uint8_t>(c));
  put_value(out, version);
  put_value<uint64_t>(out, tensors_.size());
  put_value<uint64_t>(out, metadata_count_);
  out.insert(out.end(), metadata_.begin(), metadata_.end());
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const Tensor& t : tensors_) {
    put_string(out, t.name);
    put_value<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put_value(out, d);
    put_value(out, static_cast<uint32_t>(t.type));
    put_value(out, offset);
    offsets.push_back(offset);
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
  const size_t data_start = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    out.resize(data_start + offsets[i], 0);
    out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const auto bytes = build();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> GgufWriter::write_split(const std::string& prefix, int parts) const {
  std::vector<std::string> paths;
  const size_t per_part = (tensors_.size() + parts - 1) / parts;
  for (int part = 0; part < parts; ++part) {
    GgufWriter piece;
    piece.version = version;
    piece.alignment = alignment;
    if (part == 0) {
      piece.metadata_ = metadata_;
      piece.metadata_count_ = metadata_count_;
    }
    piece.add_u16("split.no", static_cast<uint16_t>(part));
    piece.add_u16("split.count", static_cast<uint16_t>(parts));
    piece.add_i32("split.tensors.count", static_cast<int32_t>(tensors_.size()));
    for (size_t i = part * per_part; i < std::min(tensors_.size(), (part + 1) * per_part); ++i) piece.tensors_.push_back(tensors_[i]);
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d.gguf", part + 1, parts);
    paths.push_back(prefix + suffix);
    piece.write(paths.back());
  }
  return paths;
}

namespace {

// A plain Q6_K quantizer: each 16 values' scale from their largest magnitude, the sub-block scales as
// int8 multiples of one f16 scale, values rounded against the scale they will be read with.
void put_q6_k_block(std::vector<uint8_t>& out, const float* v) {
  float sub_scales[16];
  float largest = 0;
  for (int s = 0; s < 16; ++s) {
    float amax = 0;
    for (int j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(v[16 * s + j]));
    sub_scales[s] = amax / 31.0f;
    largest = std::max(largest, sub_scales[s]);
  }
  BlockQ6_K block{};
  block.d = float_to_fp16(largest / 127.0f);
  const float d = fp16_to_float(block.d);
  for (int s = 0; s < 16; ++s) block.scales[s] = static_cast<int8_t>(d == 0 ? 0 : std::min(127L, std::lround(sub_scales[s] / d)));
  for (int i = 0; i < 256; ++i) {
    const int half = i / 128, l = i % 32, k = (i % 128) / 32;
    const float step = d * block.scales[l / 16 + 2 * k + 8 * half];
    const int q = std::clamp(step == 0 ? 0 : static_cast<int>(std::lround(v[i] / step)), -32, 31) + 32;
    uint8_t& low = block.low[64 * half + l + 32 * (k % 2)];
    low = static_cast<uint8_t>(low | (k < 2 ? q & 0xF : (q & 0xF) << 4));
    block.high[32 * half + l] = static_cast<uint8_t>(block.high[32 * half + l] | ((q >> 4) << (2 * k)));
  }
  put(out, &block, sizeof block);
}


// The signed value of largest magnitude among v[0, n).
float signed_extreme(const float* v, int n) {
  float extreme = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(v[i]) > std::fabs(extreme)) extreme = v[i];
  }
  return extreme;
}

int nearest(float v, float step, int lowest, int highest) {
  return step == 0 ? std::clamp(0, lowest, highest) : std::clamp(static_cast<int>(std::lround(v / step)), lowest, highest);
}

// Q4_1 / Q5_1: the block's minimum as m, its range over the levels as d; each value to its nearest level.
template <typename Block>
void put_q_1_block(std::vector<uint8_t>& out, const float* v, int levels) {
  const float lo = *std::min_element(v, v + 32), hi = *std::max_element(v, v + 32);
  Block block{};
  block.d = float_to_fp16((hi - lo) / levels);
  block.m = float_to_fp16(lo);
  const float d = fp16_to_float(block.d), m = fp16_to_float(block.m);
  int q[32];
  for (int j = 0; j < 32; ++j) q[j] = nearest(v[j] - m, d, 0, levels);
  for (int j = 0; j < 16; ++j) block.nibbles[j] = static_cast<uint8_t>((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
  if constexpr (std::is_same_v<Block, BlockQ5_1>) {
    uint32_t high = 0;
    for (int j = 0; j < 32; ++j) high |= static_cast<uint32_t>(q[j] >> 4) << j;
    std::memcpy(block.high, &high, 4);
  }
  put(out, &block, sizeof block);
}

// The step for integer levels [lowest, highest] that fits v[0, n) best among: the extreme on the lowest or
// the highest level, each also refined by least squares on the levels it assigns.
float best_integer_step(const float* v, int n, int lowest, int highest) {
  const auto error_of = [&](float step) {
    double error = 0;
    for (int i = 0; i < n; ++i) {
      const double e = v[i] - static_cast<double>(step) * nearest(v[i], step, lowest, highest);
      error += e * e;
    }
    return error;
  };
  const float extreme = signed_extreme(v, n);
  if (extreme == 0) return 0;
  float best = extreme / lowest;
  double best_error = error_of(best);
  for (const float start : {extreme / lowest, extreme / highest}) {
    double vl = 0, ll = 0;
    for (int i = 0; i < n; ++i) {
      const int level = nearest(v[i], start, lowest, highest);
      vl += static_cast<double>(v[i]) * level;
      ll += static_cast<double>(level) * level;
    }
    for (const float step : {start, ll == 0 ? start : static_cast<float>(vl / ll)}) {
      const double error = error_of(step);
      if (error < best_error) best = step, best_error = error;
    }
  }
  return best;
}

// Q5_0: one step for levels -16 .. 15 (best_integer_step), each value on its nearest level.
void put_q5_0_block(std::vector<uint8_t>& out, const float* v) {
  BlockQ5_0 block{};
  block.d = float_to_fp16(best_integer_step(v, 32, -16, 15));
  const float d = fp16_to_float(block.d);
  int q[32];
  for (int j = 0; j < 32; ++j) q[j] = nearest(v[j], d, -16, 15) + 16;
  uint32_t high = 0;
  for (int j = 0; j < 32; ++j) high |= static_cast<uint32_t>(q[j] >> 4) << j;
  for (int j = 0; j < 16; ++j) block.nibbles[j] = static_cast<uint8_t>((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
  std::memcpy(block.high, &high, 4);
  put(out, &block, sizeof block);
}

// The index of the kIq4Values level nearest to v.
int nearest_iq4(float v) {
  int best = 0;
  for (int i = 1; i < 16; ++i) {
    if (std::fabs(v - kIq4Values[i]) < std::fabs(v - kIq4Values[best])) best = i;
  }
  return best;
}

float iq4_error(const float* v, int n, float step) {
  float error = 0;
  for (int i = 0; i < n; ++i) {
    const float e = v[i] - (step == 0 ? 0 : step * kIq4Values[nearest_iq4(v[i] / step)]);
    error += e * e;
  }
  return error;
}

// The least-squares step for the levels `step` assigns v to.
float iq4_refined_step(const float* v, int n, float step) {
  double vl = 0, ll = 0;
  for (int i = 0; i < n; ++i) {
    const int level = kIq4Values[nearest_iq4(v[i] / step)];
    vl += static_cast<double>(v[i]) * level;
    ll += static_cast<double>(level) * level;
  }
  return ll == 0 ? step : static_cast<float>(vl / ll);
}

// The IQ4 step for 32 values: the extreme on the outermost level of either sign, each also refined by least
// squares, whichever fits best.
float iq4_step(const float* v) {
  const float extreme = signed_extreme(v, 32);
  if (extreme == 0) return 0;
  float best = extreme / kIq4Values[0], best_error = iq4_error(v, 32, best);
  for (const float start : {extreme / kIq4Values[0], extreme / kIq4Values[15]}) {
    for (const float step : {start, iq4_refined_step(v, 32, start)}) {
      const float error = iq4_error(v, 32, step);
      if (error < best_error) best = step, best_error = error;
    }
  }
  return best;
}

void put_iq4_nibbles(const float* v, float step, uint8_t* nibbles) {
  for (int j = 0; j < 16; ++j) {
    const int lo = step == 0 ? 8 : nearest_iq4(v[j] / step), hi = step == 0 ? 8 : nearest_iq4(v[j + 16] / step);
    nibbles[j] = static_cast<uint8_t>(lo | hi << 4);
  }
}

void put_iq4_nl_block(std::vector<uint8_t>& out, const float* v) {
  BlockIQ4_NL block{};
  block.d = float_to_fp16(iq4_step(v));
  put_iq4_nibbles(v, fp16_to_float(block.d), block.nibbles);
  put(out, &block, sizeof block);
}

// IQ4_XS: each sub-block's IQ4 step, those steps as 6-bit multiples of one f16 scale, then the indices
// against the step they will be read with.
void put_iq4_xs_block(std::vector<uint8_t>& out, const float* v) {
  float steps[8], largest = 0;
  for (int s = 0; s < 8; ++s) {
    steps[s] = iq4_step(v + 32 * s);
    largest = std::max(largest, std::fabs(steps[s]));
  }
  BlockIQ4_XS block{};
  block.d = float_to_fp16(largest / 31.0f);
  const float d = fp16_to_float(block.d);
  for (int s = 0; s < 8; ++s) {
    const int scale = nearest(steps[s], d, -32, 31);
    block.scales_low[s / 2] = static_cast<uint8_t>(block.scales_low[s / 2] | ((scale + 32) & 0xF) << (4 * (s % 2)));
    block.scales_high = static_cast<uint16_t>(block.scales_high | ((scale + 32) >> 4) << (2 * s));
    put_iq4_nibbles(v + 32 * s, d * scale, block.nibbles + 16 * s);
  }
  put(out, &block, sizeof block);
}

// An affine sub-block (d * sc * q - dmin * m, q in [0, levels]): its step and its min, the min taken at 0 or
// below so that m stays positive.
struct AffineSubBlock {
  float step, min;
};
AffineSubBlock affine_sub_block(const float* v, int n, int levels) {
  const float lo = std::min(0.0f, *std::min_element(v, v + n)), hi = *std::max_element(v, v + n);
  return {(std::max(hi, lo) - lo) / levels, -lo};
}

// Q4_K / Q5_K: 8 affine sub-blocks of 32, their steps and mins as 6-bit multiples of d and dmin, packed as
// tensor_type.cpp's q4_k_scale_min reads them; `levels` 15 or 31.
template <typename Block>
void put_q45_k_block(std::vector<uint8_t>& out, const float* v, int levels) {
  AffineSubBlock subs[8];
  float max_step = 0, max_min = 0;
  for (int s = 0; s < 8; ++s) {
    subs[s] = affine_sub_block(v + 32 * s, 32, levels);
    max_step = std::max(max_step, subs[s].step);
    max_min = std::max(max_min, subs[s].min);
  }
  Block block{};
  block.d = float_to_fp16(max_step / 63.0f);
  block.dmin = float_to_fp16(max_min / 63.0f);
  const float d = fp16_to_float(block.d), dmin = fp16_to_float(block.dmin);
  for (int s = 0; s < 8; ++s) {
    const int sc = nearest(subs[s].step, d, 0, 63), m = nearest(subs[s].min, dmin, 0, 63);
    if (s < 4) {
      block.scales[s] = static_cast<uint8_t>(block.scales[s] | sc);
      block.scales[s + 4] = static_cast<uint8_t>(block.scales[s + 4] | m);
    } else {
      block.scales[s + 4] = static_cast<uint8_t>((sc & 0xF) | (m & 0xF) << 4);
      block.scales[s - 4] = static_cast<uint8_t>(block.scales[s - 4] | (sc >> 4) << 6);
      block.scales[s] = static_cast<uint8_t>(block.scales[s] | (m >> 4) << 6);
    }
    for (int l = 0; l < 32; ++l) {
      const int q = nearest(v[32 * s + l] + dmin * m, d * sc, 0, levels);
      const int group = s / 2, h = s % 2;
      block.nibbles[32 * group + l] = static_cast<uint8_t>(block.nibbles[32 * group + l] | (q & 0xF) << (4 * h));
      if constexpr (std::is_same_v<Block, BlockQ5_K>) block.high[l] = static_cast<uint8_t>(block.high[l] | (q >> 4) << s);
    }
  }
  put(out, &block, sizeof block);
}

// Q3_K: each 16 values' step for levels -4 .. 3 (best_integer_step), the sub-block steps as signed 6-bit
// multiples of one f16 scale, each value on its nearest level under the step it is read with.
void put_q3_k_block(std::vector<uint8_t>& out, const float* v) {
  float steps[16], largest = 0;
  for (int s = 0; s < 16; ++s) {
    steps[s] = best_integer_step(v + 16 * s, 16, -4, 3);
    largest = std::max(largest, std::fabs(steps[s]));
  }
  BlockQ3_K block{};
  block.d = float_to_fp16(largest / 31.0f);
  const float d = fp16_to_float(block.d);
  for (int s = 0; s < 16; ++s) {
    const int sc = nearest(steps[s], d, -32, 31);
    const int stored = sc + 32;
    block.scales[s % 8] = static_cast<uint8_t>(block.scales[s % 8] | (stored & 0xF) << (s < 8 ? 0 : 4));
    block.scales[8 + s % 4] = static_cast<uint8_t>(block.scales[8 + s % 4] | (stored >> 4) << (2 * (s / 4)));
    for (int j = 0; j < 16; ++j) {
      const int i = 16 * s + j, half = i / 128, k = i % 128 / 32, l = i % 32;
      const int q = nearest(v[i], d * sc, -4, 3) + 4;
      block.low[32 * half + l] = static_cast<uint8_t>(block.low[32 * half + l] | (q & 3) << (2 * k));
      block.high[l] = static_cast<uint8_t>(block.high[l] | (q >> 2) << (4 * half + k));
    }
  }
  put(out, &block, sizeof block);
}

// Q2_K: 16 affine sub-blocks of 16, steps and mins as 4-bit multiples of d and dmin.
void put_q2_k_block(std::vector<uint8_t>& out, const float* v) {
  AffineSubBlock subs[16];
  float max_step = 0, max_min = 0;
  for (int s = 0; s < 16; ++s) {
    subs[s] = affine_sub_block(v + 16 * s, 16, 3);
    max_step = std::max(max_step, subs[s].step);
    max_min = std::max(max_min, subs[s].min);
  }
  BlockQ2_K block{};
  block.d = float_to_fp16(max_step / 15.0f);
  block.dmin = float_to_fp16(max_min / 15.0f);
  const float d = fp16_to_float(block.d), dmin = fp16_to_float(block.dmin);
  for (int s = 0; s < 16; ++s) {
    const int sc = nearest(subs[s].step, d, 0, 15), m = nearest(subs[s].min, dmin, 0, 15);
    block.scales[s] = static_cast<uint8_t>(sc | m << 4);
    for (int j = 0; j < 16; ++j) {
      const int i = 16 * s + j, half = i / 128, k = i % 128 / 32, l = i % 32;
      const int q = nearest(v[i] + dmin * m, d * sc, 0, 3);
      block.values[32 * half + l] = static_cast<uint8_t>(block.values[32 * half + l] | q << (2 * k));
    }
  }
  put(out, &block, sizeof block);
}
}  // namespace

std::vector<uint8_t> encode_tensor(const std::vector<float>& values, TensorType type) {
  std::vector<uint8_t> out;
  switch (type) {
    case TensorType::kF32:
      out.resize(values.size() * 4);
      std::memcpy(out.data(), values.data(), out.size());
      break;
    case TensorType::kF16:
    case TensorType::kBF16:
      for (float v : values) put_value<uint16_t>(out, type == TensorType::kF16 ? float_to_fp16(v) : float_to_bf16(v));
      break;
    case TensorType::kQ8_0:
      for (size_t b = 0; b < values.size(); b += 32) {
        float amax = 0;
        for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(values[b + j]));
        const float d = amax / 127.0f;
        BlockQ8_0 block{float_to_fp16(d), {}};
        for (size_t j = 0; j < 32; ++j) block.values[j] = static_cast<int8_t>(d == 0 ? 0 : std::lround(values[b + j] / d));
        put(out, &block, sizeof block);
      }
      break;
    case TensorType::kQ4_0:
      for (size_t b = 0; b < values.size(); b += 32) {
        float max = 0;
        for (size_t j = 0; j < 32; ++j) {
          if (std::fabs(values[b + j]) > std::fabs(max)) max = values[b + j];
        }
        const float d = max / -8.0f;
        const float inv = d == 0 ? 0 : 1.0f / d;
        BlockQ4_0 block{float_to_fp16(d), {}};
        for (size_t j = 0; j < 16; ++j) {
          const int lo = std::min(15, static_cast<int>(values[b + j] * inv + 8.5f));
          const int hi = std::min(15, static_cast<int>(values[b + j + 16] * inv + 8.5f));
          block.nibbles[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
        put(out, &block, sizeof block);
      }
      break;
    case TensorType::kQ4_1:
      for (size_t b = 0; b < values.size(); b += 32) put_q_1_block<BlockQ4_1>(out, values.data() + b, 15);
      break;
    case TensorType::kQ5_1:
      for (size_t b = 0; b < values.size(); b += 32) put_q_1_block<BlockQ5_1>(out, values.data() + b, 31);
      break;
    case TensorType::kQ5_0:
      for (size_t b = 0; b < values.size(); b += 32) put_q5_0_block(out, values.data() + b);
      break;
    case TensorType::kIQ4_NL:
      for (size_t b = 0; b < values.size(); b += 32) put_iq4_nl_block(out, values.data() + b);
      break;
    case TensorType::kIQ4_XS:
      for (size_t b = 0; b < values.size(); b += kQKElements) put_iq4_xs_block(out, values.data() + b);
      break;
    case TensorType::kQ2_K:
      for (size_t b = 0; b < values.size(); b += kQKElements) put_q2_k_block(out, values.data() + b);
      break;
    case TensorType::kQ3_K:
      for (size_t b = 0; b < values.size(); b += kQKElements) put_q3_k_block(out, values.data() + b);
      break;
    case TensorType::kQ4_K:
      for (size_t b = 0; b < values.size(); b += kQKElements) put_q45_k_block<BlockQ4_K>(out, values.data() + b, 15);
      break;
    case TensorType::kQ5_K:
      for (size_t b = 0; b < values.size(); b += kQKElements) put_q45_k_block<BlockQ5_K>(out, values.data() + b, 31);
      break;
    case TensorType::kQ6_K:
      for (size_t b = 0; b < values.size(); b += kQKElements) put_q6_k_block(out, values.data() + b);
      break;
    default:
      break;
  }
  return out;
}

}  // namespace pagedlm::testing
