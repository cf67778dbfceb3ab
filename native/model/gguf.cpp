#include "model/gguf.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "common/platform.h"

namespace pagedlm {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxArrayNesting = 8;
constexpr uint32_t kMaxDims = 4;

// Thrown only inside this file; open()/parse() turn it into a Status.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// read_header(): the header goes on past the bytes read so far (but not past the end of the file).
struct NeedMoreBytes {};

size_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kBool: return 1;
    case GgufType::kU16: case GgufType::kI16: return 2;
    case GgufType::kU32: case GgufType::kI32: case GgufType::kF32: return 4;
    case GgufType::kU64: case GgufType::kI64: case GgufType::kF64: return 8;
    default: return 0;
  }
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kF64); }

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* const kNames[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                       "bool", "string", "array", "u64", "i64", "f64"};
  const auto index = static_cast<uint32_t>(type);
  return index < std::size(kNames) ? kNames[index] : "unknown";
}

bool GgufValue::is_integer() const {
  return type != GgufType::kF32 && type != GgufType::kF64 && scalar_size(type) > 0 && type != GgufType::kBool;
}
bool GgufValue::is_number() const { return is_integer() || type == GgufType::kF32 || type == GgufType::kF64; }

uint64_t GgufTensor::elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  return n;
}

// Reads the file front to back; every read is bounds-checked.
class GgufParser {
 public:
  GgufParser(const uint8_t* data, size_t size) : data_(data), size_(size), file_size_(size) {}
  // Header only: `data` holds the first `available` bytes of a file of `file_size` bytes; tensors get no data.
  GgufParser(const uint8_t* data, size_t available, size_t file_size) : data_(data), size_(available), file_size_(file_size), header_only_(true) {}

  void parse(GgufFile& out) {
    const uint32_t magic = read<uint32_t>("magic");
    if (magic != kMagic) throw FormatError("not a GGUF file (bad magic; expected 'GGUF' at offset 0)");
    out.version_ = read<uint32_t>("version");
    if (out.version_ != 2 && out.version_ != 3) {
      throw FormatError("unsupported GGUF version " + std::to_string(out.version_) + " (pagedlm reads versions 2 and 3)");
    }
    const uint64_t tensor_count = read<uint64_t>("tensor count");
    const uint64_t kv_count = read<uint64_t>("metadata count");
    // Each entry takes at least 8 bytes on disk: a count beyond that cannot be honest.
    if (tensor_count > file_size_ / 8 || kv_count > file_size_ / 8) throw FormatError("truncated file: header counts exceed the file size");

    for (uint64_t i = 0; i < kv_count; ++i) {
      std::string key(read_string("metadata key"));
      const uint32_t type = read<uint32_t>("metadata type");
      if (!valid_type(type)) throw FormatError("metadata '" + key + "' has unknown value type " + std::to_string(type));
      GgufValue value = read_value(static_cast<GgufType>(type), key, 0);
      if (!out.metadata_.emplace(key, std::move(value)).second) throw FormatError("duplicate metadata key '" + key + "'");
    }

    uint64_t alignment = kDefaultAlignment;
    if (const GgufValue* a = out.find("general.alignment")) {
      if (!a->is_integer() || a->unsigned_integer == 0 || (a->unsigned_integer & (a->unsigned_integer - 1)) != 0) {
        throw FormatError("general.alignment must be a power of two");
      }
      alignment = a->unsigned_integer;
    }

    std::vector<uint64_t> offsets;
    for (uint64_t i = 0; i < tensor_count; ++i) {
      GgufTensor tensor = read_tensor_info(offsets);
      if (out.tensor_index_.count(tensor.name) != 0) throw FormatError("duplicate tensor '" + tensor.name + "'");
      out.tensor_index_.emplace(tensor.name, out.tensors_.size());
      out.tensors_.push_back(std::move(tensor));
    }

    const uint64_t data_start = (pos_ + alignment - 1) / alignment * alignment;
    for (size_t i = 0; i < out.tensors_.size(); ++i) place_tensor(out.tensors_[i], offsets[i], data_start, alignment);
  }

