// libFuzzer: arbitrary bytes as a saved prefix cache (cache.load). Damaged files are refused, never a crash.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kv/cache_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagedlm;
  // The identity of the files in the seed corpus (written by scripts/fuzz.js through the engine).
  CacheFileIdentity expected;
  expected.model = {0, 0};
  expected.types = KvTypes::both(KvDtype::kF16);
  expected.block_size = 4;
  expected.layers = 1;
  expected.kv_heads = 1;
  expected.head_dim = 4;
  expected.block_bytes = 2 * 4 * 4 * 2;
  const std::vector<uint8_t> bytes(data, data + size);
  (void)parse_cache_file(bytes, "fuzz", expected);
  return 0;
}
