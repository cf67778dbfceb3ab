// Random-weight GGUF models of every supported architecture for tests (with the tensors and metadata
// llama.cpp reads for each), and a plainly written double-precision forward pass to check the engine
// against. Test-only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backend/backend.h"
#include "model/llama_model.h"
#include "support/gguf_writer.h"

namespace pagedlm::testing {

struct SyntheticSpec {
  std::string architecture = "llama";
  int dim = 64;
  int layers = 2;
  int heads = 4;
  int kv_heads = 2;
  int head_dim = 0;  // 0 = dim / heads
  int ffn = 96;
  int vocab = 320;   // at least 259 (specials + 256 byte tokens)
  int context = 256;
  bool tied_output = false;
  bool qkv_bias = false;
  TensorType weight_type = TensorType::kF32;
  // attn_v and ffn_up in this type when set, as models quantized per tensor (llama.cpp's Q4_K_M) mix types.
  std::optional<TensorType> v_up_type;
  std::string rope_scaling;  // "", "linear", "llama3" (metadata), "llama3_tensor" (a rope_freqs tensor) or "longrope" (phi3)
  // <arch>.attention.sliding_window when > 0. Which layers it applies to is the architecture's: all for
  // llama/mistral, even layers for gemma2, five of each six for gemma3.
  int sliding_window = 0;
  // gemma2's <arch>.attn_logit_softcapping / final_logit_softcapping when > 0 (and gemma3's final one).
  float attn_softcap = 0;
  float final_softcap = 0;
  uint64_t seed = 1;
  int pooling_type = -1;  // <arch>.pooling_type when >= 0 (llama.cpp's enum: engine/pooling.h)
  // deepseek2 (multi-head latent attention): the latent's width, the query LoRA's rank (0: attn_q), the per-head
  // RoPE, no-RoPE and value widths, and leading_dense_block_count (-1: every layer). heads, dim and ffn
  // as for the others; kv_heads and head_dim are ignored.
  int kv_lora_rank = 32;
  int q_lora_rank = 0;
  int mla_rope_dim = 8;
  int qk_nope_dim = 16;
  int v_head_dim = 12;
  int dense_layers = -1;
  // What the architecture adds: qwen3 and gemma3 Q/K norms; gemma2/gemma3 post-norms; phi3 fused tensors.
  bool qk_norm() const { return architecture == "qwen3" || architecture == "gemma3"; }
  bool post_norms() const { return architecture == "gemma2" || architecture == "gemma3"; }
  bool fused() const { return architecture == "phi3"; }
  bool latent() const { return architecture == "deepseek2"; }
};

// A SentencePiece vocabulary (<unk>, <s>, </s>, 256 byte tokens, then pieces) of spec.vocab tokens and
// random weights of spec's shape.
GgufWriter synthetic_model(const SyntheticSpec& spec);
// Builds it in `storage` (which must outlive the model) and loads it; a failure is a test failure.
std::shared_ptr<const LlamaModel> load_synthetic_model(const SyntheticSpec& spec, std::vector<uint8_t>& storage);
// Writes it to a temporary file and returns the path.
std::string write_synthetic_model(const SyntheticSpec& spec, const std::string& name);

// Logits [tokens.size()][vocab] for every position, computed in double from the model's (dequantized)
// weights with a contiguous KV cache. `context`: the context the model is run with (LongRoPE picks its
// factors by it; 0: the model's own).
std::vector<std::vector<double>> reference_logits(const LlamaModel& model, const std::vector<int32_t>& tokens, int context = 0);

// The final norm's output [tokens.size()][dim] for every position (what embeddings pool), computed as
// reference_logits computes the logits.
std::vector<std::vector<double>> reference_hidden_states(const LlamaModel& model, const std::vector<int32_t>& tokens);

// Largest |a - b| over the largest |b|: a normalized error.
double normalized_error(const float* a, const std::vector<double>& b);

// Runs `tokens` through `backend` as one prefill of `prefill` tokens, then one decode step per token, all
// through `table` (blocks of the backend's pool, in any order), and checks each step's logits against
// reference_logits() within `tolerance` (normalized_error). `context`: as reference_logits'.
::testing::AssertionResult prefill_then_decode_matches_reference(Backend& backend, const LlamaModel& model, const std::vector<int32_t>& tokens,
                                                                 const std::vector<BlockId>& table, int prefill, double tolerance, int context = 0);

std::string temp_path(const std::string& name);

}  // namespace pagedlm::testing
