// The on-disk form of the prefix cache (engine.cache.save / load): every cached block with its hash chain
// link, token ids and K/V bytes, behind a header naming the model and KV layout it belongs to and followed
// by a checksum of everything before it. Reading validates the whole file before anyone uses a byte.
//
// Layout (little-endian):
//   "PGLMKV01" | u32 version | 16-byte model fingerprint | u32 k_dtype, v_dtype, block_size, layers, kv_heads, head_dim
//   | u64 block_bytes | u64 block count | blocks... | u64 checksum
//   block: 16-byte hash | 16-byte parent hash | i32 tokens[block_size] | block_bytes of K/V (Backend::export_block)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "kv/block_hash.h"
#include "kv/kv_layout.h"

namespace pagedlm {

struct CacheFileIdentity {
  BlockHash model;  // fingerprint of the model file (see model_fingerprint)
  // Fingerprint of the RoPE frequency factors the keys were rotated with: a LongRoPE model picks its factors by
  // the context length it is loaded with, so one file can cache two incompatible kinds of K.
  BlockHash rope;
  KvTypes types;
  int32_t block_size = 0;
  int32_t layers = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  uint64_t block_bytes = 0;  // K/V bytes of one block across all layers

  static CacheFileIdentity of(const BlockHash& model, const KvLayout& layout, uint64_t block_bytes, const BlockHash& rope = {});
};

struct CachedBlockRecord {
  BlockHash hash;
  BlockHash parent;
  std::vector<int32_t> tokens;  // [block_size]
  std::vector<uint8_t> kv;      // [block_bytes]
};

// Names the model and layout an identity stands for, for the offload tier's folder.
BlockHash identity_key(const CacheFileIdentity& identity);
// The size of a file of `blocks` blocks.
uint64_t cache_file_bytes(const CacheFileIdentity& identity, uint64_t blocks);

// Writes to `path` through a temporary file renamed into place, so a failed save leaves any old file intact.
Status write_cache_file(const std::string& path, const CacheFileIdentity& identity, const std::vector<CachedBlockRecord>& blocks);
// Reads and checks a whole file against `expected`; kCacheFile names what does not match.
Result<std::vector<CachedBlockRecord>> read_cache_file(const std::string& path, const CacheFileIdentity& expected);
// The same checks on bytes already in memory (`path` only names them in messages).
Result<std::vector<CachedBlockRecord>> parse_cache_file(const std::vector<uint8_t>& bytes, const std::string& path, const CacheFileIdentity& expected);

}  // namespace pagedlm
