#include "model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <numbers>
#include <stdexcept>

namespace pagedlm {

namespace {

// Everything that sets an architecture apart, as llama.cpp reads and runs it. The only place that maps an
// architecture's name to its features.
struct ArchitectureTraits {
  const char* name;
  RopeLayout rope_layout;
  FfnActivation activation = FfnActivation::kSilu;
  bool qk_norm = false;          // attn_q_norm / attn_k_norm, [head_dim], before RoPE
  bool post_norms = false;       // post_attention_norm / post_ffw_norm
  bool fused_tensors = false;    // attn_qkv (or attn_q/k/v) and ffn_up holding gate then up rows, no ffn_gate
  bool scale_embedding = false;  // embeddings x sqrt(dim)
  // Sliding windows, as llama.cpp's swa pattern: with period p, layer l is windowed when l % p < p - 1
  // (p = 1: every layer). 0: the architecture has no windows, and a sliding_window key is ignored.
  int window_period = 0;
  int default_window = 0;        // the window when the file sets none; 0: no windows then
  float local_rope_base = 0;     // > 0: windowed layers' RoPE base, without the file's RoPE scaling (a file
                                 // without windows has none: every layer is global)
  bool read_softcaps = false;    // <arch>.attn_logit_softcapping and <arch>.final_logit_softcapping
  float attention_softcap = 0;   // their defaults when absent
  float final_softcap = 0;
  int large_model_layers = 0;    // a model of this many layers scales queries by 1/sqrt(dim / heads), not 1/sqrt(head_dim)
  bool latent_attention = false; // multi-head latent attention (ModelConfig::kv_lora_rank), dense FFN layers only
};

constexpr ArchitectureTraits kArchitectures[] = {
    {.name = "llama", .rope_layout = RopeLayout::kNormal, .window_period = 1},
    {.name = "mistral", .rope_layout = RopeLayout::kNormal, .window_period = 1},
    {.name = "qwen2", .rope_layout = RopeLayout::kNeox},
    {.name = "qwen3", .rope_layout = RopeLayout::kNeox, .qk_norm = true},
    // llama.cpp ignores phi3's sliding_window (its windows are off for Phi models), and so does pagedlm.
    {.name = "phi3", .rope_layout = RopeLayout::kNeox, .fused_tensors = true},
    {.name = "gemma2",
     .rope_layout = RopeLayout::kNeox,
     .activation = FfnActivation::kGeluTanh,
     .post_norms = true,
     .scale_embedding = true,
     .window_period = 2,
     .default_window = 4096,
     .read_softcaps = true,
     .attention_softcap = 50.0f,
     .final_softcap = 30.0f,
     .large_model_layers = 46},
    {.name = "gemma3",
     .rope_layout = RopeLayout::kNeox,
     .activation = FfnActivation::kGeluTanh,
     .qk_norm = true,
     .post_norms = true,
     .scale_embedding = true,
     .window_period = 6,
     .local_rope_base = 10000.0f,
     .read_softcaps = true,
     .large_model_layers = 62},
    {.name = "deepseek2", .rope_layout = RopeLayout::kNormal, .latent_attention = true},
};

struct LoadError : std::runtime_error {
  LoadError(ErrorCode c, const std::string& m) : std::runtime_error(m), code(c) {}
  ErrorCode code;
};

[[noreturn]] void fail(const std::string& message) { throw LoadError(ErrorCode::kModelFormat, message); }

template <typename T>
T unwrap(Result<T> r) {
  if (!r.is_ok()) throw LoadError(r.status().code(), r.status().message());
  return r.take();
}

std::string dims_string(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

std::string supported_architectures() {
  std::string names;
  for (const auto& a : kArchitectures) names += (names.empty() ? "" : ", ") + std::string(a.name);
  return names;
}

bool ModelConfig::any_window() const {
  return std::any_of(layers.begin(), layers.end(), [](const LayerAttention& l) { return l.window > 0; });
}

bool ModelConfig::all_windowed() const {
  return !layers.empty() && std::all_of(layers.begin(), layers.end(), [](const LayerAttention& l) { return l.window > 0; });
}

// Reads hyperparameters, then binds and checks every tensor. Throws LoadError internally.
class ModelBuilder {
 public:
  ModelBuilder(LlamaModel& model, const GgufFile& file) : m_(model), file_(file), c_(model.config_) {}

  void build() {
    read_config();
    bind_tensors();
  }

  void build_config_only() {
    read_config();
    c_.vocab_size = read_vocab_size();
    c_.tied_output = file_.find_tensor("output.weight") == nullptr;
  }

 private:
  int64_t require_int(const std::string& key) {
    const auto v = unwrap(file_.get_int(key));
    if (!v) fail("missing metadata '" + key + "'");
    if (*v <= 0 || *v > (int64_t{1} << 30)) fail("metadata '" + key + "' = " + std::to_string(*v) + " is out of range");
    return *v;
  }

  int64_t optional_int(const std::string& key, int64_t fallback) {
    const auto v = unwrap(file_.get_int(key));
    if (!v) return fallback;
    if (*v <= 0 || *v > (int64_t{1} << 30)) fail("metadata '" + key + "' = " + std::to_string(*v) + " is out of range");
    return *v;
  }

  double optional_float(const std::string& key, double fallback) {
    const auto v = unwrap(file_.get_float(key));
    return v ? *v : fallback;
  }

  void read_config() {
    const auto arch = unwrap(file_.get_string("general.architecture"));
    if (!arch) fail("missing metadata 'general.architecture'");
    for (const auto& a : kArchitectures) {
      if (*arch == a.name) traits_ = &a;
    }
    if (traits_ == nullptr) {
      throw LoadError(ErrorCode::kUnsupported, "unsupported architecture '" + *arch + "' (pagedlm runs " + supported_architectures() + ")");
    }
    const ArchitectureTraits* traits = traits_;
    c_.architecture = *arch;
    c_.name = unwrap(file_.get_string("general.name")).value_or("");
    const std::string p = *arch + ".";
    c_.dim = static_cast<int>(require_int(p + "embedding_length"));
    c_.n_layers = static_cast<int>(require_int(p + "block_count"));
    c_.ffn_dim = static_cast<int>(require_int(p + "feed_forward_length"));
    c_.n_heads = static_cast<int>(require_int(p + "attention.head_count"));
    c_.n_kv_heads = static_cast<int>(optional_int(p + "attention.head_count_kv", c_.n_heads));
    c_.context_length = static_cast<int>(optional_int(p + "context_length", 2048));
    c_.head_dim = static_cast<int>(optional_int(p + "attention.key_length", c_.dim / c_.n_heads));
    if (!traits->latent_attention && optional_int(p + "attention.value_length", c_.head_dim) != c_.head_dim) {
      fail("attention.value_length differs from key_length");
    }
    if (c_.n_heads % c_.n_kv_heads != 0) {
      fail("head_count " + std::to_string(c_.n_heads) + " is not a multiple of head_count_kv " + std::to_string(c_.n_kv_heads));
    }
    if (c_.head_dim % 2 != 0) fail("head size " + std::to_string(c_.head_dim) + " is odd; RoPE needs pairs");
    c_.rms_eps = static_cast<float>(optional_float(p + "attention.layer_norm_rms_epsilon", 1e-5));
    c_.rope_base = static_cast<float>(optional_float(p + "rope.freq_base", 10000.0));
    c_.rope_dim = static_cast<int>(optional_int(p + "rope.dimension_count", c_.head_dim));
    if (c_.rope_dim > c_.head_dim || c_.rope_dim % 2 != 0) fail("rope.dimension_count " + std::to_string(c_.rope_dim) + " does not fit the head size");
    c_.rope_layout = traits->rope_layout;
    c_.pooling_type = unwrap(file_.get_int(p + "pooling_type")).value_or(-1);  // 0 ('none') is valid; the engine judges the rest
    if (traits->latent_attention) read_latent_attention(p);
    check_sizes();
    if (!(c_.rms_eps > 0) || !(c_.rope_base > 0)) fail("rms epsilon and rope.freq_base must be positive");
    read_rope_scaling(p);
    read_features(p, *traits);
    read_layer_attention(p, *traits);
  }

  void read_features(const std::string& p, const ArchitectureTraits& t) {
    c_.ffn_activation = t.activation;
    c_.qk_norm = t.qk_norm;
    c_.post_norms = t.post_norms;
    if (t.scale_embedding) c_.embedding_scale = std::sqrt(static_cast<float>(c_.dim));
    const bool large = t.large_model_layers > 0 && c_.n_layers == t.large_model_layers;
    // Latent attention scales by the size of a head's decompressed key, not of the shared row it reads.
    const int scaled_width = c_.latent_attention() ? c_.qk_nope_dim + c_.rope_dim : large ? c_.dim / c_.n_heads : c_.head_dim;
    c_.attention_scale = 1.0f / std::sqrt(static_cast<float>(scaled_width));
    if (t.read_softcaps) {
      c_.attention_softcap = static_cast<float>(optional_float(p + "attn_logit_softcapping", t.attention_softcap));
      c_.final_softcap = static_cast<float>(optional_float(p + "final_logit_softcapping", t.final_softcap));
      if (c_.attention_softcap < 0 || c_.final_softcap < 0) fail("soft-capping values must not be negative");
    }
  }

  // deepseek2 as llama.cpp's MLA form reads it: one KV head whose key_length is kv_lora_rank + rope dims and
  // value_length the latent, the per-head sizes in key_length_mla / value_length_mla, and split attn_k_b /
  // attn_v_b tensors. Files without the _mla keys (the older attn_kv_b form) and mixture-of-experts layers
  // are refused.
  void read_latent_attention(const std::string& p) {
    const auto unsupported = [&](const std::string& why) { throw LoadError(ErrorCode::kUnsupported, "deepseek2 model: " + why); };
    const int64_t dense_layers = unwrap(file_.get_int(p + "leading_dense_block_count")).value_or(0);
    if (dense_layers < c_.n_layers) {
      unsupported("layers " + std::to_string(std::max<int64_t>(dense_layers, 0)) + " to " + std::to_string(c_.n_layers - 1) +
                  " are mixture-of-experts (leading_dense_block_count " + std::to_string(dense_layers) + " of " + std::to_string(c_.n_layers) +
                  " layers); pagedlm runs dense deepseek2 layers only");
    }
    const auto mla_key = unwrap(file_.get_int(p + "attention.key_length_mla"));
    if (!mla_key) unsupported("no attention.key_length_mla: the older attn_kv_b form is not supported (convert the model again with a current llama.cpp)");
    const std::string type = unwrap(file_.get_string(p + "rope.scaling.type")).value_or("none");
    if (type != "none" && optional_float(p + "rope.scaling.factor", 1.0) != 1.0) unsupported("RoPE scaling '" + type + "' is not supported");
    if (unwrap(file_.get_float(p + "attention.temperature_scale"))) unsupported("attention.temperature_scale is not supported");
    c_.kv_lora_rank = static_cast<int>(require_int(p + "attention.kv_lora_rank"));
    c_.q_lora_rank = static_cast<int>(unwrap(file_.get_int(p + "attention.q_lora_rank")).value_or(0));
    if (c_.q_lora_rank < 0 || c_.q_lora_rank > (1 << 20)) fail("attention.q_lora_rank = " + std::to_string(c_.q_lora_rank) + " is out of range");
    const int key_mla = static_cast<int>(require_int(p + "attention.key_length_mla"));
    c_.v_head_dim = static_cast<int>(require_int(p + "attention.value_length_mla"));
    c_.qk_nope_dim = key_mla - c_.rope_dim;
    if (c_.qk_nope_dim < 1) fail("attention.key_length_mla " + std::to_string(key_mla) + " leaves no dims without RoPE");
    if (c_.n_kv_heads != 1) fail("head_count_kv must be 1 (one latent per token), is " + std::to_string(c_.n_kv_heads));
    if (c_.head_dim != c_.kv_lora_rank + c_.rope_dim) {
      fail("attention.key_length " + std::to_string(c_.head_dim) + " is not kv_lora_rank + rope.dimension_count (" +
           std::to_string(c_.kv_lora_rank + c_.rope_dim) + ")");
    }
    if (optional_int(p + "attention.value_length", c_.kv_lora_rank) != c_.kv_lora_rank) fail("attention.value_length differs from kv_lora_rank");
  }

  // Per layer: its window and RoPE settings.
  void read_layer_attention(const std::string& p, const ArchitectureTraits& t) {
    int window = 0;
    if (t.window_period > 0) {
      window = static_cast<int>(optional_int(p + "attention.sliding_window", t.default_window));
    }
    c_.layers.assign(c_.n_layers, LayerAttention{0, c_.rope_base, c_.rope_position_scale, true});
    if (window == 0) return;
    for (int l = 0; l < c_.n_layers; ++l) {
      const bool windowed = t.window_period == 1 || l % t.window_period < t.window_period - 1;
      if (!windowed) continue;
      LayerAttention& layer = c_.layers[l];
      layer.window = window;
      if (t.local_rope_base > 0) layer = LayerAttention{window, t.local_rope_base, 1.0f, false};
    }
  }

  // Hostile values must not overflow the int arithmetic downstream: every width stays far below 2^31.
  void check_sizes() {
    constexpr int64_t kMaxWidth = int64_t{1} << 20;
    const std::pair<const char*, int64_t> widths[] = {
        {"embedding_length", c_.dim}, {"feed_forward_length", c_.ffn_dim}, {"head_count x key_length", int64_t{c_.n_heads} * c_.head_dim},
        {"block_count", c_.n_layers}, {"head_count x value_length_mla", int64_t{c_.n_heads} * c_.v_head_dim},
        {"head_count x key_length_mla", int64_t{c_.n_heads} * (c_.qk_nope_dim + c_.rope_dim)}};
    for (const auto& [what, value] : widths) {
      if (value > kMaxWidth) fail(std::string(what) + " = " + std::to_string(value) + " is implausibly large");
    }
  }

  // Linear scaling divides positions; llama3 scaling divides each frequency by a factor, either from
  // the rope_freqs tensor that converters write or computed from the scaling metadata.
  void read_rope_scaling(const std::string& p) {
    const std::string type = unwrap(file_.get_string(p + "rope.scaling.type")).value_or("none");
    const double factor = optional_float(p + "rope.scaling.factor", 1.0);
    if ((type == "linear" || type == "longrope") && factor > 0) c_.rope_position_scale = static_cast<float>(1.0 / factor);
    c_.rope_attention_factor = static_cast<float>(optional_float(p + "rope.scaling.attn_factor", 1.0));
    if (!(c_.rope_attention_factor > 0)) fail("rope.scaling.attn_factor must be positive");
    const int pairs = c_.rope_dim / 2;
    const auto factors = [&](const GgufTensor& t) {
      check_shape(t, {static_cast<uint64_t>(pairs)});
      std::vector<float> f(pairs, 1.0f);
      // A header only (read_config for planning) has no tensor data: the factors matter to the forward pass alone.
      if (t.data != nullptr) dequantize_row(t.type, t.data, f.data(), pairs);
      return f;
    };
    const GgufTensor* long_factors = file_.find_tensor("rope_factors_long.weight");
    const GgufTensor* short_factors = file_.find_tensor("rope_factors_short.weight");
    if ((long_factors == nullptr) != (short_factors == nullptr)) fail("LongRoPE needs both rope_factors_long and rope_factors_short");
    if (const GgufTensor* t = file_.find_tensor("rope_freqs.weight")) {
      c_.rope_freq_factors = factors(*t);
    } else if (long_factors != nullptr) {
      c_.rope_freq_factors = factors(*short_factors);
      c_.rope_long_freq_factors = factors(*long_factors);
      c_.rope_original_context = static_cast<int>(optional_int(p + "rope.scaling.original_context_length", c_.context_length));
    } else if (type == "llama3") {
      const double low = optional_float(p + "rope.scaling.low_freq_factor", 1.0);
      const double high = optional_float(p + "rope.scaling.high_freq_factor", 4.0);
      const double original = optional_float(p + "rope.scaling.original_context_length", 8192);
      const double low_wavelen = original / low, high_wavelen = original / high;
      c_.rope_freq_factors.resize(pairs);
      for (int i = 0; i < pairs; ++i) {
        const double freq = std::pow(static_cast<double>(c_.rope_base), -2.0 * i / c_.rope_dim);
        const double wavelen = 2 * std::numbers::pi / freq;
        double f = 1.0;
        if (wavelen > low_wavelen) {
          f = factor;
        } else if (wavelen > high_wavelen) {
          const double smooth = (original / wavelen - low) / (high - low);
          f = 1.0 / ((1 - smooth) / factor + smooth);
        }
        c_.rope_freq_factors[i] = static_cast<float>(f);
      }
    }
  }

  const GgufTensor& tensor(const std::string& name) {
    const GgufTensor* t = file_.find_tensor(name);
    if (t == nullptr) fail("missing tensor '" + name + "'");
    return *t;
  }

  void check_shape(const GgufTensor& t, std::vector<uint64_t> expected) {
    if (t.dims != expected) {
      fail("tensor '" + t.name + "' has shape " + dims_string(t.dims) + " but the hyperparameters say " + dims_string(expected));
    }
  }

  void count(const GgufTensor& t) {
    m_.parameter_count_ += t.elements();
    m_.weight_bytes_ += t.bytes;
  }

  WeightMatrix matrix(const std::string& name, int rows, int cols) {
    const GgufTensor& t = tensor(name);
    check_shape(t, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)});
    count(t);
    return WeightMatrix{t.type, t.data, rows, cols, tensor_row_bytes(t.type, cols)};
  }

