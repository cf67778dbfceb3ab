#include "backend/cpu/ops.h"

#include <cmath>

namespace pagedlm {

void rms_norm(const float* x, const float* weight, float* out, int n, float eps) {
  // Eight running sums (one per lane of a vector, so the compiler can vectorize the loop without
  // reordering float additions), added in a fixed order. One running sum would be a chain of n dependent
  // additions, on the engine thread while the pool's workers wait.
  constexpr int kLanes = 8;
  float lanes[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] += x[i + j] * x[i + j];
  }
  float sum = 0;
  for (float lane : lanes) sum += lane;
  for (; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / n + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

std::vector<float> rope_inverse_frequencies(const ModelConfig& c) {
  std::vector<float> frequencies(c.rope_dim / 2);
  for (size_t i = 0; i < frequencies.size(); ++i) {
    float freq = 1.0f / std::pow(c.rope_base, static_cast<float>(2 * i) / static_cast<float>(c.rope_dim));
    if (!c.rope_freq_factors.empty()) freq /= c.rope_freq_factors[i];
    frequencies[i] = freq;
  }
  return frequencies;
}

void rope_angles(const ModelConfig& c, int position, RopeAngles& out) {
  const std::vector<float> frequencies = rope_inverse_frequencies(c);
  out.cos.resize(frequencies.size());
  out.sin.resize(frequencies.size());
  const float pos = static_cast<float>(position) * c.rope_position_scale;
  for (size_t i = 0; i < frequencies.size(); ++i) {
    const float angle = pos * frequencies[i];
    out.cos[i] = std::cos(angle);
    out.sin[i] = std::sin(angle);
  }
}

RopeSettings rope_settings(const ModelConfig& c, const LayerAttention& layer, const std::vector<float>& factors) {
  RopeSettings s;
  s.frequencies.resize(c.rope_dim / 2);
  for (size_t i = 0; i < s.frequencies.size(); ++i) {
    float freq = 1.0f / std::pow(layer.rope_base, static_cast<float>(2 * i) / static_cast<float>(c.rope_dim));
    if (layer.rope_scaled && !factors.empty()) freq /= factors[i];
    s.frequencies[i] = freq;
  }
  s.position_scale = layer.rope_position_scale;
  s.attention_factor = c.rope_attention_factor;
  return s;
}

void rope_angles(const RopeSettings& s, int position, RopeAngles& out) {
  out.cos.resize(s.frequencies.size());
  out.sin.resize(s.frequencies.size());
  const float pos = static_cast<float>(position) * s.position_scale;
  for (size_t i = 0; i < s.frequencies.size(); ++i) {
    const float angle = pos * s.frequencies[i];
    out.cos[i] = std::cos(angle) * s.attention_factor;
    out.sin[i] = std::sin(angle) * s.attention_factor;
  }
}

void geglu(float* gate, const float* up, int n) {
  constexpr float kSqrt2OverPi = 0.7978845608f;
  for (int i = 0; i < n; ++i) {
    const float x = gate[i];
    gate[i] = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x))) * up[i];
  }
}

void softcap(float* x, int n, float cap) {
  for (int i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

void rope_apply(float* heads, int n_heads, int head_dim, int rope_dim, RopeLayout layout, const RopeAngles& a) {
  const int pairs = rope_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = heads + static_cast<size_t>(h) * head_dim;
    for (int i = 0; i < pairs; ++i) {
      const int i0 = layout == RopeLayout::kNormal ? 2 * i : i;
      const int i1 = layout == RopeLayout::kNormal ? 2 * i + 1 : i + pairs;
      const float x0 = v[i0], x1 = v[i1];
      v[i0] = x0 * a.cos[i] - x1 * a.sin[i];
      v[i1] = x0 * a.sin[i] + x1 * a.cos[i];
    }
  }
}

}  // namespace pagedlm
