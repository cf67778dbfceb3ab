#include "addon/convert.h"

#include <algorithm>
#include <cmath>
#include <list>
#include <mutex>

#include "tokenizer/unicode.h"

namespace pagedlm::addon {

Napi::Error to_js_error(Napi::Env env, const Status& status) {
  Napi::Error error = Napi::Error::New(env, status.message());
  error.Set("code", Napi::String::New(env, error_code_name(status.code())));
  return error;
}

std::optional<double> optional_number(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(o.Env(), std::string(key) + " must be finite");
  return d;
}

std::optional<bool> optional_bool(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::vector<std::string> string_array(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  std::vector<std::string> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be an array of strings");
  const Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const Napi::Value s = a.Get(i);
    if (!s.IsString()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be an array of strings");
    out.push_back(s.As<Napi::String>().Utf8Value());
  }
  return out;
}

std::vector<int32_t> int_array(const Napi::Value& v, const char* what) {
  std::vector<int32_t> out;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    const auto a = v.As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
    return out;
  }
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array of integers");
  const Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const Napi::Value x = a.Get(i);
    if (!x.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array of integers");
    const double d = x.As<Napi::Number>().DoubleValue();
    if (d != std::floor(d) || d < INT32_MIN || d > INT32_MAX) throw Napi::RangeError::New(v.Env(), std::string(what) + " must hold 32-bit integers");
    out.push_back(static_cast<int32_t>(d));
  }
  return out;
}

uint64_t salt_id(const std::string& salt) {
  // FNV-1a: stable across runs and platforms, so saved caches keep their salts.
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : salt) h = (h ^ c) * 0x100000001b3ull;
  return h | 1;  // never 0, the unsalted id
}

namespace {
int32_t to_int(const Napi::Object& o, const char* key, int32_t fallback) {
  const auto v = optional_number(o, key);
  return v ? static_cast<int32_t>(*v) : fallback;
}
}  // namespace

namespace {
// kvKType / kvVType (lib/options.js resolves kvCache.dtype into both).
KvTypes kv_types(const Napi::Object& o) {
  KvTypes types;
  for (auto [key, out] : {std::pair{"kvKType", &types.k}, std::pair{"kvVType", &types.v}}) {
    const Napi::Value name = o.Get(key);
    if (!name.IsString()) continue;
    const auto parsed = parse_kv_dtype(name.As<Napi::String>().Utf8Value());
    if (!parsed) throw Napi::RangeError::New(o.Env(), std::string(key) + " must be one of " + kv_dtype_choices());
    *out = *parsed;
  }
  return types;
}

// A pool's K and V types: kvDtype names them where they agree (else null), kType / vType each.
void set_kv_types(Napi::Object& o, const KvTypes& types, const char* both, const char* k, const char* v) {
  o.Set(both, types.k == types.v ? Napi::Value(Napi::String::New(o.Env(), kv_dtype_name(types.k))) : o.Env().Null());
  o.Set(k, kv_dtype_name(types.k));
  o.Set(v, kv_dtype_name(types.v));
}
}  // namespace

EngineOptions engine_options(const Napi::Object& o) {
  EngineOptions e;
  e.threads = to_int(o, "threads", 0);
  e.context_length = to_int(o, "contextLength", 0);
  e.block_size = to_int(o, "blockSize", e.block_size);
  e.kv_blocks = to_int(o, "kvBlocks", 0);
  e.kv_memory = static_cast<uint64_t>(optional_number(o, "kvMemory").value_or(0));
  e.max_batch_tokens = to_int(o, "maxBatchTokens", e.max_batch_tokens);
  e.prefault = optional_bool(o, "prefault").value_or(true);
  e.use_mmap = optional_bool(o, "mmap").value_or(true);
  const Napi::Value device = o.Get("device");
  if (device.IsString()) e.device = device.As<Napi::String>().Utf8Value();
  e.gpu = to_int(o, "gpu", 0);
  e.gpu_memory_fraction = optional_number(o, "gpuMemoryFraction").value_or(0);
  const Napi::Value draft_model = o.Get("draftModel");
  if (draft_model.IsString()) e.draft_model = draft_model.As<Napi::String>().Utf8Value();
  e.draft_tokens = to_int(o, "draftTokens", e.draft_tokens);
  e.offload.memory_bytes = static_cast<uint64_t>(optional_number(o, "offloadMemory").value_or(0));
  e.offload.disk_bytes = static_cast<uint64_t>(optional_number(o, "offloadDisk").value_or(0));
  const Napi::Value offload_path = o.Get("offloadPath");
  if (offload_path.IsString()) e.offload.path = offload_path.As<Napi::String>().Utf8Value();
  e.kv_types = kv_types(o);
  e.kv_v_type_given = o.Get("kvVType").IsString();
  return e;
}

