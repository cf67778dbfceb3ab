#include "support/synthetic_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <optional>
#include <random>

namespace pagedlm::testing {

namespace {

std::vector<float> random_values(std::mt19937_64& rng, size_t n, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void add_matrix(GgufWriter& w, std::mt19937_64& rng, const std::string& name, int rows, int cols, TensorType type) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
  w.add_tensor(name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)}, type, encode_tensor(random_values(rng, static_cast<size_t>(rows) * cols, scale), type));
}

void add_vector(GgufWriter& w, std::mt19937_64& rng, const std::string& name, int n, float mean, float spread) {
  std::vector<float> v = random_values(rng, n, spread);
  for (float& x : v) x += mean;
  w.add_tensor(name, {static_cast<uint64_t>(n)}, TensorType::kF32, encode_tensor(v, TensorType::kF32));
}

void add_vocabulary(GgufWriter& w, int vocab) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tokens.push_back(name);
    types.push_back(6);
  }
  const char* pieces[] = {"\xE2\x96\x81", "e", "t", "a", "o", "n", "\xE2\x96\x81t", "he", "\xE2\x96\x81the", "in", "er", "\xE2\x96\x81" "a"};
  for (const char* p : pieces) {
    if (static_cast<int>(tokens.size()) < vocab) {
      tokens.push_back(p);
      types.push_back(1);
    }
  }
  while (static_cast<int>(tokens.size()) < vocab) {
    tokens.push_back("tok" + std::to_string(tokens.size()));
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_f32_array("tokenizer.ggml.scores", scores);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_u32("tokenizer.ggml.unknown_token_id", 0);
}

// deepseek2's attention metadata as llama.cpp's converter writes the MLA form: one KV head whose key is the
// latent and the RoPE part, the per-head sizes in the _mla keys, and the expert keys llama.cpp requires even
// of dense layers.
void add_latent_metadata(GgufWriter& w, const SyntheticSpec& s) {
  const std::string a = s.architecture + ".";
  w.add_u32(a + "attention.head_count_kv", 1);
  w.add_u32(a + "attention.key_length", s.kv_lora_rank + s.mla_rope_dim);
  w.add_u32(a + "attention.value_length", s.kv_lora_rank);
  w.add_u32(a + "attention.key_length_mla", s.qk_nope_dim + s.mla_rope_dim);
  w.add_u32(a + "attention.value_length_mla", s.v_head_dim);
  w.add_u32(a + "attention.kv_lora_rank", s.kv_lora_rank);
  w.add_u32(a + "attention.q_lora_rank", s.q_lora_rank);
  w.add_u32(a + "rope.dimension_count", s.mla_rope_dim);
  w.add_u32(a + "leading_dense_block_count", s.dense_layers < 0 ? s.layers : s.dense_layers);
  w.add_u32(a + "expert_feed_forward_length", s.ffn);
  w.add_u32(a + "expert_shared_count", 1);
}

void add_latent_attention(GgufWriter& w, std::mt19937_64& rng, const SyntheticSpec& s, const std::string& p) {
  const int query_width = s.heads * (s.qk_nope_dim + s.mla_rope_dim);
  if (s.q_lora_rank > 0) {
    add_matrix(w, rng, p + "attn_q_a.weight", s.q_lora_rank, s.dim, s.weight_type);
    add_vector(w, rng, p + "attn_q_a_norm.weight", s.q_lora_rank, 1.0f, 0.1f);
    add_matrix(w, rng, p + "attn_q_b.weight", query_width, s.q_lora_rank, s.weight_type);
  } else {
    add_matrix(w, rng, p + "attn_q.weight", query_width, s.dim, s.weight_type);
  }
  add_matrix(w, rng, p + "attn_kv_a_mqa.weight", s.kv_lora_rank + s.mla_rope_dim, s.dim, s.weight_type);
  add_vector(w, rng, p + "attn_kv_a_norm.weight", s.kv_lora_rank, 1.0f, 0.1f);
  const auto per_head = [&](const std::string& name, int rows, int cols) {
    const size_t n = static_cast<size_t>(s.heads) * rows * cols;
    w.add_tensor(name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), static_cast<uint64_t>(s.heads)}, s.weight_type,
                 encode_tensor(random_values(rng, n, 1.0f / std::sqrt(static_cast<float>(cols))), s.weight_type));
  };
  per_head(p + "attn_k_b.weight", s.kv_lora_rank, s.qk_nope_dim);
  per_head(p + "attn_v_b.weight", s.v_head_dim, s.kv_lora_rank);
}

}  // namespace

