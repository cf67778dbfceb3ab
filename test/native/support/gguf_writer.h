// Builds GGUF files in memory for tests: metadata of every type, tensors of any supported type, and
// knobs to corrupt the result. Test-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tensor_type.h"

namespace pagedlm::testing {

class GgufWriter {
 public:
  void add_u8(const std::string& key, uint8_t v) { scalar(key, 0, &v, 1); }
  void add_i8(const std::string& key, int8_t v) { scalar(key, 1, &v, 1); }
  void add_u16(const std::string& key, uint16_t v) { scalar(key, 2, &v, 2); }
  void add_i16(const std::string& key, int16_t v) { scalar(key, 3, &v, 2); }
  void add_u32(const std::string& key, uint32_t v) { scalar(key, 4, &v, 4); }
  void add_i32(const std::string& key, int32_t v) { scalar(key, 5, &v, 4); }
  void add_f32(const std::string& key, float v) { scalar(key, 6, &v, 4); }
  void add_bool(const std::string& key, bool v) {
    const uint8_t b = v;
    scalar(key, 7, &b, 1);
  }
  void add_u64(const std::string& key, uint64_t v) { scalar(key, 10, &v, 8); }
  void add_i64(const std::string& key, int64_t v) { scalar(key, 11, &v, 8); }
  void add_f64(const std::string& key, double v) { scalar(key, 12, &v, 8); }
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Raw metadata bytes after the key (type id + payload), for hostile values.
  void add_raw(const std::string& key, const std::vector<uint8_t>& type_and_payload);

  // dims[0] is the innermost dimension; `data` must already be in `type`'s encoding.
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, TensorType type, std::vector<uint8_t> data);

  uint32_t version = 3;
  uint32_t alignment = 32;

  std::vector<uint8_t> build() const;
  void write(const std::string& path) const;
  // The same model as `parts` files, split as llama.cpp's gguf-split does: the first holds the metadata,
  // every part its share of the tensors and the split.* keys. Written to <prefix>-0000i-of-0000n.gguf;
  // returns the paths in order.
  std::vector<std::string> write_split(const std::string& prefix, int parts) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    TensorType type;
    std::vector<uint8_t> data;
  };
  void scalar(const std::string& key, uint32_t type, const void* v, size_t n);
  void numeric_array(const std::string& key, uint32_t element_type, const void* data, size_t count, size_t width);
  std::vector<uint8_t> metadata_;
  uint64_t metadata_count_ = 0;
  std::vector<Tensor> tensors_;
};

// Encodes floats as a tensor of `type` (any TensorType), each block quantized to its nearest levels under
// per-block scales taken from its range; row length must be a multiple of the type's block.
std::vector<uint8_t> encode_tensor(const std::vector<float>& values, TensorType type);

}  // namespace pagedlm::testing