  std::vector<float> vector(const std::string& name, int length, bool optional = false) {
    const GgufTensor* t = file_.find_tensor(name);
    if (t == nullptr) {
      if (optional) return {};
      fail("missing tensor '" + name + "'");
    }
    check_shape(*t, {static_cast<uint64_t>(length)});
    count(*t);
    std::vector<float> v(length);
    dequantize_row(t->type, t->data, v.data(), length);
    return v;
  }

  int read_vocab_size() {
    const GgufTensor& embd = tensor("token_embd.weight");
    if (embd.dims.size() != 2) fail("tensor 'token_embd.weight' must be 2-D, has shape " + dims_string(embd.dims));
    if (embd.dims[1] > (uint64_t{1} << 24)) fail("vocabulary of " + std::to_string(embd.dims[1]) + " tokens is implausibly large");
    return static_cast<int>(embd.dims[1]);
  }

  void bind_tensors() {
    c_.vocab_size = read_vocab_size();
    m_.token_embedding_ = matrix("token_embd.weight", c_.vocab_size, c_.dim);
    m_.output_norm_ = vector("output_norm.weight", c_.dim);
    c_.tied_output = file_.find_tensor("output.weight") == nullptr;
    m_.output_ = c_.tied_output ? m_.token_embedding_ : matrix("output.weight", c_.vocab_size, c_.dim);
    for (int l = 0; l < c_.n_layers; ++l) m_.layers_.push_back(layer(l));
  }

