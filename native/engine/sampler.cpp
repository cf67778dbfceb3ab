#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace pagedlm {

Sampler::Sampler(const SamplingParams& params)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}()) {}

void Sampler::apply_penalties(std::vector<Candidate>& c, const std::vector<int32_t>& history) const {
  const SamplingParams& p = params_;
  if (p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f) return;
  const size_t window = p.penalty_last_n < 0 ? history.size() : std::min<size_t>(history.size(), p.penalty_last_n);
  std::unordered_map<int32_t, int> counts;
  for (size_t i = history.size() - window; i < history.size(); ++i) ++counts[history[i]];
  for (const auto& [id, count] : counts) {
    if (id < 0 || id >= static_cast<int32_t>(c.size())) continue;
    float& logit = c[id].value;
    if (p.repetition_penalty != 1.0f) logit = logit > 0 ? logit / p.repetition_penalty : logit * p.repetition_penalty;
    logit -= static_cast<float>(count) * p.frequency_penalty + p.presence_penalty;
  }
}

int32_t Sampler::sample(const float* logits, int32_t vocab, const std::vector<int32_t>& history) {
  std::vector<Candidate>& c = candidates_;
  c.resize(vocab);
  // A NaN logit (a broken model) would break the orderings below: it ranks last instead.
  for (int32_t i = 0; i < vocab; ++i) c[i] = {i, std::isnan(logits[i]) ? -INFINITY : logits[i]};
  apply_penalties(c, history);
  for (Candidate& x : c) {
    if (std::isnan(x.value)) x.value = -INFINITY;  // penalties on infinite logits
  }

  const auto by_value = [](const Candidate& a, const Candidate& b) { return a.value > b.value || (a.value == b.value && a.id < b.id); };
  if (params_.temperature <= 0.0f) return std::min_element(c.begin(), c.end(), by_value)->id;

  if (params_.top_k > 0 && params_.top_k < vocab) {
    std::partial_sort(c.begin(), c.begin() + params_.top_k, c.end(), by_value);
    c.resize(params_.top_k);
  } else {
    std::sort(c.begin(), c.end(), by_value);
  }
  return sample_sorted(c);
}

int32_t Sampler::sample_top_k(const int32_t* ids, const float* values, int32_t count) {
  if (params_.temperature <= 0.0f) return ids[0];  // greedy: the best candidate
  std::vector<Candidate>& c = candidates_;
  c.resize(std::min(count, params_.top_k));
  for (size_t i = 0; i < c.size(); ++i) c[i] = {ids[i], values[i]};
  return sample_sorted(c);
}

int32_t Sampler::sample_sorted(std::vector<Candidate>& c) {
  // Softmax with temperature; c is sorted, so c[0] holds the largest logit.
  const float max = c[0].value;
  if (!std::isfinite(max)) return c[0].id;  // an infinite logit wins outright; all -inf: nothing to weigh
  double sum = 0;
  for (Candidate& x : c) {
    x.value = std::exp((x.value - max) / params_.temperature);
    sum += x.value;
  }
  for (Candidate& x : c) x.value = static_cast<float>(x.value / sum);

  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    size_t keep = 0;
    while (keep < c.size() && cumulative < params_.top_p) cumulative += c[keep++].value;
    c.resize(std::max<size_t>(keep, 1));
  }
  if (params_.min_p > 0.0f) {
    const float threshold = params_.min_p * c[0].value;
    size_t keep = 1;
    while (keep < c.size() && c[keep].value >= threshold) ++keep;
    c.resize(keep);
  }
  return draw(c);
}

int32_t Sampler::draw(const std::vector<Candidate>& probabilities) {
  double total = 0;
  for (const Candidate& x : probabilities) total += x.value;
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
  double cumulative = 0;
  for (const Candidate& x : probabilities) {
    cumulative += x.value;
    if (u < cumulative) return x.id;
  }
  return probabilities.back().id;
}

}  // namespace pagedlm