GgufWriter synthetic_model(const SyntheticSpec& s) {
  std::mt19937_64 rng(s.seed);
  GgufWriter w;
  const std::string a = s.architecture;
  const int head_dim = s.head_dim > 0 ? s.head_dim : s.dim / s.heads;
  w.add_string("general.architecture", a);
  w.add_string("general.name", "synthetic");
  w.add_u32(a + ".context_length", s.context);
  w.add_u32(a + ".embedding_length", s.dim);
  w.add_u32(a + ".block_count", s.layers);
  w.add_u32(a + ".feed_forward_length", s.ffn);
  w.add_u32(a + ".attention.head_count", s.heads);
  if (s.latent()) {
    add_latent_metadata(w, s);
  } else {
    w.add_u32(a + ".attention.head_count_kv", s.kv_heads);
  }
  if (s.head_dim > 0 && !s.latent()) {
    // Both, as converters write them: llama.cpp sizes K by key_length but V (and, for some architectures,
    // K's rows too) by value_length, which defaults to embedding_length / head_count.
    w.add_u32(a + ".attention.key_length", head_dim);
    w.add_u32(a + ".attention.value_length", head_dim);
  }
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.add_f32(a + ".rope.freq_base", 10000.0f);
  if (!s.latent()) w.add_u32(a + ".rope.dimension_count", head_dim);
  if (s.rope_scaling == "linear") {
    w.add_string(a + ".rope.scaling.type", "linear");
    w.add_f32(a + ".rope.scaling.factor", 4.0f);
  } else if (s.rope_scaling == "llama3") {
    w.add_string(a + ".rope.scaling.type", "llama3");
    w.add_f32(a + ".rope.scaling.factor", 8.0f);
    w.add_f32(a + ".rope.scaling.low_freq_factor", 1.0f);
    w.add_f32(a + ".rope.scaling.high_freq_factor", 4.0f);
    w.add_u32(a + ".rope.scaling.original_context_length", 64);
  } else if (s.rope_scaling == "longrope") {
    // As the phi3 converter writes it: the original context and the magnitude factor; the factors are tensors.
    w.add_u32(a + ".rope.scaling.original_context_length", static_cast<uint32_t>(s.context / 4));
    w.add_f32(a + ".rope.scaling.attn_factor", 1.19f);
  }
  if (s.sliding_window > 0) w.add_u32(a + ".attention.sliding_window", static_cast<uint32_t>(s.sliding_window));
  if (s.pooling_type >= 0) w.add_u32(a + ".pooling_type", static_cast<uint32_t>(s.pooling_type));
  if (s.attn_softcap > 0) w.add_f32(a + ".attn_logit_softcapping", s.attn_softcap);
  if (s.final_softcap > 0) w.add_f32(a + ".final_logit_softcapping", s.final_softcap);
  add_vocabulary(w, s.vocab);

  // Embeddings large enough that logits spread out and greedy choices are clear.
  w.add_tensor("token_embd.weight", {static_cast<uint64_t>(s.dim), static_cast<uint64_t>(s.vocab)}, s.weight_type,
               encode_tensor(random_values(rng, static_cast<size_t>(s.vocab) * s.dim, 1.0f), s.weight_type));
  add_vector(w, rng, "output_norm.weight", s.dim, 1.0f, 0.1f);
  if (!s.tied_output) add_matrix(w, rng, "output.weight", s.vocab, s.dim, s.weight_type);
  // Frequency factors of at least 1, as real ones are (they stretch wavelengths).
  const auto add_factors = [&](const std::string& name, float spread) {
    std::vector<float> f = random_values(rng, head_dim / 2, spread);
    for (float& x : f) x = 1.0f + std::fabs(x);
    w.add_tensor(name, {static_cast<uint64_t>(head_dim / 2)}, TensorType::kF32, encode_tensor(f, TensorType::kF32));
  };
  if (s.rope_scaling == "llama3_tensor") add_factors("rope_freqs.weight", 2.0f);
  if (s.rope_scaling == "longrope") {
    add_factors("rope_factors_long.weight", 4.0f);
    add_factors("rope_factors_short.weight", 0.5f);
  }
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add_vector(w, rng, p + "attn_norm.weight", s.dim, 1.0f, 0.1f);
    if (s.latent()) {
      add_latent_attention(w, rng, s, p);
    } else if (s.fused()) {
      // Q, then K, then V rows in one tensor.
      add_matrix(w, rng, p + "attn_qkv.weight", (s.heads + 2 * s.kv_heads) * head_dim, s.dim, s.weight_type);
    } else {
      add_matrix(w, rng, p + "attn_q.weight", s.heads * head_dim, s.dim, s.weight_type);
      add_matrix(w, rng, p + "attn_k.weight", s.kv_heads * head_dim, s.dim, s.weight_type);
      add_matrix(w, rng, p + "attn_v.weight", s.kv_heads * head_dim, s.dim, s.v_up_type.value_or(s.weight_type));
    }
    add_matrix(w, rng, p + "attn_output.weight", s.dim, s.heads * (s.latent() ? s.v_head_dim : head_dim), s.weight_type);
    if (s.qk_norm()) {
      add_vector(w, rng, p + "attn_q_norm.weight", head_dim, 1.0f, 0.2f);
      add_vector(w, rng, p + "attn_k_norm.weight", head_dim, 1.0f, 0.2f);
    }
    // Gemma's converter stores 1 + the checkpoint's norm weights: around 1, like every other norm here.
    if (s.post_norms()) add_vector(w, rng, p + "post_attention_norm.weight", s.dim, 1.0f, 0.1f);
    if (s.qkv_bias) {
      add_vector(w, rng, p + "attn_q.bias", s.heads * head_dim, 0.0f, 0.1f);
      add_vector(w, rng, p + "attn_k.bias", s.kv_heads * head_dim, 0.0f, 0.1f);
      add_vector(w, rng, p + "attn_v.bias", s.kv_heads * head_dim, 0.0f, 0.1f);
    }
    add_vector(w, rng, p + "ffn_norm.weight", s.dim, 1.0f, 0.1f);
    if (s.fused()) {
      add_matrix(w, rng, p + "ffn_up.weight", 2 * s.ffn, s.dim, s.weight_type);  // gate rows, then up rows
    } else {
      add_matrix(w, rng, p + "ffn_gate.weight", s.ffn, s.dim, s.weight_type);
      add_matrix(w, rng, p + "ffn_up.weight", s.ffn, s.dim, s.v_up_type.value_or(s.weight_type));
    }
    add_matrix(w, rng, p + "ffn_down.weight", s.dim, s.ffn, s.weight_type);
    if (s.post_norms()) add_vector(w, rng, p + "post_ffw_norm.weight", s.dim, 1.0f, 0.1f);
  }
  return w;
}

