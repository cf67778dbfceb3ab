// What the runner hands a backend for one step, and the interface every backend (CPU, CUDA) implements.
// A step mixes prefill chunks and single decode tokens of many sequences in one forward pass.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "common/status.h"
#include "kv/block_pool.h"
#include "kv/kv_layout.h"

namespace pagedlm {

struct BatchSequence {
  int32_t first_token = 0;     // index of its first token in ForwardBatch::tokens
  int32_t num_tokens = 0;
  int32_t start_position = 0;  // position of its first token; positions before it are already in the pool
  const BlockId* block_table = nullptr;  // [ceil((start_position + num_tokens) / block_size)], owned by the engine
  bool want_logits = false;    // produce logits for its last logit_rows tokens
  bool greedy = false;         // only the argmax of those logits is needed (greedy sampling, no penalties)
  int32_t top_k = 0;           // > 0: only the top_k largest logits are needed, sorted (value, then id)
  bool want_hidden = false;    // write the final norm's output of all its tokens to ForwardBatch::hidden (embeddings)
  // With want_logits: 1 <= logit_rows <= num_tokens. Above 1 when the step verifies proposed tokens
  // (speculative decoding), each of which needs the distribution at the position before it. Rows in token order.
  int32_t logit_rows = 1;
};

struct ForwardBatch {
  std::vector<int32_t> tokens;             // [n_tokens]
  std::vector<BatchSequence> sequences;
  // [num_logit_rows], filled with -1 by the caller. When every logit row is greedy, a backend may write the
  // rows' argmax tokens here instead of the logits (the CUDA backend then copies 4 bytes a row, not the
  // vocabulary); a row left at -1 is sampled from `logits`.
  int32_t* greedy_tokens = nullptr;
  // [num_logit_rows, top_k_width], ids filled with -1 by the caller. When every logit row is greedy or has a
  // top_k (all <= top_k_width), a backend may write each row's top_k_width best candidates here instead of
  // the logits; a row whose first id is still -1 is sampled from `logits`.
  int32_t top_k_width = 0;
  int32_t* top_ids = nullptr;
  float* top_values = nullptr;
  // [num_hidden_rows, dim]: the hidden rows of the want_hidden sequences, in sequence order.
  float* hidden = nullptr;
  int32_t num_logit_rows() const {
    int32_t n = 0;
    for (const auto& s : sequences) n += s.want_logits ? s.logit_rows : 0;
    return n;
  }
  int32_t num_hidden_rows() const {
    int32_t n = 0;
    for (const auto& s : sequences) n += s.want_hidden ? s.num_tokens : 0;
    return n;
  }
};

// Engine thread only.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const KvLayout& kv_layout() const = 0;
  // Runs the model over the batch, writing K/V of its tokens into the pool through the block tables.
  // `logits` receives [num_logit_rows, vocab] in sequence order.
  virtual Status forward(const ForwardBatch& batch, float* logits) = 0;
  // Whether forward() fills ForwardBatch::hidden; a backend that does not is never given want_hidden.
  virtual bool computes_hidden_states() const { return false; }

  // A block's K/V (all layers, with scales) as bytes, for saving the prefix cache and the offload tiers, and
  // back. Each is done when it returns; a failed copy (a CUDA error) says so and leaves the pool's other
  // blocks as they were.
  virtual size_t block_bytes() const = 0;
  virtual Status export_block(BlockId block, uint8_t* out) const = 0;  // out: [block_bytes()]
  virtual Status import_block(BlockId block, const uint8_t* in) = 0;
  // Copies one block's K/V into another (copy-on-write of a shared, partly filled block).
  virtual Status copy_block(BlockId from, BlockId to) = 0;

  // The offload tier's host memory: pinned on CUDA, so that the copies below run asynchronously on the
  // backend's stream. Null when it cannot be had.
  virtual std::shared_ptr<uint8_t> allocate_host_blocks(size_t bytes) {
    return std::shared_ptr<uint8_t>(new (std::nothrow) uint8_t[bytes], std::default_delete<uint8_t[]>());
  }
  // Copies between a block and memory from allocate_host_blocks that may still be running when they
  // return: they complete, in the order issued, before the next forward pass and before
  // finish_host_copies() returns. The host reads `out` (or reuses `in`) only after finish_host_copies().
  virtual Status export_block_async(BlockId block, uint8_t* out) { return export_block(block, out); }
  virtual Status import_block_async(BlockId block, const uint8_t* in) { return import_block(block, in); }
  virtual Status finish_host_copies() { return Status::ok(); }
};

}  // namespace pagedlm