  LayerWeights layer(int l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights w;
    w.attn_norm = vector(p + "attn_norm.weight", c_.dim);
    if (c_.latent_attention()) {
      bind_latent_attention(p, w);
    } else if (traits_->fused_tensors && file_.find_tensor(p + "attn_qkv.weight") != nullptr) {
      const std::vector<WeightMatrix> qkv = split_rows(p + "attn_qkv.weight", {c_.q_dim(), c_.kv_dim(), c_.kv_dim()}, c_.dim);
      w.wq = qkv[0], w.wk = qkv[1], w.wv = qkv[2];
    } else {
      w.wq = matrix(p + "attn_q.weight", c_.q_dim(), c_.dim);
      w.wk = matrix(p + "attn_k.weight", c_.kv_dim(), c_.dim);
      w.wv = matrix(p + "attn_v.weight", c_.kv_dim(), c_.dim);
    }
    w.wo = matrix(p + "attn_output.weight", c_.dim, c_.attention_output_dim());
    if (!c_.latent_attention()) {
      w.bq = vector(p + "attn_q.bias", c_.q_dim(), true);
      w.bk = vector(p + "attn_k.bias", c_.kv_dim(), true);
      w.bv = vector(p + "attn_v.bias", c_.kv_dim(), true);
    }
    if (c_.qk_norm) {
      w.q_norm = vector(p + "attn_q_norm.weight", c_.head_dim);
      w.k_norm = vector(p + "attn_k_norm.weight", c_.head_dim);
    }
    if (c_.post_norms) w.attn_post_norm = vector(p + "post_attention_norm.weight", c_.dim);
    w.ffn_norm = vector(p + "ffn_norm.weight", c_.dim);
    if (traits_->fused_tensors) {
      const std::vector<WeightMatrix> gate_up = split_rows(p + "ffn_up.weight", {c_.ffn_dim, c_.ffn_dim}, c_.dim);
      w.w_gate = gate_up[0], w.w_up = gate_up[1];
    } else {
      w.w_gate = matrix(p + "ffn_gate.weight", c_.ffn_dim, c_.dim);
      w.w_up = matrix(p + "ffn_up.weight", c_.ffn_dim, c_.dim);
    }
    w.w_down = matrix(p + "ffn_down.weight", c_.dim, c_.ffn_dim);
    if (c_.post_norms) w.ffn_post_norm = vector(p + "post_ffw_norm.weight", c_.dim);
    return w;
  }