InspectOptions inspect_options(const Napi::Object& o) {
  InspectOptions i;
  const Napi::Value device = o.Get("device");
  if (device.IsString()) i.device = device.As<Napi::String>().Utf8Value();
  i.gpu = to_int(o, "gpu", 0);
  i.block_size = to_int(o, "blockSize", i.block_size);
  i.sequences = to_int(o, "sequences", i.sequences);
  i.memory = static_cast<uint64_t>(optional_number(o, "memory").value_or(0));
  i.kv_types = kv_types(o);
  i.kv_v_type_given = o.Get("kvVType").IsString();
  return i;
}

GenerateParams generate_params(const Napi::Object& o) {
  GenerateParams p;
  p.max_tokens = to_int(o, "maxTokens", p.max_tokens);
  p.n = to_int(o, "n", 1);
  p.stop_strings = string_array(o, "stop");
  if (o.Has("stopTokens") && !o.Get("stopTokens").IsUndefined()) p.stop_tokens = int_array(o.Get("stopTokens"), "stopTokens");
  p.ignore_eos = optional_bool(o, "ignoreEos").value_or(false);
  p.pin = optional_bool(o, "pin").value_or(false);
  p.stream_tokens = optional_bool(o, "streamTokens").value_or(true);
  if (o.Get("logprobs").IsNumber()) p.logprobs = std::max(0, to_int(o, "logprobs", 0));  // lib/options.js checks the range
  const Napi::Value salt = o.Get("cacheSalt");
  if (salt.IsString()) p.cache_salt = salt_id(salt.As<Napi::String>().Utf8Value());
  SamplingParams& s = p.sampling;
  s.temperature = static_cast<float>(optional_number(o, "temperature").value_or(s.temperature));
  s.top_k = to_int(o, "topK", s.top_k);
  s.top_p = static_cast<float>(optional_number(o, "topP").value_or(s.top_p));
  s.min_p = static_cast<float>(optional_number(o, "minP").value_or(s.min_p));
  s.repetition_penalty = static_cast<float>(optional_number(o, "repetitionPenalty").value_or(s.repetition_penalty));
  s.frequency_penalty = static_cast<float>(optional_number(o, "frequencyPenalty").value_or(s.frequency_penalty));
  s.presence_penalty = static_cast<float>(optional_number(o, "presencePenalty").value_or(s.presence_penalty));
  s.penalty_last_n = to_int(o, "penaltyLastN", s.penalty_last_n);
  if (const auto seed = optional_number(o, "seed")) s.seed = static_cast<uint64_t>(*seed);
  p.grammar = compile_grammar(o);
  if (o.Get("speculative").IsObject()) {
    // lib/options.js checks the names and the range.
    const Napi::Object spec = o.Get("speculative").As<Napi::Object>();
    const Napi::Value proposer = spec.Get("proposer");
    const std::string name = proposer.IsString() ? proposer.As<Napi::String>().Utf8Value() : "none";
    if (name == "ngram") p.speculative.proposer = speculative::ProposerKind::kNgram;
    else if (name == "draft") p.speculative.proposer = speculative::ProposerKind::kDraft;
    else if (name != "none") throw Napi::RangeError::New(o.Env(), "speculative.proposer must be 'ngram' or 'draft'");
    p.speculative.max_tokens = to_int(spec, "tokens", p.speculative.max_tokens);
  }
  if (o.Get("embed").IsObject()) {
    const Napi::Object embed = o.Get("embed").As<Napi::Object>();
    p.embed = EmbedParams{optional_bool(embed, "normalize").value_or(true), std::nullopt};
    if (embed.Get("pooling").IsString()) p.embed->pooling = pooling_from_name(embed.Get("pooling").As<Napi::String>().Utf8Value());  // lib/options.js checks the name
  }
  return p;
}