 private:
  void need(uint64_t bytes, const char* what) {
    if (bytes > size_ - pos_) {
      if (size_ < file_size_ && bytes <= file_size_ - pos_) throw NeedMoreBytes{};
      throw FormatError(std::string("truncated file: reading ") + what + " at offset " + std::to_string(pos_) +
                        " needs " + std::to_string(bytes) + " bytes, " + std::to_string(size_ - pos_) + " remain");
    }
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string_view read_string(const char* what) {
    const uint64_t length = read<uint64_t>(what);
    need(length, what);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return s;
  }

  void read_scalar(GgufType type, GgufValue& v) {
    switch (type) {
      case GgufType::kU8: v.unsigned_integer = read<uint8_t>("u8"); v.integer = static_cast<int64_t>(v.unsigned_integer); break;
      case GgufType::kI8: v.integer = read<int8_t>("i8"); v.unsigned_integer = static_cast<uint64_t>(v.integer); break;
      case GgufType::kU16: v.unsigned_integer = read<uint16_t>("u16"); v.integer = static_cast<int64_t>(v.unsigned_integer); break;
      case GgufType::kI16: v.integer = read<int16_t>("i16"); v.unsigned_integer = static_cast<uint64_t>(v.integer); break;
      case GgufType::kU32: v.unsigned_integer = read<uint32_t>("u32"); v.integer = static_cast<int64_t>(v.unsigned_integer); break;
      case GgufType::kI32: v.integer = read<int32_t>("i32"); v.unsigned_integer = static_cast<uint64_t>(v.integer); break;
      case GgufType::kU64: v.unsigned_integer = read<uint64_t>("u64"); v.integer = static_cast<int64_t>(v.unsigned_integer); break;
      case GgufType::kI64: v.integer = read<int64_t>("i64"); v.unsigned_integer = static_cast<uint64_t>(v.integer); break;
      case GgufType::kF32: v.real = read<float>("f32"); break;
      case GgufType::kF64: v.real = read<double>("f64"); break;
      case GgufType::kBool: {
        const uint8_t b = read<uint8_t>("bool");
        if (b > 1) throw FormatError("bool value " + std::to_string(b) + " is neither 0 nor 1");
        v.unsigned_integer = b;
        v.integer = b;
        break;
      }
      default: break;
    }
  }

  GgufValue read_value(GgufType type, const std::string& key, int depth) {
    GgufValue v;
    v.type = type;
    if (type == GgufType::kString) {
      v.string = read_string("string value");
    } else if (type == GgufType::kArray) {
      if (depth >= kMaxArrayNesting) throw FormatError("metadata '" + key + "' nests arrays too deeply");
      const uint32_t element_type = read<uint32_t>("array type");
      if (!valid_type(element_type)) throw FormatError("metadata '" + key + "' has unknown array element type " + std::to_string(element_type));
      v.element_type = static_cast<GgufType>(element_type);
      v.count = read<uint64_t>("array length");
      if (v.count > file_size_ - pos_) throw FormatError("truncated file: array '" + key + "' claims " + std::to_string(v.count) + " elements");
      if (v.element_type == GgufType::kString) {
        v.strings.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(read_string("array string"));
      } else if (v.element_type == GgufType::kArray) {
        for (uint64_t i = 0; i < v.count; ++i) v.items.push_back(read_value(GgufType::kArray, key, depth + 1));
      } else {
        const uint64_t bytes = v.count * scalar_size(v.element_type);
        need(bytes, "array data");
        v.raw = data_ + pos_;
        pos_ += bytes;
      }
    } else {
      read_scalar(type, v);
    }
    return v;
  }

  GgufTensor read_tensor_info(std::vector<uint64_t>& offsets) {
    GgufTensor tensor;
    tensor.name = std::string(read_string("tensor name"));
    const uint32_t n_dims = read<uint32_t>("tensor rank");
    if (n_dims == 0 || n_dims > kMaxDims) throw FormatError("tensor '" + tensor.name + "' has rank " + std::to_string(n_dims) + " (1 to 4 allowed)");
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (std::numeric_limits<uint64_t>::max() >> 2) / elements) {
        throw FormatError("tensor '" + tensor.name + "' has an invalid dimension " + std::to_string(dim));
      }
      elements *= dim;
      tensor.dims.push_back(dim);
    }
    const uint32_t type = read<uint32_t>("tensor type");
    const auto info = tensor_type_info(type);
    if (!info) {
      const char* known = ggml_type_name(type);
      throw FormatError("tensor '" + tensor.name + "' has " + (known ? "unsupported type " + std::string(known) + " (type id " + std::to_string(type) + ")" : "unknown type id " + std::to_string(type)));
    }
    tensor.type = static_cast<TensorType>(type);
    if (tensor.dims[0] % info->block_elements != 0) {
      throw FormatError("tensor '" + tensor.name + "' row length " + std::to_string(tensor.dims[0]) +
                        " is not a multiple of the " + info->name + " block size");
    }
    tensor.bytes = elements / info->block_elements * info->block_bytes;
    offsets.push_back(read<uint64_t>("tensor offset"));
    return tensor;
  }

  void place_tensor(GgufTensor& tensor, uint64_t offset, uint64_t data_start, uint64_t alignment) {
    if (offset % alignment != 0) throw FormatError("tensor '" + tensor.name + "' offset is not aligned to " + std::to_string(alignment));
    if (data_start > file_size_ || offset > file_size_ - data_start || tensor.bytes > file_size_ - data_start - offset) {
      throw FormatError("tensor '" + tensor.name + "' data lies outside the file (" + std::to_string(tensor.bytes) +
                        " bytes at offset " + std::to_string(offset) + "; the file may be truncated)");
    }
    tensor.data = header_only_ ? nullptr : data_ + data_start + offset;
  }

  const uint8_t* data_;
  size_t size_;       // bytes readable at data_
  size_t file_size_;  // bytes in the file (equal to size_ unless header-only)
  bool header_only_ = false;
  size_t pos_ = 0;
};

