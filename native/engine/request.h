// What crosses between the engine thread and its client (the addon, or a test): requests in, events out.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/pooling.h"
#include "engine/sampler.h"
#include "grammar/grammar.h"
#include "speculative/proposer.h"

namespace pagedlm {

using RequestId = uint64_t;

// A request for the prompt's embedding instead of a completion: its hidden states pooled as the model's
// pooling_type says (pooling.h). It generates nothing and neither reuses cached prefix blocks (their hidden
// states are not kept) nor adds its own to the cache.
struct EmbedParams {
  bool normalize = true;  // scale the vector to unit L2 norm
  std::optional<Pooling> pooling;  // overrides the model's pooling_type
};

struct GenerateParams {
  int32_t n = 1;            // completions of the prompt; they share its KV blocks (copy-on-write)
  int32_t max_tokens = 512;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;
  bool ignore_eos = false;
  uint64_t cache_salt = 0;  // requests share cached prefixes only with requests of the same salt
  bool pin = false;         // at the end, keep the prompt's full blocks resident until Engine::unpin(id)
  // A kToken event per generated token. Without them only the kFinished event (text and tokens) comes: a
  // client that does not stream is not woken once per token (on a machine whose every core computes, each
  // wake-up takes a core from the step).
  bool stream_tokens = true;
  // Set: each generated token comes with its log-probability and the `*logprobs` most likely alternatives
  // (0: none; see TokenLogprobs). Such a request's logit rows are always computed in full.
  std::optional<int32_t> logprobs;
  // Set: every generated token keeps the text a prefix of a sentence of this grammar; an end-of-generation
  // token is allowed exactly where the text is a whole sentence (ending generation even with ignore_eos),
  // and generation stops by itself where the grammar admits nothing longer.
  std::shared_ptr<const grammar::Grammar> grammar;
  SamplingParams sampling;
  // Speculative decoding: a proposer guesses up to max_tokens tokens a step, verified in one pass; the
  // output is what plain decoding gives (grammar masks included). Embedding requests run plain.
  speculative::SpeculativeParams speculative;
  std::optional<EmbedParams> embed;  // set: an embedding request (n 1, max_tokens 0, no logprobs)
};

struct GenerateRequest {
  RequestId id = 0;
  std::vector<int32_t> prompt;  // token ids, BOS included when wanted
  GenerateParams params;
};

enum class FinishReason { kStop, kLength, kAbort };
const char* finish_reason_name(FinishReason reason);

struct EngineEvent {
  enum class Kind { kToken, kFinished, kFailed };
  Kind kind = Kind::kToken;
  RequestId request = 0;
  int32_t choice = 0;               // which of the request's n completions
  // kToken
  int32_t token = -1;
  std::string text;                 // text this token completes (may be empty); kFinished: the whole text
  std::vector<TokenLogprobs> logprobs;  // params.logprobs set: kToken: this token's; kFinished: every token's
  // kFinished
  FinishReason finish_reason = FinishReason::kStop;
  std::vector<int32_t> tokens;      // every generated token
  int32_t prompt_tokens = 0;
  int32_t pinned_tokens = 0;        // params.pin: prompt tokens whose blocks are now pinned
  double ttft_ms = 0;
  double tokens_per_second = 0;
  std::vector<float> embedding;     // params.embed: the pooled vector (empty when aborted)
  std::optional<speculative::SpeculationCounters> speculation;  // params.speculative asked for a proposer
  // kFailed
  Status error;
};

// Receives each step's events, in order, on the engine thread. Must not block for long.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void deliver(std::vector<EngineEvent> events) = 0;
};

}  // namespace pagedlm
