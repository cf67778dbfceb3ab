#include "support/token_kv_backend.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace pagedlm::testing {

namespace {
// Folds a context into a token id: every token and its position count, so any misplaced slot shows.
int32_t token_after(const int32_t* context, size_t length, int32_t vocab) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < length; ++i) h = (h ^ static_cast<uint64_t>(context[i] + 1)) * 0x100000001B3ull + i;
  return static_cast<int32_t>(h % static_cast<uint64_t>(vocab));
}
}  // namespace

TokenKvBackend::TokenKvBackend(int32_t num_blocks, int32_t block_size, int32_t vocab)
    : vocab_(vocab), slots_(static_cast<size_t>(num_blocks) * block_size, -1) {
  layout_ = KvLayout{1, 1, 1, block_size, num_blocks, KvDtype::kF32, KvDtype::kF32};
}

int32_t TokenKvBackend::next_token(const std::vector<int32_t>& tokens) const { return token_after(tokens.data(), tokens.size(), vocab_); }

Status TokenKvBackend::forward(const ForwardBatch& batch, float* logits) {
  std::vector<Row> rows;
  size_t logit_row = 0;
  for (const BatchSequence& s : batch.sequences) {
    rows.push_back({s.start_position, s.num_tokens, s.want_logits, s.logit_rows});
    for (int32_t i = 0; i < s.num_tokens; ++i) {
      const int32_t position = s.start_position + i;
      slot(s.block_table[position / layout_.block_size], position) = batch.tokens[static_cast<size_t>(s.first_token + i)];
    }
    if (!s.want_logits) continue;
    std::vector<int32_t> context;
    for (int32_t p = 0; p < s.start_position + s.num_tokens; ++p) {
      const int32_t token = slot(s.block_table[p / layout_.block_size], p);
      if (token < 0) throw std::logic_error("position " + std::to_string(p) + " was read before it was written");
      context.push_back(token);
    }
    // Row r of the sequence's logit_rows is the distribution after its first (length - logit_rows + 1 + r) tokens.
    for (int32_t r = 0; r < s.logit_rows; ++r) {
      float* row = logits + logit_row++ * static_cast<size_t>(vocab_);
      std::fill(row, row + vocab_, 0.0f);
      row[token_after(context.data(), context.size() - static_cast<size_t>(s.logit_rows - 1 - r), vocab_)] = 1.0f;
    }
  }
  passes_.push_back(std::move(rows));
  return Status::ok();
}

Status TokenKvBackend::export_block(BlockId block, uint8_t* out) const {
  std::memcpy(out, slots_.data() + static_cast<size_t>(block) * layout_.block_size, block_bytes());
  return Status::ok();
}

Status TokenKvBackend::import_block(BlockId block, const uint8_t* in) {
  std::memcpy(slots_.data() + static_cast<size_t>(block) * layout_.block_size, in, block_bytes());
  return Status::ok();
}

Status TokenKvBackend::copy_block(BlockId from, BlockId to) {
  std::copy_n(slots_.begin() + static_cast<std::ptrdiff_t>(from) * layout_.block_size, layout_.block_size,
              slots_.begin() + static_cast<std::ptrdiff_t>(to) * layout_.block_size);
  ++copies_;
  return Status::ok();
}

}  // namespace pagedlm::testing