Result<GgufFile> GgufFile::parse(const uint8_t* data, size_t size) {
  GgufFile file;
  try {
    GgufParser(data, size).parse(file);
  } catch (const FormatError& e) {
    return Status(ErrorCode::kModelFormat, e.what());
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kModelFormat, "GGUF metadata too large to hold in memory");
  }
  return file;
}

namespace {

Status read_prefix(const std::string& path, size_t length, std::vector<uint8_t>& bytes, size_t& file_size) {
  const std::filesystem::path file = native_path(path);
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(file, error);
  if (error) return Status(ErrorCode::kIo, "cannot open '" + path + "': " + error.message());
  if (!std::filesystem::is_regular_file(status)) return Status(ErrorCode::kIo, "'" + path + "' is not a regular file");
  file_size = static_cast<size_t>(std::filesystem::file_size(file, error));
  std::ifstream in(file, std::ios::binary);
  if (error || !in) return Status(ErrorCode::kIo, "cannot open '" + path + "'" + (error ? ": " + error.message() : std::string()));
  bytes.resize(std::min(length, file_size));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()))) {
    return Status(ErrorCode::kIo, "cannot read '" + path + "': it ended after " + std::to_string(in.gcount()) + " bytes");
  }
  return Status::ok();
}

// llama.cpp's split naming: <prefix>-00001-of-00003.gguf, numbered from 1.
std::string split_part_path(const std::string& prefix, int part, int count) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d.gguf", part, count);
  return prefix + suffix;
}

}  // namespace