std::string temp_path(const std::string& name) {
  // CTest runs tests in parallel processes: each writes its own files, under a name drawn once per process.
  static const std::string process_tag = std::to_string(std::random_device{}());
  return ::testing::TempDir() + "pagedlm_" + process_tag + "_" + name;
}

std::string write_synthetic_model(const SyntheticSpec& spec, const std::string& name) {
  const std::string path = temp_path(name);
  synthetic_model(spec).write(path);
  return path;
}

// ---- double-precision reference ------------------------------------------------------------------------

namespace {

using Matrix = std::vector<double>;  // row-major [rows][cols]

Matrix to_double(const WeightMatrix& w) {
  Matrix m(static_cast<size_t>(w.rows) * w.cols);
  std::vector<float> row(w.cols);
  for (int r = 0; r < w.rows; ++r) {
    dequantize_row(w.type, w.row(r), row.data(), w.cols);
    for (int c = 0; c < w.cols; ++c) m[static_cast<size_t>(r) * w.cols + c] = row[c];
  }
  return m;
}

std::vector<double> matvec(const Matrix& m, int rows, int cols, const std::vector<double>& x) {
  std::vector<double> y(rows, 0.0);
  for (int r = 0; r < rows; ++r) {
    double sum = 0;
    for (int c = 0; c < cols; ++c) sum += m[static_cast<size_t>(r) * cols + c] * x[c];
    y[r] = sum;
  }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * w[i];
  return out;
}

// The reference's own reading of what each architecture does (llama.cpp's rules, written out here
// rather than taken from the loader's config, so that a loader mistake shows up as a mismatch).
struct ArchitectureMath {
  bool gemma = false;           // GeGLU, embeddings x sqrt(dim)
  double attention_softcap = 0;
  double final_softcap = 0;
  std::vector<int> window;      // [layer] 0: full attention
  std::vector<double> rope_base;
  std::vector<double> position_scale;
  std::vector<bool> rope_scaled;  // whether the frequency factors apply
};

std::optional<double> metadata_float(const LlamaModel& model, const std::string& key) {
  auto v = model.gguf().get_float(key);
  return v.is_ok() && v.value() ? std::optional<double>(*v.value()) : std::nullopt;
}

ArchitectureMath architecture_math(const LlamaModel& model) {
  const ModelConfig& c = model.config();
  const std::string& a = c.architecture;
  ArchitectureMath m;
  m.gemma = a == "gemma2" || a == "gemma3";
  if (a == "gemma2") {
    m.attention_softcap = metadata_float(model, a + ".attn_logit_softcapping").value_or(50.0);
    m.final_softcap = metadata_float(model, a + ".final_logit_softcapping").value_or(30.0);
  } else if (a == "gemma3") {
    m.final_softcap = metadata_float(model, a + ".final_logit_softcapping").value_or(0.0);
  }
  auto window_key = model.gguf().get_int(a + ".attention.sliding_window");
  int window = window_key.is_ok() && window_key.value() ? static_cast<int>(*window_key.value()) : (a == "gemma2" ? 4096 : 0);
  if (a == "qwen2" || a == "qwen3" || a == "phi3") window = 0;
  const double base = metadata_float(model, a + ".rope.freq_base").value_or(10000.0);
  auto scaling = model.gguf().get_string(a + ".rope.scaling.type");
  const bool linear = scaling.is_ok() && scaling.value() && *scaling.value() == "linear";
  const double scale = linear ? 1.0 / metadata_float(model, a + ".rope.scaling.factor").value_or(1.0) : 1.0;
  for (int l = 0; l < c.n_layers; ++l) {
    bool windowed = window > 0;
    if (a == "gemma2") windowed = windowed && l % 2 == 0;
    if (a == "gemma3") windowed = windowed && l % 6 != 5;
    m.window.push_back(windowed ? window : 0);
    const bool local = a == "gemma3" && windowed;  // Gemma 3's local layers: base 10000, no scaling
    m.rope_base.push_back(local ? 10000.0 : base);
    m.position_scale.push_back(local ? 1.0 : scale);
    m.rope_scaled.push_back(!local);
  }
  return m;
}

// Rotates the rope_dim values at x.
void rope_at(double* x, int pos, const ModelConfig& c, double base, double position_scale, const std::vector<float>& factors) {
  const int pairs = c.rope_dim / 2;
  {
    for (int i = 0; i < pairs; ++i) {
      double freq = std::pow(base, -2.0 * i / c.rope_dim);
      if (!factors.empty()) freq /= factors[i];
      const double angle = pos * position_scale * freq;
      const double cos = std::cos(angle) * c.rope_attention_factor, sin = std::sin(angle) * c.rope_attention_factor;
      const int i0 = c.rope_layout == RopeLayout::kNormal ? 2 * i : i;
      const int i1 = c.rope_layout == RopeLayout::kNormal ? 2 * i + 1 : i + pairs;
      const double a = x[i0], b = x[i1];
      x[i0] = a * cos - b * sin;
      x[i1] = a * sin + b * cos;
    }
  }
}

void rope(std::vector<double>& v, int heads, int pos, const ModelConfig& c, double base, double position_scale, const std::vector<float>& factors) {
  for (int h = 0; h < heads; ++h) rope_at(v.data() + static_cast<size_t>(h) * c.head_dim, pos, c, base, position_scale, factors);
}

int metadata_int(const LlamaModel& model, const std::string& key) {
  auto v = model.gguf().get_int(key);
  return v.is_ok() && v.value() ? static_cast<int>(*v.value()) : 0;
}

// deepseek2's attention of one token in the plain, decompressed form (llama.cpp's attn_kv_b path): each
// head's key is [W_UK latent, shared RoPE'd key part], its value W_UV latent; full K and V per head are kept
// in `keys` and `values`. Returns wo's input.
std::vector<double> latent_attention(const LlamaModel& model, int layer, const std::vector<double>& xb, int pos,
                                     std::vector<std::vector<double>>& keys, std::vector<std::vector<double>>& values) {
  const ModelConfig& c = model.config();
  const LayerWeights& lw = model.layers()[layer];
  const std::string a = c.architecture + ".";
  const int heads = c.n_heads, rank = metadata_int(model, a + "attention.kv_lora_rank"), rope_dim = metadata_int(model, a + "rope.dimension_count");
  const int key_width = metadata_int(model, a + "attention.key_length_mla"), nope = key_width - rope_dim;
  const int v_width = metadata_int(model, a + "attention.value_length_mla");
  std::vector<double> q;
  if (lw.wq_a.data != nullptr) {
    const std::vector<double> low = rmsnorm(matvec(to_double(lw.wq_a), lw.wq_a.rows, c.dim, xb), lw.q_a_norm, c.rms_eps);
    q = matvec(to_double(lw.wq_b), heads * key_width, lw.wq_b.cols, low);
  } else {
    q = matvec(to_double(lw.wq), heads * key_width, c.dim, xb);
  }
  std::vector<double> kv = matvec(to_double(lw.wkv_a), rank + rope_dim, c.dim, xb);
  const std::vector<double> latent = rmsnorm(std::vector<double>(kv.begin(), kv.begin() + rank), lw.kv_a_norm, c.rms_eps);
  rope_at(kv.data() + rank, pos, c, c.rope_base, 1.0, {});
  std::vector<double> key(static_cast<size_t>(heads) * key_width), value(static_cast<size_t>(heads) * v_width);
  for (int h = 0; h < heads; ++h) {
    rope_at(q.data() + static_cast<size_t>(h) * key_width + nope, pos, c, c.rope_base, 1.0, {});
    const std::vector<double> k_nope_from = to_double(lw.wk_b[h]);  // [rank][nope]
    for (int i = 0; i < nope; ++i) {
      double sum = 0;
      for (int r = 0; r < rank; ++r) sum += k_nope_from[static_cast<size_t>(r) * nope + i] * latent[r];
      key[static_cast<size_t>(h) * key_width + i] = sum;
    }
    std::copy_n(kv.begin() + rank, rope_dim, key.begin() + static_cast<std::ptrdiff_t>(h) * key_width + nope);
    const std::vector<double> v_from = matvec(to_double(lw.wv_b[h]), v_width, rank, latent);
    std::copy(v_from.begin(), v_from.end(), value.begin() + static_cast<std::ptrdiff_t>(h) * v_width);
  }
  keys.push_back(key);
  values.push_back(value);
  const double scale = 1.0 / std::sqrt(static_cast<double>(key_width));
  std::vector<double> att(static_cast<size_t>(heads) * v_width, 0.0);
  for (int h = 0; h < heads; ++h) {
    std::vector<double> scores(keys.size());
    double max = -1e300;
    for (size_t p = 0; p < keys.size(); ++p) {
      double s = 0;
      for (int i = 0; i < key_width; ++i) s += q[static_cast<size_t>(h) * key_width + i] * keys[p][static_cast<size_t>(h) * key_width + i];
      max = std::max(max, scores[p] = s * scale);
    }
    double sum = 0;
    for (double& s : scores) sum += (s = std::exp(s - max));
    for (size_t p = 0; p < keys.size(); ++p) {
      for (int j = 0; j < v_width; ++j) att[static_cast<size_t>(h) * v_width + j] += scores[p] / sum * values[p][static_cast<size_t>(h) * v_width + j];
    }
  }
  return att;
}

void add_bias(std::vector<double>& v, const std::vector<float>& bias) {
  for (size_t i = 0; i < bias.size(); ++i) v[i] += bias[i];
}

// RMSNorm of each head_dim-wide head of v.
void norm_heads(std::vector<double>& v, const std::vector<float>& w, int head_dim, double eps) {
  for (size_t h = 0; h * head_dim < v.size(); ++h) {
    const std::vector<double> head(v.begin() + h * head_dim, v.begin() + (h + 1) * head_dim);
    const std::vector<double> normed = rmsnorm(head, w, eps);
    std::copy(normed.begin(), normed.end(), v.begin() + h * head_dim);
  }
}

double cap(double x, double softcap) { return softcap > 0 ? softcap * std::tanh(x / softcap) : x; }

double gelu_tanh(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x))); }

}  // namespace

