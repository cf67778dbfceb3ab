#include "kv/block_hash.h"

namespace pagedlm {

namespace {

// splitmix64 finalizer: a strong 64-bit mixer.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

BlockHash root_hash(uint64_t salt) { return {mix(salt ^ 0x5A17ull), mix(~salt)}; }

BlockHash hash_block(const BlockHash& parent, const int32_t* tokens, int32_t count) {
  // Two independent 64-bit lanes, each absorbing every token with a different key.
  uint64_t hi = mix(parent.hi ^ 0xA0761D6478BD642Full), lo = mix(parent.lo ^ 0xE7037ED1A0B428DBull);
  for (int32_t i = 0; i < count; ++i) {
    const uint64_t t = static_cast<uint32_t>(tokens[i]);
    hi = mix(hi ^ (t * 0x8EBC6AF09C88C6E3ull));
    lo = mix(lo + (t ^ 0x589965CC75374CC3ull));
  }
  return {mix(hi ^ static_cast<uint64_t>(count)), mix(lo + static_cast<uint64_t>(count))};
}

}  // namespace pagedlm