Napi::TypeError grammar_error(Napi::Env env, const Status& status, const char* code) {
  Napi::TypeError error = Napi::TypeError::New(env, status.message());
  error.Set("code", Napi::String::New(env, code));
  return error;
}

namespace {

// The grammars of recent requests by their text. A chat backend sends the same schema with every request:
// it is compiled once, and the masks its Grammar memoizes serve every later request (a Grammar keeps masks
// per vocabulary index, so engines of different models may share it). Worker threads share the addon.
class RecentGrammars {
 public:
  std::shared_ptr<const grammar::Grammar> find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->first != key) continue;
      entries_.splice(entries_.begin(), entries_, it);
      return it->second;
    }
    return nullptr;
  }
  void add(std::string key, std::shared_ptr<const grammar::Grammar> grammar) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.emplace_front(std::move(key), std::move(grammar));
    if (entries_.size() > kCapacity) entries_.pop_back();
  }

 private:
  static constexpr size_t kCapacity = 16;
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<const grammar::Grammar>>> entries_;  // most recent first
};

RecentGrammars& recent_grammars() {
  static RecentGrammars recent;
  return recent;
}

}  // namespace

std::shared_ptr<const grammar::Grammar> compile_grammar(const Napi::Object& o) {
  const Napi::Env env = o.Env();
  std::string key;  // what the grammar is made from, tagged by kind
  if (const Napi::Value text = o.Get("grammar"); text.IsString()) {
    key = "gbnf:" + text.As<Napi::String>().Utf8Value();
  } else if (const Napi::Value schema = o.Get("jsonSchema"); schema.IsString()) {
    key = "schema:" + schema.As<Napi::String>().Utf8Value();
  } else if (optional_bool(o, "json").value_or(false)) {
    key = "json:";
  } else {
    return nullptr;
  }
  if (auto known = recent_grammars().find(key)) return known;
  const std::string_view source = std::string_view(key).substr(key.find(':') + 1);
  std::string gbnf;
  if (key.starts_with("gbnf:")) {
    gbnf = source;
  } else if (key.starts_with("schema:")) {
    Result<std::string> compiled = grammar::json_schema_to_gbnf(source);
    if (!compiled.is_ok()) throw grammar_error(env, compiled.status(), "ERR_INVALID_SCHEMA");
    gbnf = compiled.take();
  } else {
    gbnf = grammar::json_value_gbnf(false);
  }
  auto parsed = grammar::parse_gbnf(gbnf);
  if (!parsed.is_ok()) throw grammar_error(env, parsed.status(), "ERR_INVALID_GRAMMAR");
  std::shared_ptr<const grammar::Grammar> compiled = parsed.take();
  recent_grammars().add(std::move(key), compiled);
  return compiled;
}

namespace {
// The shape fields info() and inspect() share.
void set_model_shape(Napi::Object& o, const ModelConfig& m) {
  o.Set("vocabSize", m.vocab_size);
  o.Set("embeddingLength", m.dim);
  o.Set("layers", m.n_layers);
  o.Set("heads", m.n_heads);
  o.Set("kvHeads", m.n_kv_heads);
  o.Set("headDim", m.head_dim);
  o.Set("latentAttention", m.latent_attention());
  o.Set("feedForwardLength", m.ffn_dim);
  o.Set("trainedContextLength", m.context_length);
}
}  // namespace

