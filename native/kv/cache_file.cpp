#include "kv/cache_file.h"

#include "common/fault.h"
#include "common/platform.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace pagedlm {

namespace {

constexpr char kMagic[8] = {'P', 'G', 'L', 'M', 'K', 'V', '0', '1'};
// Version 2: the header names the K and the V type apart.
constexpr uint32_t kVersion = 3;

// A fast 64-bit checksum, 8 bytes at a time.
uint64_t checksum(const uint8_t* data, size_t size) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ size;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t w;
    std::memcpy(&w, data + i, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  for (; i < size; ++i) h = (h ^ data[i]) * 0x100000001B3ull;
  return h ^ (h >> 29);
}

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  }
  std::vector<uint8_t> bytes;
};

class Reader {
 public:
  Reader(const std::vector<uint8_t>& bytes, size_t end) : bytes_(bytes), end_(end) {}
  bool get_bytes(void* out, size_t n) {
    if (n > end_ - pos_) return false;
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  template <typename T>
  bool get(T& v) {
    return get_bytes(&v, sizeof(T));
  }
  size_t remaining() const { return end_ - pos_; }

 private:
  const std::vector<uint8_t>& bytes_;
  size_t end_;
  size_t pos_ = 0;
};

Status refused(const std::string& path, const std::string& why) {
  return Status(ErrorCode::kCacheFile, "cache file '" + path + "' refused: " + why + "; the cache is unchanged");
}

// "K int4, V int8 KV" (or "f16 KV" where both are one type), from the header's codes.
std::string kv_types_name(uint32_t k, uint32_t v) {
  const auto name = [](uint32_t code) -> std::string {
    return code <= static_cast<uint32_t>(KvDtype::kInt4) ? kv_dtype_name(static_cast<KvDtype>(code)) : "unknown";
  };
  return k == v ? name(k) + " KV" : "K " + name(k) + ", V " + name(v) + " KV";
}

void put_identity(Writer& w, const CacheFileIdentity& id) {
  w.put(id.model);
  w.put(id.rope);
  w.put(static_cast<uint32_t>(id.types.k));
  w.put(static_cast<uint32_t>(id.types.v));
  for (int32_t v : {id.block_size, id.layers, id.kv_heads, id.head_dim}) w.put(static_cast<uint32_t>(v));
  w.put(id.block_bytes);
}

}  // namespace

CacheFileIdentity CacheFileIdentity::of(const BlockHash& model, const KvLayout& layout, uint64_t block_bytes, const BlockHash& rope) {
  return {model, rope, layout.types(), layout.block_size, layout.num_layers, layout.num_kv_heads, layout.head_dim, block_bytes};
}

BlockHash identity_key(const CacheFileIdentity& identity) {
  Writer w;
  w.put(kVersion);
  put_identity(w, identity);
  std::vector<int32_t> words(w.bytes.begin(), w.bytes.end());
  return hash_block(root_hash(0x0FF10AD), words.data(), static_cast<int32_t>(words.size()));
}

uint64_t cache_file_bytes(const CacheFileIdentity& identity, uint64_t blocks) {
  Writer header;
  header.put_bytes(kMagic, sizeof kMagic);
  header.put(kVersion);
  put_identity(header, identity);
  header.put(blocks);
  const uint64_t record = 2 * sizeof(BlockHash) + static_cast<uint64_t>(identity.block_size) * sizeof(int32_t) + identity.block_bytes;
  return header.bytes.size() + blocks * record + sizeof(uint64_t);
}

Status write_cache_file(const std::string& path, const CacheFileIdentity& identity, const std::vector<CachedBlockRecord>& blocks) {
  Writer w;
  w.put_bytes(kMagic, sizeof kMagic);
  w.put(kVersion);
  put_identity(w, identity);
  w.put(static_cast<uint64_t>(blocks.size()));
  for (const CachedBlockRecord& b : blocks) {
    w.put(b.hash);
    w.put(b.parent);
    w.put_bytes(b.tokens.data(), b.tokens.size() * sizeof(int32_t));
    w.put_bytes(b.kv.data(), b.kv.size());
  }
  w.put(checksum(w.bytes.data(), w.bytes.size()));

  const std::string temporary = path + ".partial";
  {
    std::ofstream out(native_path(temporary), std::ios::binary | std::ios::trunc);
    if (!out) return Status(ErrorCode::kIo, "cannot write '" + temporary + "': " + std::strerror(errno));
    out.write(reinterpret_cast<const char*>(w.bytes.data()), static_cast<std::streamsize>(w.bytes.size()));
    out.flush();
    if (fault_armed("cache.write")) {
      out.setstate(std::ios::badbit);
      errno = ENOSPC;
    }
    if (!out) {
      const int err = errno;
      out.close();
      std::error_code ignored;
      std::filesystem::remove(native_path(temporary), ignored);
      return Status(ErrorCode::kIo, "cannot write '" + temporary + "' (" + std::to_string(w.bytes.size()) + " bytes): " + std::strerror(err));
    }
  }
  if (Status moved = replace_file(temporary, path); !moved.is_ok()) {
    std::error_code ignored;
    std::filesystem::remove(native_path(temporary), ignored);
    return moved;
  }
  return Status::ok();
}

