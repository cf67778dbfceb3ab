// GGUF (v2/v3, little-endian) reader over a memory map. Parsing checks every length and offset against
// the file size, so a truncated or hostile file yields a Status naming the problem, never a bad read.
// A split model (<prefix>-00001-of-00003.gguf, ...) opens from its first file: the metadata comes from
// that file, the tensors from every part. Immutable after open(): safe to read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/mapped_file.h"
#include "common/status.h"
#include "model/tensor_type.h"

namespace pagedlm {

enum class GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

const char* gguf_type_name(GgufType type);

struct GgufValue {
  GgufType type = GgufType::kU8;
  // Scalars: integers widen into `integer` (signed view) and `unsigned_integer`, floats into `real`.
  int64_t integer = 0;
  uint64_t unsigned_integer = 0;
  double real = 0;
  std::string_view string;  // kString; points into the mapping
  // kArray
  GgufType element_type = GgufType::kU8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;             // numeric arrays: `count` packed elements
  std::vector<std::string_view> strings;    // string arrays
  std::vector<GgufValue> items;             // arrays of arrays

  bool is_integer() const;
  bool is_number() const;
};

struct GgufTensor {
  std::string name;
  std::vector<uint64_t> dims;  // dims[0] is the innermost (contiguous) dimension
  TensorType type = TensorType::kF32;
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;
  uint64_t elements() const;
};

class GgufFile {
 public:
  // `map`: memory-map the file (default) or copy it into the heap (see MappedFile). A split model's first
  // file opens the whole set; any other part is refused with the first part's name.
  static Result<GgufFile> open(const std::string& path, bool map = true);
  // Metadata and the tensor directory only, read from the start of each file without mapping it: tensors
  // have their names, shapes, types and sizes, and no data (nullptr). For planning before a load.
  static Result<GgufFile> read_header(const std::string& path);
  // Parses bytes already in memory (tests, fuzzing). The buffer must outlive the GgufFile.
  static Result<GgufFile> parse(const uint8_t* data, size_t size);

  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;
  const GgufValue* find(std::string_view key) const;

  // Typed lookups: nullopt when the key is absent; a Status error when present with the wrong type.
  Result<std::optional<int64_t>> get_int(std::string_view key) const;
  Result<std::optional<double>> get_float(std::string_view key) const;
  Result<std::optional<bool>> get_bool(std::string_view key) const;
  Result<std::optional<std::string>> get_string(std::string_view key) const;
  Result<std::vector<std::string_view>> get_string_array(std::string_view key) const;  // empty when absent
  Result<std::vector<float>> get_float_array(std::string_view key) const;
  Result<std::vector<int32_t>> get_int_array(std::string_view key) const;

  // See MappedFile::heap_bytes and MappedFile::drop_resident_pages.
  size_t heap_bytes() const;
  void drop_resident_pages(const uint8_t* begin, size_t bytes) const;
  // How many files the model spans (1 unless split).
  size_t file_count() const { return 1 + parts_.size(); }

 private:
  static Result<GgufFile> open_single(const std::string& path, bool map);
  static Result<GgufFile> read_header_single(const std::string& path);
  Status add_split_parts(const std::string& path, bool map, bool header_only);
  MappedFile file_;
  std::vector<MappedFile> parts_;  // the further files of a split model, holding their tensors' data
  std::vector<uint8_t> header_;     // read_header(): the bytes the metadata views point into
  uint32_t version_ = 0;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  friend class GgufParser;
};

}  // namespace pagedlm
