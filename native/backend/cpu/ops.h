// Element-wise and per-row operations of the forward pass (reference-simple, single row).
#pragma once

#include <cstdint>
#include <vector>

#include "model/llama_model.h"

namespace pagedlm {

// out[i] = x[i] / rms(x) * weight[i]
void rms_norm(const float* x, const float* weight, float* out, int n, float eps);

// Rotation angles of one position: cos/sin for each of rope_dim/2 pairs.
struct RopeAngles {
  std::vector<float> cos;  // [rope_dim / 2]
  std::vector<float> sin;
};
void rope_angles(const ModelConfig& config, int position, RopeAngles& out);
// The frequency of each of the rope_dim/2 pairs, llama3 factors applied: angle = position x scale x frequency.
std::vector<float> rope_inverse_frequencies(const ModelConfig& config);

// One layer's RoPE: its frequencies (base and factors), position scale, and the factor on cos and sin.
struct RopeSettings {
  std::vector<float> frequencies;  // [rope_dim / 2]
  float position_scale = 1.0f;
  float attention_factor = 1.0f;
  bool operator==(const RopeSettings&) const = default;
};
// `factors`: the model's frequency factors for the context it runs with (ModelConfig::rope_factors_for_context),
// applied where the layer is scaled.
RopeSettings rope_settings(const ModelConfig& config, const LayerAttention& layer, const std::vector<float>& factors);
void rope_angles(const RopeSettings& settings, int position, RopeAngles& out);

// x[i] = gelu(x[i]) x up[i], GELU in its tanh approximation.
void geglu(float* gate, const float* up, int n);
// x[i] = cap x tanh(x[i] / cap).
void softcap(float* x, int n, float cap);
// Rotates the first rope_dim dims of each of n_heads heads of width head_dim, in place.
void rope_apply(float* heads, int n_heads, int head_dim, int rope_dim, RopeLayout layout, const RopeAngles& angles);

}  // namespace pagedlm