Result<std::vector<CachedBlockRecord>> read_cache_file(const std::string& path, const CacheFileIdentity& expected) {
  std::ifstream in(native_path(path), std::ios::binary);
  if (!in) return Status(ErrorCode::kIo, "cannot open '" + path + "': " + std::strerror(errno));
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_cache_file(bytes, path, expected);
}

Result<std::vector<CachedBlockRecord>> parse_cache_file(const std::vector<uint8_t>& bytes, const std::string& path, const CacheFileIdentity& expected) {
  if (bytes.size() < sizeof kMagic + sizeof(uint64_t) || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return refused(path, "not a pagedlm cache file");
  }
  const size_t body = bytes.size() - sizeof(uint64_t);
  uint64_t stored_checksum;
  std::memcpy(&stored_checksum, bytes.data() + body, sizeof stored_checksum);
#ifndef PAGEDLM_FUZZING  // fuzzing explores the parser behind the checksum, which mutations would always break
  if (checksum(bytes.data(), body) != stored_checksum) return refused(path, "checksum mismatch (truncated or corrupted)");
#endif

  Reader r(bytes, body);
  char magic[8];
  uint32_t version = 0, k_dtype = 0, v_dtype = 0, block_size = 0, layers = 0, kv_heads = 0, head_dim = 0;
  BlockHash model, rope;
  uint64_t block_bytes = 0, count = 0;
  const bool header_ok = r.get_bytes(magic, 8) && r.get(version) && r.get(model) && r.get(rope) && r.get(k_dtype) && r.get(v_dtype) && r.get(block_size) &&
                         r.get(layers) && r.get(kv_heads) && r.get(head_dim) && r.get(block_bytes) && r.get(count);
  if (!header_ok) return refused(path, "truncated header");
  if (version != kVersion) return refused(path, "format version " + std::to_string(version) + " (this pagedlm reads " + std::to_string(kVersion) + ")");
  if (model != expected.model) return refused(path, "it was saved from a different model");
  if (rope != expected.rope) {
    return refused(path, "its keys were rotated with other RoPE frequency factors (a LongRoPE model picks them by the context length it is loaded with)");
  }
  if (k_dtype != static_cast<uint32_t>(expected.types.k) || v_dtype != static_cast<uint32_t>(expected.types.v)) {
    return refused(path, "it holds " + kv_types_name(k_dtype, v_dtype) + " but this engine uses " +
                             kv_types_name(static_cast<uint32_t>(expected.types.k), static_cast<uint32_t>(expected.types.v)));
  }
  if (static_cast<int32_t>(block_size) != expected.block_size || static_cast<int32_t>(layers) != expected.layers ||
      static_cast<int32_t>(kv_heads) != expected.kv_heads || static_cast<int32_t>(head_dim) != expected.head_dim ||
      block_bytes != expected.block_bytes) {
    return refused(path, "its KV layout (block size " + std::to_string(block_size) + ") differs from this engine's (block size " +
                             std::to_string(expected.block_size) + ")");
  }
  const uint64_t record = 32 + static_cast<uint64_t>(block_size) * sizeof(int32_t) + block_bytes;
  if (count > r.remaining() / record || count * record != r.remaining()) return refused(path, "block count disagrees with the file size");
  std::vector<CachedBlockRecord> blocks(count);
  for (CachedBlockRecord& b : blocks) {
    b.tokens.resize(block_size);
    b.kv.resize(block_bytes);
    r.get(b.hash);
    r.get(b.parent);
    r.get_bytes(b.tokens.data(), b.tokens.size() * sizeof(int32_t));
    r.get_bytes(b.kv.data(), b.kv.size());
    if (hash_block(b.parent, b.tokens.data(), static_cast<int32_t>(block_size)) != b.hash) return refused(path, "a block's hash does not match its tokens");
  }
  return blocks;
}

}  // namespace pagedlm
