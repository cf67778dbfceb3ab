// One request's state while the engine works on it. Owned by the engine thread.
#pragma once

#include <chrono>
#include <vector>

#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "kv/block_hash.h"
#include "kv/block_pool.h"

namespace pagedlm {

using Clock = std::chrono::steady_clock;

enum class SequenceStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  explicit Sequence(GenerateRequest request)
      : id(request.id), tokens(std::move(request.prompt)), prompt_length(static_cast<int32_t>(tokens.size())),
        params(std::move(request.params)), sampler(params.sampling), text(params.stop_strings), submitted(Clock::now()) {}

  int32_t num_generated() const { return static_cast<int32_t>(tokens.size()) - prompt_length; }
  int32_t num_uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed_tokens; }

  RequestId id;
  std::vector<int32_t> tokens;      // prompt then generated ids
  int32_t prompt_length;
  int32_t num_computed_tokens = 0;  // tokens whose K/V are in the pool
  std::vector<BlockId> block_table; // append-only while running
  std::vector<BlockHash> block_hashes;  // hashes of its full blocks registered in the prefix cache
  int32_t cached_prompt_tokens = 0; // prompt tokens reused from the prefix cache at admission
  int32_t blocks_to_allocate = 0;   // blocks promised at admission and not yet taken
  SequenceStatus status = SequenceStatus::kWaiting;
  GenerateParams params;
  Sampler sampler;
  TextStream text;
  std::string generated_text;
  Clock::time_point submitted;
  Clock::time_point first_token;
};

}  // namespace pagedlm
