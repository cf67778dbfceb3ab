#include "support/gguf_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

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
    case TensorType::kQ6_K:
      for (size_t b = 0; b < values.size(); b += kQKElements) put_q6_k_block(out, values.data() + b);
      break;
    default:
      break;
  }
  return out;
}

}  // namespace pagedlm::testing
