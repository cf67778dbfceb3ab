// The hash of a run of token ids that both n-gram tables key on. Equal hashes never decide a match: every
// lookup compares the token ids themselves, so a collision costs a probe, never a wrong proposal.
#pragma once

#include <cstdint>

namespace pagedlm::speculative {

inline uint64_t ngram_hash(const int32_t* tokens, int32_t count) {
  uint64_t h = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(count + 1);  // the length is part of the key
  for (int32_t i = 0; i < count; ++i) {
    h = (h ^ static_cast<uint32_t>(tokens[i])) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

}  // namespace pagedlm::speculative