  void bind_latent_attention(const std::string& p, LayerWeights& w) {
    const int query_width = c_.n_heads * (c_.qk_nope_dim + c_.rope_dim);
    if (c_.q_lora_rank > 0) {
      w.wq_a = matrix(p + "attn_q_a.weight", c_.q_lora_rank, c_.dim);
      w.q_a_norm = vector(p + "attn_q_a_norm.weight", c_.q_lora_rank);
      w.wq_b = matrix(p + "attn_q_b.weight", query_width, c_.q_lora_rank);
    } else {
      w.wq = matrix(p + "attn_q.weight", query_width, c_.dim);
    }
    w.wkv_a = matrix(p + "attn_kv_a_mqa.weight", c_.kv_lora_rank + c_.rope_dim, c_.dim);
    w.kv_a_norm = vector(p + "attn_kv_a_norm.weight", c_.kv_lora_rank);
    w.wk_b = per_head(p + "attn_k_b.weight", c_.kv_lora_rank, c_.qk_nope_dim);
    w.wv_b = per_head(p + "attn_v_b.weight", c_.v_head_dim, c_.kv_lora_rank);
  }

  // A 3-D tensor of one [rows, cols] matrix per head (GGUF dims [cols, rows, heads]), as one matrix per head.
  std::vector<WeightMatrix> per_head(const std::string& name, int rows, int cols) {
    const GgufTensor& t = tensor(name);
    check_shape(t, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), static_cast<uint64_t>(c_.n_heads)});
    count(t);
    const size_t row_bytes = tensor_row_bytes(t.type, cols);
    std::vector<WeightMatrix> heads;
    for (int h = 0; h < c_.n_heads; ++h) heads.push_back(WeightMatrix{t.type, t.data + static_cast<size_t>(h) * rows * row_bytes, rows, cols, row_bytes});
    return heads;
  }

  // One fused tensor as consecutive row ranges of the given heights (its rows must add up to them).
  std::vector<WeightMatrix> split_rows(const std::string& name, std::initializer_list<int> heights, int cols) {
    int total = 0;
    for (int h : heights) total += h;
    const WeightMatrix whole = matrix(name, total, cols);
    std::vector<WeightMatrix> parts;
    int first = 0;
    for (int h : heights) {
      parts.push_back(WeightMatrix{whole.type, whole.row(first), h, cols, whole.row_bytes});
      first += h;
    }
    return parts;
  }

  LlamaModel& m_;
  const GgufFile& file_;
  ModelConfig& c_;
  const ArchitectureTraits* traits_ = nullptr;
};

Result<std::shared_ptr<const LlamaModel>> LlamaModel::load(GgufFile file) {
  auto model = std::make_shared<LlamaModel>();
  model->file_ = std::move(file);
  try {
    ModelBuilder(*model, model->file_).build();
  } catch (const LoadError& e) {
    // Once the architecture is known, a contradiction in the file is reported as that architecture's.
    const std::string& arch = model->config_.architecture;
    if (arch.empty() || e.code == ErrorCode::kUnsupported) return Status(e.code, e.what());
    return Status(e.code, arch + " model: " + e.what());
  }
  return std::shared_ptr<const LlamaModel>(std::move(model));
}

Result<ModelConfig> LlamaModel::read_config(const GgufFile& file) {
  LlamaModel scratch;
  try {
    ModelBuilder(scratch, file).build_config_only();
  } catch (const LoadError& e) {
    return Status(e.code, e.what());
  }
  return scratch.config_;
}

}  // namespace pagedlm