Napi::Object inspection_to_js(Napi::Env env, const ModelInspection& inspection, const InspectOptions& options) {
  const ModelConfig& m = inspection.model.config;
  Napi::Object o = Napi::Object::New(env);
  o.Set("architecture", m.architecture);
  o.Set("name", m.name);
  o.Set("files", static_cast<double>(inspection.model.files));
  o.Set("parameters", static_cast<double>(inspection.model.parameters));
  o.Set("weightBytes", static_cast<double>(inspection.model.weight_bytes));
  Napi::Object by_type = Napi::Object::New(env);
  for (const auto& [type, bytes] : inspection.model.weight_bytes_by_type) by_type.Set(type, static_cast<double>(bytes));
  o.Set("weightBytesByType", by_type);
  set_model_shape(o, m);
  Napi::Object per_token = Napi::Object::New(env);
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3, KvDtype::kInt4}) {
    per_token.Set(kv_dtype_name(dtype), static_cast<double>(KvLayout::kv_bytes_per_token(m.n_layers, m.n_kv_heads, m.head_dim, KvTypes::both(dtype),
                                                                                          options.block_size, m.latent_attention())));
  }
  o.Set("kvBytesPerToken", per_token);
  o.Set("kvPlannedBytesPerToken",
        static_cast<double>(KvLayout::kv_bytes_per_token(m.n_layers, m.n_kv_heads, m.head_dim, inspection.kv_types, options.block_size, m.latent_attention())));
  set_kv_types(o, inspection.kv_types, "kvDtype", "kvKType", "kvVType");
  o.Set("device", inspection.device);
  o.Set("gpu", inspection.gpu_name.empty() ? env.Null() : Napi::String::New(env, inspection.gpu_name));
  o.Set("deviceWeightBytes", static_cast<double>(inspection.device_weight_bytes));
  o.Set("memoryBytes", static_cast<double>(inspection.memory.bytes));
  o.Set("memorySource", inspection.memory.source);
  o.Set("kvBudgetBytes", static_cast<double>(inspection.kv_budget));
  o.Set("sequences", options.sequences);
  o.Set("maxContextLength", static_cast<double>(inspection.max_context_length));
  o.Set("contextLength", inspection.default_plan.context_length);
  o.Set("contextLimit", context_limit_name(inspection.default_plan.limit));
  return o;
}

Napi::Object info_to_js(Napi::Env env, const EngineInfo& info) {
  const ModelConfig& m = info.model;
  Napi::Object o = Napi::Object::New(env);
  o.Set("architecture", m.architecture);
  o.Set("name", m.name);
  o.Set("parameters", static_cast<double>(info.parameters));
  o.Set("weightBytes", static_cast<double>(info.weight_bytes));
  o.Set("decodeWeightBytes", static_cast<double>(info.decode_weight_bytes));
  o.Set("tensorType", info.tensor_type);
  set_model_shape(o, m);
  o.Set("contextLength", info.context_length);
  o.Set("contextLimit", context_limit_name(info.context_limit));
  o.Set("ropeFreqBase", m.rope_base);
  o.Set("tiedOutput", m.tied_output);
  const auto pooling = pooling_for_type(m.pooling_type);
  o.Set("embeddingPooling", pooling.is_ok() ? Napi::Value(Napi::String::New(env, pooling_name(pooling.value()))) : env.Null());
  set_kv_types(o, info.kv.types(), "kvDtype", "kvKType", "kvVType");
  o.Set("kvBytesPerToken", static_cast<double>(info.kv.bytes_per_token()));
  o.Set("kvBlockSize", info.kv.block_size);
  o.Set("kvBlocks", info.kv.num_blocks);
  o.Set("kvPoolBytes", static_cast<double>(info.kv.total_bytes()));
  o.Set("backend", info.backend);
  o.Set("backendReason", info.backend_reason);
  o.Set("gpu", info.gpu_name.empty() ? env.Null() : Napi::String::New(env, info.gpu_name));
  o.Set("gpuWeightBytes", static_cast<double>(info.gpu_weight_bytes));
  o.Set("cpuWeightBytes", static_cast<double>(info.cpu_weight_bytes));
  o.Set("modelHeapBytes", static_cast<double>(info.model_heap_bytes));
  o.Set("cpuKernels", info.cpu_kernels);
  o.Set("threads", info.threads);
  o.Set("tokenizer", info.tokenizer);
  o.Set("tokenizerPre", info.tokenizer_pre);
  o.Set("bosTokenId", info.bos_id);
  o.Set("eosTokenId", info.eos_id);
  o.Set("bosToken", utf8_sanitize(info.bos_text));
  o.Set("eosToken", utf8_sanitize(info.eos_text));
  o.Set("chatTemplate", info.chat_template.empty() ? env.Null() : Napi::String::New(env, utf8_sanitize(info.chat_template)));
  return o;
}

