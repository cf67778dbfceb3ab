#include "engine/memory_plan.h"

#include "backend/cuda/cuda_entry.h"
#include "common/platform.h"

#include <algorithm>

namespace pagedlm {

namespace {

int32_t blocks_for(int64_t tokens, int32_t block_size) { return static_cast<int32_t>(std::min<int64_t>((tokens + block_size - 1) / block_size, INT32_MAX)); }

}  // namespace

MemoryBudget system_memory_budget() {
  if (const uint64_t available = available_memory_bytes(); available > 0) return {available, "MemAvailable"};
  return {physical_memory_bytes(), "physical memory"};
}

Result<ModelPlan> plan_model(const GgufFile& file) {
  auto config = LlamaModel::read_config(file);
  if (!config.is_ok()) return config.status();
  ModelPlan plan;
  plan.config = config.take();
  plan.files = file.file_count();
  for (const GgufTensor& t : file.tensors()) {
    plan.parameters += t.elements();
    plan.weight_bytes += t.bytes;
    plan.weight_bytes_by_type[tensor_type_name(t.type)] += t.bytes;
  }
  return plan;
}

uint64_t cuda_weight_bytes(const GgufFile& file) {
  uint64_t bytes = 0;
  for (const GgufTensor& t : file.tensors()) {
    switch (t.type) {
      case TensorType::kF32:
      case TensorType::kF16:
      case TensorType::kBF16: bytes += t.bytes; break;
      case TensorType::kQ8_0: bytes += t.elements() + t.elements() / kQ8BlockElements * sizeof(uint16_t); break;
      default: bytes += t.dims.size() == 1 ? t.elements() * sizeof(float) : t.elements() * sizeof(uint16_t);
    }
  }
  return bytes;
}

const char* context_limit_name(ContextLimit limit) {
  switch (limit) {
    case ContextLimit::kOption: return "option";
    case ContextLimit::kModel: return "model";
    case ContextLimit::kMemory: return "memory";
    case ContextLimit::kKvPool: return "kvCache";
  }
  return "model";
}

ContextPlan plan_context(const ContextRequest& request, int32_t trained_context, const KvLayout& layout, uint64_t weight_bytes,
                         const MemoryBudget& memory) {
  ContextPlan plan;
  const int32_t block_size = layout.block_size;
  const uint64_t block_bytes = std::max<uint64_t>(layout.bytes_per_block(), 1);
  if (request.kv_blocks > 0 || request.kv_memory > 0) {
    plan.num_blocks = request.kv_blocks > 0 ? request.kv_blocks : static_cast<int32_t>(std::min<uint64_t>(request.kv_memory / block_bytes, INT32_MAX));
    const int64_t pool_tokens = static_cast<int64_t>(plan.num_blocks) * block_size;
    if (request.context_length > 0) {
      plan.context_length = request.context_length;
      plan.limit = ContextLimit::kOption;
    } else {
      plan.context_length = static_cast<int32_t>(std::min<int64_t>(trained_context, pool_tokens));
      plan.limit = trained_context <= pool_tokens ? ContextLimit::kModel : ContextLimit::kKvPool;
    }
    return plan;
  }
  const uint64_t left = memory.bytes > weight_bytes ? memory.bytes - weight_bytes : 0;
  plan.kv_budget = static_cast<uint64_t>(static_cast<double>(left) * kDefaultKvShare);
  const int32_t budget_blocks = static_cast<int32_t>(std::min<uint64_t>(plan.kv_budget / block_bytes, INT32_MAX));
  if (request.context_length > 0) {
    plan.context_length = request.context_length;
    plan.limit = ContextLimit::kOption;
  } else {
    const int64_t fitting_tokens = static_cast<int64_t>(budget_blocks) * block_size;
    // At least one block, so that a budget too small still gives a pool the engine can report on.
    plan.context_length = static_cast<int32_t>(std::max<int64_t>(std::min<int64_t>(trained_context, fitting_tokens), std::min(block_size, trained_context)));
    plan.limit = trained_context <= fitting_tokens ? ContextLimit::kModel : ContextLimit::kMemory;
  }
  const int32_t context_blocks = blocks_for(plan.context_length, block_size);
  const int64_t wanted = static_cast<int64_t>(context_blocks) * std::max(1, request.pool_contexts);
  plan.num_blocks = static_cast<int32_t>(std::max<int64_t>(context_blocks, std::min<int64_t>(wanted, budget_blocks)));
  return plan;
}

Result<KvTypes> pool_kv_types(const ModelConfig& config, KvTypes requested, bool v_given) {
  if (!config.latent_attention()) return requested;
  if (v_given && requested.v != requested.k) {
    return Status(ErrorCode::kInvalidArgument, std::string("a latent-attention model keeps V inside the K row: kvCache.vType ('") +
                                                   kv_dtype_name(requested.v) + "') must be kType's ('" + kv_dtype_name(requested.k) + "') or left out");
  }
  return KvTypes::both(requested.k);
}

Result<ModelInspection> inspect_model(const std::string& path, const InspectOptions& options) {
  if (options.device != "auto" && options.device != "cuda" && options.device != "cpu") {
    return Status(ErrorCode::kInvalidArgument, "device must be 'auto', 'cuda' or 'cpu'");
  }
  if (options.block_size < 1 || options.block_size > 1024) return Status(ErrorCode::kInvalidArgument, "kvCache.blockSize must be in [1, 1024]");
  if (options.sequences < 1) return Status(ErrorCode::kInvalidArgument, "sequences must be at least 1");
  auto header = GgufFile::read_header(path);
  if (!header.is_ok()) return header.status();
  auto model = plan_model(header.value());
  if (!model.is_ok()) return Status(model.status().code(), "'" + path + "': " + model.status().message());
  ModelInspection out;
  out.model = model.take();
  out.device = "cpu";
  out.device_weight_bytes = out.model.weight_bytes;
  out.memory = system_memory_budget();
  if (options.device != "cpu") {
    CudaDeviceReply gpu;
    query_cuda_device(options.gpu, gpu);
    if (gpu.status.is_ok()) {
      out.device = "cuda";
      out.gpu_name = gpu.name;
      out.device_weight_bytes = cuda_weight_bytes(header.value());
      out.memory = {gpu.free_bytes, "cuda"};
    } else if (options.device == "cuda" || !gpu.unavailable) {
      return Status(gpu.status.code(), "CUDA cannot be planned for: " + gpu.status.message());
    }
  }
  if (options.memory > 0) out.memory = {options.memory, "option"};
  const ModelConfig& c = out.model.config;
  auto types = pool_kv_types(c, options.kv_types, options.kv_v_type_given);
  if (!types.is_ok()) return types.status();
  out.kv_types = types.value();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, options.block_size, 0, out.kv_types.k, out.kv_types.v};
  layout.v_dim = c.value_dim(), layout.v_in_k = c.latent_attention();
  out.default_plan = plan_context(ContextRequest{}, c.context_length, layout, out.device_weight_bytes, out.memory);
  out.kv_budget = out.default_plan.kv_budget;
  const int64_t budget_blocks = static_cast<int64_t>(out.kv_budget / std::max<uint64_t>(layout.bytes_per_block(), 1));
  out.max_context_length = budget_blocks / options.sequences * options.block_size;
  return out;
}

}  // namespace pagedlm
