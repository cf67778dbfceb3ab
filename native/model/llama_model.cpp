#include "model/llama_model.h"

#include <cmath>
#include <stdexcept>

namespace pagedlm {

namespace {

struct ArchitectureTraits {
  const char* name;
  RopeLayout rope_layout;
};

constexpr ArchitectureTraits kArchitectures[] = {
    {"llama", RopeLayout::kNormal},
    {"mistral", RopeLayout::kNormal},
    {"qwen2", RopeLayout::kNeox},
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
    const ArchitectureTraits* traits = nullptr;
    for (const auto& a : kArchitectures) {
      if (*arch == a.name) traits = &a;
    }
    if (traits == nullptr) {
      throw LoadError(ErrorCode::kUnsupported, "unsupported architecture '" + *arch + "' (pagedlm runs llama, mistral and qwen2)");
    }
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
    if (optional_int(p + "attention.value_length", c_.head_dim) != c_.head_dim) fail("attention.value_length differs from key_length");
    if (c_.n_heads % c_.n_kv_heads != 0) {
      fail("head_count " + std::to_string(c_.n_heads) + " is not a multiple of head_count_kv " + std::to_string(c_.n_kv_heads));
    }
    if (c_.head_dim % 2 != 0) fail("head size " + std::to_string(c_.head_dim) + " is odd; RoPE needs pairs");
    c_.rms_eps = static_cast<float>(optional_float(p + "attention.layer_norm_rms_epsilon", 1e-5));
    c_.rope_base = static_cast<float>(optional_float(p + "rope.freq_base", 10000.0));
    c_.rope_dim = static_cast<int>(optional_int(p + "rope.dimension_count", c_.head_dim));
    if (c_.rope_dim > c_.head_dim || c_.rope_dim % 2 != 0) fail("rope.dimension_count " + std::to_string(c_.rope_dim) + " does not fit the head size");
    c_.rope_layout = traits->rope_layout;
    check_sizes();
    if (!(c_.rms_eps > 0) || !(c_.rope_base > 0)) fail("rms epsilon and rope.freq_base must be positive");
    read_rope_scaling(p);
  }

  // Hostile values must not overflow the int arithmetic downstream: every width stays far below 2^31.
  void check_sizes() {
    constexpr int64_t kMaxWidth = int64_t{1} << 20;
    const std::pair<const char*, int64_t> widths[] = {
        {"embedding_length", c_.dim}, {"feed_forward_length", c_.ffn_dim}, {"head_count x key_length", int64_t{c_.n_heads} * c_.head_dim},
        {"block_count", c_.n_layers}};
    for (const auto& [what, value] : widths) {
      if (value > kMaxWidth) fail(std::string(what) + " = " + std::to_string(value) + " is implausibly large");
    }
  }

  // Linear scaling divides positions; llama3 scaling divides each frequency by a factor, either from
  // the rope_freqs tensor that converters write or computed from the scaling metadata.
  void read_rope_scaling(const std::string& p) {
    const std::string type = unwrap(file_.get_string(p + "rope.scaling.type")).value_or("none");
    const double factor = optional_float(p + "rope.scaling.factor", 1.0);
    if (type == "linear" && factor > 0) c_.rope_position_scale = static_cast<float>(1.0 / factor);
    const int pairs = c_.rope_dim / 2;
    if (const GgufTensor* t = file_.find_tensor("rope_freqs.weight")) {
      check_shape(*t, {static_cast<uint64_t>(pairs)});
      if (t->data == nullptr) return;  // a header only: the factors matter to the forward pass, not to planning
      c_.rope_freq_factors.resize(pairs);
      dequantize_row(t->type, t->data, c_.rope_freq_factors.data(), pairs);
    } else if (type == "llama3") {
      const double low = optional_float(p + "rope.scaling.low_freq_factor", 1.0);
      const double high = optional_float(p + "rope.scaling.high_freq_factor", 4.0);
      const double original = optional_float(p + "rope.scaling.original_context_length", 8192);
      const double low_wavelen = original / low, high_wavelen = original / high;
      c_.rope_freq_factors.resize(pairs);
      for (int i = 0; i < pairs; ++i) {
        const double freq = std::pow(static_cast<double>(c_.rope_base), -2.0 * i / c_.rope_dim);
        const double wavelen = 2 * M_PI / freq;
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
    w.wq = matrix(p + "attn_q.weight", c_.q_dim(), c_.dim);
    w.wk = matrix(p + "attn_k.weight", c_.kv_dim(), c_.dim);
    w.wv = matrix(p + "attn_v.weight", c_.kv_dim(), c_.dim);
    w.wo = matrix(p + "attn_output.weight", c_.dim, c_.q_dim());
    w.bq = vector(p + "attn_q.bias", c_.q_dim(), true);
    w.bk = vector(p + "attn_k.bias", c_.kv_dim(), true);
    w.bv = vector(p + "attn_v.bias", c_.kv_dim(), true);
    w.ffn_norm = vector(p + "ffn_norm.weight", c_.dim);
    w.w_gate = matrix(p + "ffn_gate.weight", c_.ffn_dim, c_.dim);
    w.w_up = matrix(p + "ffn_up.weight", c_.ffn_dim, c_.dim);
    w.w_down = matrix(p + "ffn_down.weight", c_.dim, c_.ffn_dim);
    return w;
  }

  LlamaModel& m_;
  const GgufFile& file_;
  ModelConfig& c_;
};

Result<std::shared_ptr<const LlamaModel>> LlamaModel::load(GgufFile file) {
  auto model = std::make_shared<LlamaModel>();
  model->file_ = std::move(file);
  try {
    ModelBuilder(*model, model->file_).build();
  } catch (const LoadError& e) {
    return Status(e.code, e.what());
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