namespace {
// Per position: the final norm's output (`hidden`) or the logits.
std::vector<std::vector<double>> reference_rows(const LlamaModel& model, const std::vector<int32_t>& tokens, int context, bool hidden) {
  const ModelConfig& c = model.config();
  const ArchitectureMath math = architecture_math(model);
  // LongRoPE: the long factors past the original context, else the short ones; llama3 factors always.
  std::vector<float> factors = c.rope_freq_factors;
  if (!c.rope_long_freq_factors.empty() && (context > 0 ? context : c.context_length) > c.rope_original_context) factors = c.rope_long_freq_factors;
  struct Layer {
    Matrix wq, wk, wv, wo, gate, up, down;
  };
  std::vector<Layer> layers;
  for (const LayerWeights& l : model.layers()) {
    layers.push_back({to_double(l.wq), to_double(l.wk), to_double(l.wv), to_double(l.wo), to_double(l.w_gate), to_double(l.w_up), to_double(l.w_down)});
  }
  const Matrix embedding = to_double(model.token_embedding());
  const Matrix output = to_double(model.output());
  std::vector<std::vector<std::vector<double>>> keys(c.n_layers), values(c.n_layers);  // [layer][pos][kv_dim]
  std::vector<std::vector<double>> all_logits;
  const int group = c.n_heads / c.n_kv_heads;
  const double attention_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));

  const auto ffn = [&](std::vector<double>& x, int l) {
    const LayerWeights& lw = model.layers()[l];
    const Layer& L = layers[l];
    const std::vector<double> xb = rmsnorm(x, lw.ffn_norm, c.rms_eps);
    std::vector<double> g = matvec(L.gate, c.ffn_dim, c.dim, xb);
    const std::vector<double> u = matvec(L.up, c.ffn_dim, c.dim, xb);
    for (int i = 0; i < c.ffn_dim; ++i) g[i] = (math.gemma ? gelu_tanh(g[i]) : g[i] / (1.0 + std::exp(-g[i]))) * u[i];
    std::vector<double> d = matvec(L.down, c.dim, c.ffn_dim, g);
    if (!lw.ffn_post_norm.empty()) d = rmsnorm(d, lw.ffn_post_norm, c.rms_eps);
    for (int i = 0; i < c.dim; ++i) x[i] += d[i];
  };
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    std::vector<double> x(embedding.begin() + static_cast<std::ptrdiff_t>(tokens[pos]) * c.dim,
                          embedding.begin() + static_cast<std::ptrdiff_t>(tokens[pos] + 1) * c.dim);
    if (math.gemma) {
      for (double& e : x) e *= std::sqrt(static_cast<double>(c.dim));
    }
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& lw = model.layers()[l];
      const Layer& L = layers[l];
      std::vector<double> xb = rmsnorm(x, lw.attn_norm, c.rms_eps);
      if (c.latent_attention()) {
        const std::vector<double> o = matvec(L.wo, c.dim, lw.wo.cols, latent_attention(model, l, xb, static_cast<int>(pos), keys[l], values[l]));
        for (int i = 0; i < c.dim; ++i) x[i] += o[i];
        ffn(x, l);
        continue;
      }
      std::vector<double> q = matvec(L.wq, c.q_dim(), c.dim, xb);
      std::vector<double> k = matvec(L.wk, c.kv_dim(), c.dim, xb);
      std::vector<double> v = matvec(L.wv, c.kv_dim(), c.dim, xb);
      add_bias(q, lw.bq);
      add_bias(k, lw.bk);
      add_bias(v, lw.bv);
      if (!lw.q_norm.empty()) norm_heads(q, lw.q_norm, c.head_dim, c.rms_eps);
      if (!lw.k_norm.empty()) norm_heads(k, lw.k_norm, c.head_dim, c.rms_eps);
      const std::vector<float> no_factors;
      const std::vector<float>& layer_factors = math.rope_scaled[l] ? factors : no_factors;
      rope(q, c.n_heads, static_cast<int>(pos), c, math.rope_base[l], math.position_scale[l], layer_factors);
      rope(k, c.n_kv_heads, static_cast<int>(pos), c, math.rope_base[l], math.position_scale[l], layer_factors);
      keys[l].push_back(k);
      values[l].push_back(v);
      const size_t lowest = math.window[l] > 0 && pos + 1 > static_cast<size_t>(math.window[l]) ? pos + 1 - math.window[l] : 0;
      std::vector<double> att(c.q_dim(), 0.0);
      for (int h = 0; h < c.n_heads; ++h) {
        const int g = h / group;
        std::vector<double> scores(pos + 1, 0.0);
        double max = -1e300;
        for (size_t p = lowest; p <= pos; ++p) {
          double s = 0;
          for (int i = 0; i < c.head_dim; ++i) s += q[h * c.head_dim + i] * keys[l][p][g * c.head_dim + i];
          scores[p] = cap(s * attention_scale, math.attention_softcap);
          max = std::max(max, scores[p]);
        }
        double sum = 0;
        for (size_t p = lowest; p <= pos; ++p) sum += (scores[p] = std::exp(scores[p] - max));
        for (size_t p = lowest; p <= pos; ++p) {
          for (int i = 0; i < c.head_dim; ++i) att[h * c.head_dim + i] += scores[p] / sum * values[l][p][g * c.head_dim + i];
        }
      }
      std::vector<double> o = matvec(L.wo, c.dim, c.q_dim(), att);
      if (!lw.attn_post_norm.empty()) o = rmsnorm(o, lw.attn_post_norm, c.rms_eps);
      for (int i = 0; i < c.dim; ++i) x[i] += o[i];
      ffn(x, l);
    }
    std::vector<double> normed = rmsnorm(x, model.output_norm(), c.rms_eps);
    if (hidden) {
      all_logits.push_back(std::move(normed));
      continue;
    }
    std::vector<double> logits = matvec(output, c.vocab_size, c.dim, normed);
    for (double& z : logits) z = cap(z, math.final_softcap);
    all_logits.push_back(std::move(logits));
  }
  return all_logits;
}
}  // namespace