Napi::Object stats_to_js(Napi::Env env, const EngineStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("blocksTotal", s.total_blocks);
  o.Set("blocksFree", s.free_blocks);
  o.Set("blocksCached", s.cached_blocks);
  o.Set("blocksInUse", s.in_use_blocks);
  o.Set("running", s.running);
  o.Set("waiting", s.waiting);
  o.Set("steps", static_cast<double>(s.steps));
  o.Set("preemptions", static_cast<double>(s.preemptions));
  o.Set("generatedTokens", static_cast<double>(s.generated_tokens));
  o.Set("computedTokens", static_cast<double>(s.computed_tokens));
  o.Set("busySeconds", s.busy_seconds);
  o.Set("tokensPerSecond", s.busy_seconds > 0 ? static_cast<double>(s.generated_tokens) / s.busy_seconds : 0.0);
  const speculative::SpeculationCounters& c = s.speculation;
  Napi::Object speculation = Napi::Object::New(env);
  speculation.Set("proposed", static_cast<double>(c.proposed));
  speculation.Set("accepted", static_cast<double>(c.accepted));
  speculation.Set("acceptanceRate", c.proposed > 0 ? static_cast<double>(c.accepted) / static_cast<double>(c.proposed) : 0.0);
  speculation.Set("tokensPerStep", c.verify_steps > 0 ? static_cast<double>(c.generated_tokens) / static_cast<double>(c.verify_steps) : 0.0);
  o.Set("speculation", speculation);
  return o;
}

namespace {
Napi::Object offload_stats_to_js(Napi::Env env, const OffloadStats& t) {
  const auto tier = [&](uint64_t capacity, uint64_t bytes, uint64_t blocks, uint64_t hits) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("capacityBytes", static_cast<double>(capacity));
    o.Set("bytes", static_cast<double>(bytes));
    o.Set("blocks", static_cast<double>(blocks));
    o.Set("hits", static_cast<double>(hits));
    return o;
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("memory", tier(t.memory_capacity_bytes, t.memory_bytes, t.memory_blocks, t.memory_hits));
  o.Set("disk", tier(t.disk_capacity_bytes, t.disk_bytes, t.disk_blocks, t.disk_hits));
  o.Set("offloadedBlocks", static_cast<double>(t.offloaded_blocks));
  o.Set("writeErrors", static_cast<double>(t.write_errors));
  o.Set("readErrors", static_cast<double>(t.read_errors));
  return o;
}
}  // namespace

Napi::Object cache_stats_to_js(Napi::Env env, const EngineStats& s, const EngineInfo& info) {
  const KvLayout& kv = info.kv;
  Napi::Object o = Napi::Object::New(env);
  o.Set("blockSize", kv.block_size);
  o.Set("blocksTotal", s.total_blocks);
  o.Set("blocksFree", s.free_blocks);
  o.Set("blocksInUse", s.in_use_blocks);
  o.Set("blocksCached", s.cached_blocks);
  o.Set("unusedSlots", static_cast<double>(s.unused_slots));
  o.Set("blocksPinned", s.pinned_blocks);
  o.Set("bytesPerToken", static_cast<double>(kv.bytes_per_token()));
  o.Set("bytesTotal", static_cast<double>(kv.total_bytes()));
  o.Set("device", info.backend);
  o.Set("deviceBytes", static_cast<double>(info.backend == "cuda" ? kv.total_bytes() : 0));
  set_kv_types(o, kv.types(), "dtype", "kType", "vType");
  o.Set("prefixQueries", static_cast<double>(s.prefix.queries));
  o.Set("prefixHits", static_cast<double>(s.prefix.hits));
  o.Set("queryTokens", static_cast<double>(s.prefix.query_tokens));
  o.Set("hitTokens", static_cast<double>(s.prefix.hit_tokens));
  o.Set("hitRate", s.prefix.query_tokens == 0 ? 0.0 : static_cast<double>(s.prefix.hit_tokens) / static_cast<double>(s.prefix.query_tokens));
  o.Set("evictions", static_cast<double>(s.evictions));
  o.Set("offload", s.offload ? offload_stats_to_js(env, s.offload_tiers) : env.Null());
  return o;
}

