// libFuzzer: arbitrary sampling options, logits (NaN and infinities included) and history. The sampler must
// always return a token id inside the vocabulary.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/sampler.h"

namespace {
struct Reader {
  const uint8_t* data;
  size_t size;
  template <typename T>
  T take() {
    T v{};
    if (size >= sizeof(T)) {
      std::memcpy(&v, data, sizeof(T));
      data += sizeof(T);
      size -= sizeof(T);
    }
    return v;
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagedlm;
  Reader r{data, size};
  SamplingParams p;
  p.temperature = r.take<float>();
  p.top_k = r.take<int32_t>();
  p.top_p = r.take<float>();
  p.min_p = r.take<float>();
  p.repetition_penalty = r.take<float>();
  p.frequency_penalty = r.take<float>();
  p.presence_penalty = r.take<float>();
  p.penalty_last_n = r.take<int16_t>();
  p.seed = r.take<uint64_t>();
  const int32_t vocab = 1 + r.take<uint8_t>();
  std::vector<float> logits(vocab);
  for (float& x : logits) x = r.take<float>();
  std::vector<int32_t> history;
  while (r.size >= 2) history.push_back(r.take<int16_t>());
  Sampler sampler(p);
  const int32_t id = sampler.sample(logits.data(), vocab, history);
  if (id < 0 || id >= vocab) std::abort();
  return 0;
}