std::vector<std::vector<double>> reference_logits(const LlamaModel& model, const std::vector<int32_t>& tokens, int context) {
  return reference_rows(model, tokens, context, false);
}

std::vector<std::vector<double>> reference_hidden_states(const LlamaModel& model, const std::vector<int32_t>& tokens) {
  return reference_rows(model, tokens, 0, true);
}

double normalized_error(const float* a, const std::vector<double>& b) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
    max_ref = std::max(max_ref, std::fabs(b[i]));
  }
  return max_diff / std::max(max_ref, 1e-12);
}

::testing::AssertionResult prefill_then_decode_matches_reference(Backend& backend, const LlamaModel& model, const std::vector<int32_t>& tokens,
                                                                 const std::vector<BlockId>& table, int prefill, double tolerance, int context) {
  const auto reference = reference_logits(model, tokens, context);
  std::vector<float> logits(model.config().vocab_size);
  for (int pos = 0; pos < static_cast<int>(tokens.size()); pos = std::max(pos + 1, prefill)) {
    const int count = pos == 0 ? prefill : 1;
    ForwardBatch batch;
    batch.tokens.assign(tokens.begin() + pos, tokens.begin() + pos + count);
    batch.sequences.push_back({0, count, pos, table.data(), true});
    const Status status = backend.forward(batch, logits.data());
    if (!status.is_ok()) return ::testing::AssertionFailure() << "forward at " << pos << ": " << status.message();
    const double error = normalized_error(logits.data(), reference[pos + count - 1]);
    if (!(error < tolerance)) {
      return ::testing::AssertionFailure() << (pos == 0 ? "prefill" : "decode at " + std::to_string(pos)) << ": error " << error << " >= " << tolerance;
    }
  }
  return ::testing::AssertionSuccess();
}

std::shared_ptr<const LlamaModel> load_synthetic_model(const SyntheticSpec& spec, std::vector<uint8_t>& storage) {
  storage = synthetic_model(spec).build();
  auto file = GgufFile::parse(storage.data(), storage.size());
  EXPECT_TRUE(file.is_ok()) << file.status().message();
  auto model = LlamaModel::load(file.take());
  EXPECT_TRUE(model.is_ok()) << model.status().message();
  return model.take();
}

}  // namespace pagedlm::testing