Status GgufFile::add_split_parts(const std::string& path, bool map, bool header_only) {
  const GgufValue* count_value = find("split.count");
  if (count_value == nullptr || !count_value->is_integer() || count_value->integer <= 1) return Status::ok();
  const GgufValue* index_value = find("split.no");
  const int64_t count = count_value->integer;
  const int64_t index = index_value != nullptr && index_value->is_integer() ? index_value->integer : 0;
  if (count > 9999) return Status(ErrorCode::kModelFormat, "'" + path + "': split.count " + std::to_string(count) + " is implausibly large");
  const std::string first_suffix = split_part_path("", 1, static_cast<int>(count));
  const std::string this_suffix = split_part_path("", static_cast<int>(index) + 1, static_cast<int>(count));
  if (path.size() < this_suffix.size() || path.compare(path.size() - this_suffix.size(), this_suffix.size(), this_suffix) != 0) {
    return Status(ErrorCode::kModelFormat, "'" + path + "' is part " + std::to_string(index + 1) + " of a model split into " + std::to_string(count) +
                                               " files, but its name does not end in '" + this_suffix + "', so the other parts cannot be found");
  }
  const std::string prefix = path.substr(0, path.size() - this_suffix.size());
  if (index != 0) {
    return Status(ErrorCode::kInvalidArgument, "'" + path + "' is part " + std::to_string(index + 1) + " of " + std::to_string(count) +
                                                   " of a split model: pass the first part, '" + prefix + first_suffix + "'");
  }
  for (int part = 1; part < count; ++part) {
    const std::string part_path = split_part_path(prefix, part + 1, static_cast<int>(count));
    auto opened = header_only ? read_header_single(part_path) : open_single(part_path, map);
    if (!opened.is_ok()) return Status(opened.status().code(), "part " + std::to_string(part + 1) + " of " + std::to_string(count) + ": " + opened.status().message());
    GgufFile& piece = opened.value();
    const auto piece_index = piece.get_int("split.no");
    if (!piece_index.is_ok() || piece_index.value() != std::optional<int64_t>(part)) {
      return Status(ErrorCode::kModelFormat, "'" + part_path + "' does not say it is part " + std::to_string(part + 1) + " (split.no " + std::to_string(part) + ")");
    }
    for (GgufTensor& t : piece.tensors_) {
      if (tensor_index_.count(t.name) != 0) return Status(ErrorCode::kModelFormat, "tensor '" + t.name + "' appears in more than one part ('" + part_path + "')");
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    if (!header_only) parts_.push_back(std::move(piece.file_));
  }
  if (const auto expected = get_int("split.tensors.count"); expected.is_ok() && expected.value() && *expected.value() != static_cast<int64_t>(tensors_.size())) {
    return Status(ErrorCode::kModelFormat, "'" + path + "': split.tensors.count says " + std::to_string(*expected.value()) + " tensors, the parts hold " +
                                               std::to_string(tensors_.size()));
  }
  return Status::ok();
}

Result<GgufFile> GgufFile::open_single(const std::string& path, bool map) {
  auto mapped = MappedFile::open(path, map);
  if (!mapped.is_ok()) return mapped.status();
  auto parsed = parse(mapped.value().data(), mapped.value().size());
  if (!parsed.is_ok()) return Status(parsed.status().code(), "'" + path + "': " + parsed.status().message());
  GgufFile file = parsed.take();
  file.file_ = mapped.take();  // the mapping moves, its address does not
  return file;
}

// Reads the file's first bytes, twice as many each time the header goes on, until the header parses. The
// header fits in a few megabytes even for vocabularies of a quarter million tokens: it starts at 1 MiB.
Result<GgufFile> GgufFile::read_header_single(const std::string& path) {
  std::vector<uint8_t> bytes;
  for (size_t length = size_t{1} << 20;; length *= 2) {
    size_t file_size = 0;
    if (Status s = read_prefix(path, length, bytes, file_size); !s.is_ok()) return s;
    GgufFile file;
    try {
      GgufParser(bytes.data(), bytes.size(), file_size).parse(file);
    } catch (const NeedMoreBytes&) {
      continue;
    } catch (const FormatError& e) {
      return Status(ErrorCode::kModelFormat, "'" + path + "': " + e.what());
    } catch (const std::bad_alloc&) {
      return Status(ErrorCode::kModelFormat, "'" + path + "': GGUF metadata too large to hold in memory");
    }
    file.header_ = std::move(bytes);  // the buffer moves, its address does not
    return file;
  }
}

Result<GgufFile> GgufFile::open(const std::string& path, bool map) {
  auto file = open_single(path, map);
  if (!file.is_ok()) return file;
  if (Status s = file.value().add_split_parts(path, map, false); !s.is_ok()) return s;
  return file;
}

Result<GgufFile> GgufFile::read_header(const std::string& path) {
  auto file = read_header_single(path);
  if (!file.is_ok()) return file;
  if (Status s = file.value().add_split_parts(path, false, true); !s.is_ok()) return s;
  return file;
}

size_t GgufFile::heap_bytes() const {
  size_t bytes = file_.heap_bytes();
  for (const MappedFile& part : parts_) bytes += part.heap_bytes();
  return bytes;
}

void GgufFile::drop_resident_pages(const uint8_t* begin, size_t bytes) const {
  file_.drop_resident_pages(begin, bytes);  // each file ignores a range outside itself
  for (const MappedFile& part : parts_) part.drop_resident_pages(begin, bytes);
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
Status wrong_type(std::string_view key, const GgufValue& v, const char* wanted) {
  return Status(ErrorCode::kModelFormat, "metadata '" + std::string(key) + "' is " + gguf_type_name(v.type) + ", expected " + wanted);
}

template <typename T>
T load_scalar(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

double array_element(GgufType type, const uint8_t* p) {
  switch (type) {
    case GgufType::kU8: return *p;
    case GgufType::kI8: return static_cast<int8_t>(*p);
    case GgufType::kBool: return *p;
    case GgufType::kU16: return load_scalar<uint16_t>(p);
    case GgufType::kI16: return load_scalar<int16_t>(p);
    case GgufType::kU32: return load_scalar<uint32_t>(p);
    case GgufType::kI32: return load_scalar<int32_t>(p);
    case GgufType::kU64: return static_cast<double>(load_scalar<uint64_t>(p));
    case GgufType::kI64: return static_cast<double>(load_scalar<int64_t>(p));
    case GgufType::kF32: return load_scalar<float>(p);
    case GgufType::kF64: return load_scalar<double>(p);
    default: return 0;
  }
}
}  // namespace

Result<std::optional<int64_t>> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<int64_t>();
  if (!v->is_integer()) return wrong_type(key, *v, "an integer");
  return std::optional<int64_t>(v->integer);
}

Result<std::optional<double>> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<double>();
  if (!v->is_number()) return wrong_type(key, *v, "a number");
  return std::optional<double>(v->is_integer() ? static_cast<double>(v->integer) : v->real);
}

