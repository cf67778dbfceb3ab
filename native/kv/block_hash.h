// Identity of a full KV block for prefix caching: a 128-bit hash chained over the parent block's hash,
// the block's token ids and a cache salt. Equal hashes alone never decide a hit: the pool also compares
// the stored parent hash and token ids, so a collision cannot serve wrong KV.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagedlm {

struct BlockHash {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const BlockHash& o) const { return hi == o.hi && lo == o.lo; }
  bool operator!=(const BlockHash& o) const { return !(*this == o); }
};

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi * 0x9E3779B97F4A7C15ull)); }
};

// The parent of a sequence's first block: depends only on the salt, so salted requests share nothing
// with unsalted ones or with other salts.
BlockHash root_hash(uint64_t salt);
BlockHash hash_block(const BlockHash& parent, const int32_t* tokens, int32_t count);

}  // namespace pagedlm
