// What a model needs before it is loaded, and the context it gets. From the GGUF header alone: weight
// bytes by tensor type, KV bytes per token for each KV dtype, the memory left for the KV pool and the
// longest context that fits it. Engine::load sizes its default context and pool with the same rules.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"
#include "kv/kv_layout.h"
#include "model/llama_model.h"

namespace pagedlm {

// Memory the engine may plan with: the system's available RAM (source "MemAvailable": Linux's MemAvailable,
// Windows' available physical memory; elsewhere the physical memory), or a figure the caller states.
struct MemoryBudget {
  uint64_t bytes = 0;
  std::string source;  // "MemAvailable", "physical memory" or "option"
};
MemoryBudget system_memory_budget();

// The KV pool's default share of the memory left after the weights: the rest stays with the process (its
// activations, the JS heap) and the system.
constexpr double kDefaultKvShare = 0.5;

struct ModelPlan {
  ModelConfig config;
  uint64_t parameters = 0;
  uint64_t weight_bytes = 0;
  std::map<std::string, uint64_t> weight_bytes_by_type;  // tensor type name -> bytes
  size_t files = 1;                                       // more than one for a split model
};
// From a header (GgufFile::read_header) or an opened file.
Result<ModelPlan> plan_model(const GgufFile& file);
// Device memory the CUDA backend's copy of these weights takes: as stored, but Q8_0 as int8 rows plus
// f16 scales and the types it has no kernels for widened to f16 (CudaBackend::upload_matrix).
uint64_t cuda_weight_bytes(const GgufFile& file);

// Which limit set the context length: the caller's option, the model's trained context, the memory
// budget, or a KV pool the caller sized.
enum class ContextLimit { kOption, kModel, kMemory, kKvPool };
const char* context_limit_name(ContextLimit limit);

struct ContextRequest {
  int32_t context_length = 0;  // 0 = the model's, capped by what fits
  int32_t kv_blocks = 0;       // the caller's pool size, or 0
  uint64_t kv_memory = 0;      // the caller's pool bytes, or 0
  int32_t pool_contexts = 4;   // a default pool holds this many full contexts when they fit
};

struct ContextPlan {
  int32_t context_length = 0;
  int32_t num_blocks = 0;
  ContextLimit limit = ContextLimit::kModel;
  uint64_t kv_budget = 0;  // bytes the default pool may take (0 when the caller sized the pool)
};

// The context and pool for `trained_context` tokens of `layout` (num_blocks ignored) with `weight_bytes`
// of weights in `memory`. A default pool holds `pool_contexts` contexts, or as many blocks as the
// budget allows; the default context is the trained one when one sequence of it fits.
ContextPlan plan_context(const ContextRequest& request, int32_t trained_context, const KvLayout& layout, uint64_t weight_bytes,
                         const MemoryBudget& memory);

// The pool's K and V types for a model. A latent-attention model keeps V inside the K row, so V takes K's
// type; a V type given apart (`v_given`) that differs is an error.
Result<KvTypes> pool_kv_types(const ModelConfig& config, KvTypes requested, bool v_given);

struct InspectOptions {
  std::string device = "auto";  // "auto" (CUDA when a device is found, else the CPU), "cuda" or "cpu"
  int gpu = 0;                  // CUDA device index
  KvTypes kv_types;
  bool kv_v_type_given = false;  // kv_types.v was asked for, not defaulted (pool_kv_types)
  int32_t block_size = 16;
  int32_t sequences = 1;   // maxContextLength is per sequence, for this many at once
  uint64_t memory = 0;     // the budget to plan with; 0 = the device's free memory, or system_memory_budget()
};

struct ModelInspection {
  ModelPlan model;
  std::string device;               // "cpu" or "cuda": whose memory was planned with
  std::string gpu_name;             // the CUDA device's, when device is "cuda"
  uint64_t device_weight_bytes = 0; // what the weights take there (the CUDA backend widens some types)
  MemoryBudget memory;
  uint64_t kv_budget = 0;           // the default pool's share of the memory left after the weights
  int64_t max_context_length = 0;   // the longest context `sequences` sequences each fit in kv_budget
  ContextPlan default_plan;         // what Engine::load picks with no context or pool options
  KvTypes kv_types;                 // the planned pool's (pool_kv_types)
};

// Reads only the header (GgufFile::read_header): the weights are neither read nor mapped.
Result<ModelInspection> inspect_model(const std::string& path, const InspectOptions& options);

}  // namespace pagedlm