namespace {
Napi::Int32Array to_int32_array(Napi::Env env, const std::vector<int32_t>& v) {
  Napi::Int32Array a = Napi::Int32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}
}  // namespace

Napi::Object logprob_entry_to_js(Napi::Env env, const LogprobEntry& entry) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("token", entry.token);
  o.Set("text", utf8_sanitize(entry.bytes));
  Napi::Array bytes = Napi::Array::New(env, entry.bytes.size());
  for (size_t i = 0; i < entry.bytes.size(); ++i) bytes.Set(static_cast<uint32_t>(i), static_cast<uint8_t>(entry.bytes[i]));
  o.Set("bytes", bytes);
  o.Set("logprob", static_cast<double>(entry.logprob));
  return o;
}

Napi::Array logprobs_to_js(Napi::Env env, const std::vector<TokenLogprobs>& logprobs) {
  Napi::Array out = Napi::Array::New(env, logprobs.size());
  for (size_t i = 0; i < logprobs.size(); ++i) {
    Napi::Object o = logprob_entry_to_js(env, logprobs[i].chosen);
    Napi::Array top = Napi::Array::New(env, logprobs[i].top.size());
    for (size_t k = 0; k < logprobs[i].top.size(); ++k) top.Set(static_cast<uint32_t>(k), logprob_entry_to_js(env, logprobs[i].top[k]));
    o.Set("top", top);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Object event_to_js(Napi::Env env, const EngineEvent& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", static_cast<double>(e.request));
  o.Set("choice", e.choice);
  switch (e.kind) {
    case EngineEvent::Kind::kToken:
      o.Set("kind", "token");
      o.Set("token", e.token);
      o.Set("text", e.text);
      if (!e.logprobs.empty()) o.Set("logprobs", logprobs_to_js(env, e.logprobs));
      break;
    case EngineEvent::Kind::kFinished:
      o.Set("kind", "finished");
      o.Set("text", e.text);
      o.Set("tokens", to_int32_array(env, e.tokens));
      if (!e.logprobs.empty()) o.Set("logprobs", logprobs_to_js(env, e.logprobs));
      o.Set("finishReason", finish_reason_name(e.finish_reason));
      o.Set("promptTokens", e.prompt_tokens);
      o.Set("pinnedTokens", e.pinned_tokens);
      o.Set("ttftMs", e.ttft_ms);
      o.Set("tokensPerSecond", e.tokens_per_second);
      if (e.speculation) {
        Napi::Object speculation = Napi::Object::New(env);
        speculation.Set("proposed", static_cast<double>(e.speculation->proposed));
        speculation.Set("accepted", static_cast<double>(e.speculation->accepted));
        speculation.Set("verifySteps", static_cast<double>(e.speculation->verify_steps));
        speculation.Set("generatedTokens", static_cast<double>(e.speculation->generated_tokens));
        o.Set("speculation", speculation);
      }
      if (!e.embedding.empty()) {
        Napi::Float32Array embedding = Napi::Float32Array::New(env, e.embedding.size());
        std::copy(e.embedding.begin(), e.embedding.end(), embedding.Data());
        o.Set("embedding", embedding);
      }
      break;
    case EngineEvent::Kind::kFailed:
      o.Set("kind", "failed");
      o.Set("code", error_code_name(e.error.code()));
      o.Set("message", e.error.message());
      break;
  }
  return o;
}

}  // namespace pagedlm::addon
