// A Llama-family model: hyperparameters read and checked from GGUF metadata, weights as views into the
// memory-mapped file (never copied, except the small norm vectors). Immutable after load: any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/gguf.h"
#include "model/tensor_type.h"

namespace pagedlm {

enum class RopeLayout {
  kNormal,  // rotates consecutive pairs (x[2i], x[2i+1]); arch llama
  kNeox,    // rotates (x[i], x[i + rope_dim/2]); arch qwen2 and GPT-NeoX descendants
};

struct ModelConfig {
  std::string architecture;
  std::string name;
  int vocab_size = 0;
  int dim = 0;           // embedding width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int ffn_dim = 0;
  int context_length = 0;  // trained context
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  int rope_dim = 0;                     // leading dims of each head that rotate
  RopeLayout rope_layout = RopeLayout::kNormal;
  float rope_position_scale = 1.0f;     // linear scaling divides positions by the factor
  std::vector<float> rope_freq_factors; // [rope_dim / 2] llama3-style; empty when unscaled
  bool tied_output = false;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// A 2-D matmul weight: `rows` output features, each a contiguous row of `cols` inputs.
struct WeightMatrix {
  TensorType type = TensorType::kF32;
  const uint8_t* data = nullptr;  // [rows][row_bytes]
  int rows = 0;
  int cols = 0;
  size_t row_bytes = 0;
  const uint8_t* row(int r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [dim]
  WeightMatrix wq, wk, wv, wo;   // wq [q_dim, dim], wk/wv [kv_dim, dim], wo [dim, q_dim]
  std::vector<float> bq, bk, bv; // optional biases ([q_dim], [kv_dim], [kv_dim]); empty when absent
  std::vector<float> ffn_norm;   // [dim]
  WeightMatrix w_gate, w_up;     // [ffn_dim, dim]
  WeightMatrix w_down;           // [dim, ffn_dim]
};

class LlamaModel {
 public:
  // Takes ownership of the parsed file; checks architecture, hyperparameters and every tensor's shape.
  static Result<std::shared_ptr<const LlamaModel>> load(GgufFile file);
  // The hyperparameters alone, checked as load() checks them; `file` may be a header without tensor data.
  static Result<ModelConfig> read_config(const GgufFile& file);

  const ModelConfig& config() const { return config_; }
  const GgufFile& gguf() const { return file_; }
  const WeightMatrix& token_embedding() const { return token_embedding_; }  // [vocab, dim]
  const std::vector<float>& output_norm() const { return output_norm_; }
  const WeightMatrix& output() const { return output_; }                    // [vocab, dim]
  const std::vector<LayerWeights>& layers() const { return layers_; }
  uint64_t parameter_count() const { return parameter_count_; }
  uint64_t weight_bytes() const { return weight_bytes_; }

 private:
  GgufFile file_;
  ModelConfig config_;
  WeightMatrix token_embedding_;
  std::vector<float> output_norm_;
  WeightMatrix output_;
  std::vector<LayerWeights> layers_;
  uint64_t parameter_count_ = 0;
  uint64_t weight_bytes_ = 0;
  friend class ModelBuilder;
};

}  // namespace pagedlm
