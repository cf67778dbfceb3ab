#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace pagedlm {

TokenLogprobs compute_logprobs(const float* logits, int32_t vocab, int32_t token, int32_t top_n) {
  const auto value = [logits](int32_t i) { return std::isnan(logits[i]) ? -INFINITY : static_cast<double>(logits[i]); };
  double max = -INFINITY;
  for (int32_t i = 0; i < vocab; ++i) max = std::max(max, value(i));
  double sum = 0;
  if (std::isfinite(max)) {
    for (int32_t i = 0; i < vocab; ++i) sum += std::exp(value(i) - max);
  }
  // All -inf (or an infinite logit): no finite distribution to normalize; every logprob is -inf but the max's.
  const double log_total = std::isfinite(max) ? max + std::log(sum) : max;
  const auto logprob = [&](int32_t i) {
    const double v = value(i);
    return static_cast<float>(std::isfinite(log_total) ? v - log_total : (v == max ? 0.0 : -INFINITY));
  };
  TokenLogprobs out;
  out.chosen = {token, token >= 0 && token < vocab ? logprob(token) : -INFINITY, {}};
  const int32_t n = std::clamp(top_n, 0, vocab);
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  for (int32_t i = 0; i < vocab; ++i) ids[i] = i;
  const auto better = [&](int32_t a, int32_t b) { return value(a) > value(b) || (value(a) == value(b) && a < b); };
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), better);
  out.top.reserve(static_cast<size_t>(n));
  for (int32_t k = 0; k < n; ++k) out.top.push_back({ids[k], logprob(ids[k]), {}});
  return out;
}

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
