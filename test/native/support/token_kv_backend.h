// A model-free backend for scheduler and runner tests. Its "KV" holds the token id written at each slot,
// through the block tables, exactly where a model's K/V would go; each logit row is computed from the
// whole context read back through the block table. So a wrong block table, a prefix hit on the wrong
// block or a missed copy-on-write changes the next token, as it would with a model, while every step
// costs microseconds.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace pagedlm::testing {

class TokenKvBackend final : public Backend {
 public:
  TokenKvBackend(int32_t num_blocks, int32_t block_size, int32_t vocab);

  const KvLayout& kv_layout() const override { return layout_; }
  Status forward(const ForwardBatch& batch, float* logits) override;
  size_t block_bytes() const override { return static_cast<size_t>(layout_.block_size) * sizeof(int32_t); }
  Status export_block(BlockId block, uint8_t* out) const override;
  Status import_block(BlockId block, const uint8_t* in) override;
  Status copy_block(BlockId from, BlockId to) override;

  // The token a sequence whose context is `tokens` samples next under greedy decoding.
  int32_t next_token(const std::vector<int32_t>& tokens) const;

  // What each forward pass was asked to compute, for tests of the plans.
  struct Row {
    int32_t start_position;
    int32_t num_tokens;
    bool want_logits;
    int32_t logit_rows = 1;
  };
  const std::vector<std::vector<Row>>& passes() const { return passes_; }
  int32_t copies() const { return copies_; }

 private:
  int32_t& slot(BlockId block, int32_t position) { return slots_[static_cast<size_t>(block) * layout_.block_size + position % layout_.block_size]; }

  KvLayout layout_;
  int32_t vocab_;
  std::vector<int32_t> slots_;  // [num_blocks][block_size] token ids; -1 unwritten
  std::vector<std::vector<Row>> passes_;
  int32_t copies_ = 0;
};

}  // namespace pagedlm::testing
