// A Llama-family decoder (llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3, and deepseek2's dense layers): hyperparameters read and
// checked from GGUF metadata, weights as views into the memory-mapped file (never copied, except the small
// norm vectors). What sets the architectures apart is described here as data (per-layer attention
// settings, feature values, optional tensors), filled in by the one architecture table in llama_model.cpp;
// backends read the data, never the architecture's name. Immutable after load: any thread.
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

enum class FfnActivation {
  kSilu,      // SwiGLU: silu(gate) x up
  kGeluTanh,  // GeGLU: gelu(gate) x up, GELU in its tanh approximation (Gemma)
};

// How one layer attends.
struct LayerAttention {
  int window = 0;               // > 0: a token at position p sees positions (p - window, p]; 0: all before it
  float rope_base = 10000.0f;
  float rope_position_scale = 1.0f;  // linear scaling divides positions by the factor
  bool rope_scaled = true;      // whether ModelConfig::rope_freq_factors apply to this layer
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
  std::vector<float> rope_freq_factors; // [rope_dim / 2] llama3-style (and phi3's short factors); empty when unscaled
  // Phi-3 LongRoPE: factors for a context longer than rope_original_context (llama.cpp's choice by the
  // context a model is loaded with: rope_factors_for_context). Empty when the file has none.
  std::vector<float> rope_long_freq_factors;
  int rope_original_context = 0;
  float rope_attention_factor = 1.0f;   // multiplies the rotated dims' cos and sin (rope.scaling.attn_factor)
  bool tied_output = false;

  std::vector<LayerAttention> layers;   // [n_layers]
  float attention_scale = 0;            // multiplies q.k; 1/sqrt(head_dim) unless the architecture says otherwise
  float attention_softcap = 0;          // > 0: each scaled score s becomes cap x tanh(s / cap) (Gemma 2)
  float final_softcap = 0;              // > 0: the same on the output logits
  float embedding_scale = 1.0f;         // multiplies the token embedding (Gemma: sqrt(dim))
  FfnActivation ffn_activation = FfnActivation::kSilu;
  bool qk_norm = false;                 // per-head RMSNorm of Q and K before RoPE (LayerWeights::q_norm, k_norm)
  bool post_norms = false;              // RMSNorm of the attention and FFN outputs before each residual add
  int64_t pooling_type = -1;            // <arch>.pooling_type (llama.cpp's enum, engine/pooling.h); -1 when absent

  // Multi-head latent attention (deepseek2), in its absorbed form: every head attends to one shared KV row per
  // token, the latent (kv_lora_rank wide, after attn_kv_a_norm) followed by the RoPE'd key part (rope_dim). So
  // head_dim is kv_lora_rank + rope_dim, n_kv_heads is 1 and a V row is the first kv_lora_rank values of the
  // K row. A head's query is its no-RoPE part times its W_UK (wk_b) beside its RoPE'd part; its output, a
  // latent, goes through its W_UV (wv_b) to v_head_dim values before wo. 0: not latent.
  int kv_lora_rank = 0;
  int q_lora_rank = 0;                  // > 0: queries through wq_a, q_a_norm, wq_b (else wq)
  int qk_nope_dim = 0;                  // per head: the query and key dims without RoPE
  int v_head_dim = 0;                   // per head: the output width after W_UV

  // The frequency factors for a model loaded with `context` tokens of context.
  const std::vector<float>& rope_factors_for_context(int context) const {
    return !rope_long_freq_factors.empty() && context > rope_original_context ? rope_long_freq_factors : rope_freq_factors;
  }
  // Whether any layer is windowed, and whether every layer is.
  bool any_window() const;
  bool all_windowed() const;

  bool latent_attention() const { return kv_lora_rank > 0; }
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Width of one V row in the KV cache: the latent with latent attention (inside the K row), else head_dim.
  int value_dim() const { return latent_attention() ? kv_lora_rank : head_dim; }
  // The width of wo's input: every head's output.
  int attention_output_dim() const { return latent_attention() ? n_heads * v_head_dim : q_dim(); }
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

// Fused tensors (phi3's attn_qkv and gate/up ffn_up) are bound as row ranges of one tensor: wq, wk and wv
// (w_gate and w_up) then point into the same mapped rows, and backends never see the fusion.
struct LayerWeights {
  std::vector<float> attn_norm;  // [dim]
  WeightMatrix wq, wk, wv, wo;   // wq [q_dim, dim], wk/wv [kv_dim, dim], wo [dim, attention_output_dim]
  std::vector<float> bq, bk, bv; // optional biases ([q_dim], [kv_dim], [kv_dim]); empty when absent
  std::vector<float> q_norm, k_norm;  // [head_dim] when ModelConfig::qk_norm; else empty
  std::vector<float> attn_post_norm;  // [dim] when ModelConfig::post_norms; else empty
  std::vector<float> ffn_norm;   // [dim]
  WeightMatrix w_gate, w_up;     // [ffn_dim, dim]
  WeightMatrix w_down;           // [dim, ffn_dim]
  std::vector<float> ffn_post_norm;   // [dim] when ModelConfig::post_norms; else empty
  // Latent attention only (ModelConfig::latent_attention; wk and wv stay empty, wq is empty with query LoRA):
  WeightMatrix wq_a;                  // [q_lora_rank, dim] with query LoRA
  std::vector<float> q_a_norm;        // [q_lora_rank]
  WeightMatrix wq_b;                  // [n_heads * (qk_nope_dim + rope_dim), q_lora_rank]
  WeightMatrix wkv_a;                 // [kv_lora_rank + rope_dim, dim]: the latent, then the key's RoPE part
  std::vector<float> kv_a_norm;       // [kv_lora_rank]
  std::vector<WeightMatrix> wk_b;     // [n_heads] of [kv_lora_rank, qk_nope_dim]: W_UK, transposed as the absorbed form reads it
  std::vector<WeightMatrix> wv_b;     // [n_heads] of [v_head_dim, kv_lora_rank]: W_UV
};

// The architectures load() accepts, comma-separated ("llama, mistral, ...").
std::string supported_architectures();

class LlamaModel {
 public:
  // Takes ownership of the parsed file; checks architecture, hyperparameters and every tensor's shape.
  // An unsupported architecture is kUnsupported, naming it and the supported ones.
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
