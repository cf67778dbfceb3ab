#include "backend/cpu/logit_select.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace pagedlm {

namespace {
// argmax_logits finds the largest value one chunk at a time, then looks for its first occurrence inside the
// first chunk holding it: one vectorized pass over the row and a short scalar one.
constexpr int kChunk = 4096;

struct Candidate {
  float value;
  int32_t id;
};
// Better: a larger value, or the same value and a lower id.
bool better(const Candidate& a, const Candidate& b) { return a.value > b.value || (a.value == b.value && a.id < b.id); }
}  // namespace

int32_t argmax_logits(const CpuKernels& kernels, const float* x, int n) {
  float best = -INFINITY;
  int best_chunk = 0;
  for (int begin = 0; begin < n; begin += kChunk) {
    const float chunk_max = kernels.max_f32(x + begin, std::min(kChunk, n - begin));
    if (chunk_max > best) {
      best = chunk_max;
      best_chunk = begin;
    }
  }
  // Every logit -inf or NaN: all rank equal, the lowest id wins.
  if (best == -INFINITY) return 0;
  for (int i = best_chunk;; ++i) {
    if (x[i] == best) return i;
  }
}

void top_k_logits(const float* x, int n, int k, int32_t* ids, float* values) {
  // A heap of the k best so far with the worst on top. Ids only grow along the row, so a later logit beats
  // the worst only by a larger value: one comparison per logit, which after the first few thousand almost
  // always says no (and NaN never says yes).
  const auto worse_first = [](const Candidate& a, const Candidate& b) { return better(a, b); };
  std::vector<Candidate> heap;
  heap.reserve(k);
  for (int i = 0; i < k; ++i) heap.push_back({std::isnan(x[i]) ? -INFINITY : x[i], i});
  std::make_heap(heap.begin(), heap.end(), worse_first);
  float worst = heap.front().value;
  for (int i = k; i < n; ++i) {
    if (!(x[i] > worst)) continue;
    std::pop_heap(heap.begin(), heap.end(), worse_first);
    heap.back() = {x[i], i};
    std::push_heap(heap.begin(), heap.end(), worse_first);
    worst = heap.front().value;
  }
  std::sort_heap(heap.begin(), heap.end(), worse_first);
  for (int i = 0; i < k; ++i) {
    ids[i] = heap[i].id;
    values[i] = heap[i].value;
  }
}

}  // namespace pagedlm
