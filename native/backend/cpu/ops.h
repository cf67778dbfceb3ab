// Element-wise and per-row operations of the Llama forward pass (reference-simple, single row).
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
// Rotates the first rope_dim dims of each of n_heads heads of width head_dim, in place.
void rope_apply(float* heads, int n_heads, int head_dim, int rope_dim, RopeLayout layout, const RopeAngles& angles);

}  // namespace pagedlm