Result<std::optional<bool>> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<bool>();
  if (v->type != GgufType::kBool) return wrong_type(key, *v, "a bool");
  return std::optional<bool>(v->integer != 0);
}

Result<std::optional<std::string>> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::optional<std::string>();
  if (v->type != GgufType::kString) return wrong_type(key, *v, "a string");
  return std::optional<std::string>(std::string(v->string));
}

Result<std::vector<std::string_view>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::vector<std::string_view>();
  if (v->type != GgufType::kArray || v->element_type != GgufType::kString) return wrong_type(key, *v, "an array of strings");
  return v->strings;
}

Result<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::vector<float>();
  const size_t width = scalar_size(v->element_type);
  if (v->type != GgufType::kArray || width == 0) return wrong_type(key, *v, "an array of numbers");
  std::vector<float> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) out[i] = static_cast<float>(array_element(v->element_type, v->raw + i * width));
  return out;
}

Result<std::vector<int32_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::vector<int32_t>();
  const size_t width = scalar_size(v->element_type);
  if (v->type != GgufType::kArray || width == 0 || v->element_type == GgufType::kF32 || v->element_type == GgufType::kF64) {
    return wrong_type(key, *v, "an array of integers");
  }
  std::vector<int32_t> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) out[i] = static_cast<int32_t>(array_element(v->element_type, v->raw + i * width));
  return out;
}

}  // namespace pagedlm
