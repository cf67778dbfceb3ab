#include "speculative/draft_proposer.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <thread>

namespace pagedlm::speculative {

namespace {

Status vocabulary_mismatch(const std::string& what) {
  return Status(ErrorCode::kInvalidArgument, "the draft model's vocabulary differs from the target's: " + what);
}

// A token's text for a message: quoted, control bytes as \xNN.
std::string printable(const std::string& text) {
  static const char* hex = "0123456789abcdef";
  std::string out = "'";
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "'";
}

// The argmax of a logit row (the first of equal maxima, as the greedy sampler picks) and its softmax
// probability at temperature 1.
std::pair<int32_t, float> best_token(const float* logits, int32_t vocab) {
  const int32_t best = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  const float top = logits[best];
  double sum = 0;
  for (int32_t t = 0; t < vocab; ++t) sum += std::exp(static_cast<double>(logits[t] - top));
  return {best, static_cast<float>(1.0 / sum)};
}

}  // namespace

Status check_same_vocabulary(const Tokenizer& target, const Tokenizer& draft) {
  if (target.vocab_size() != draft.vocab_size()) {
    return vocabulary_mismatch("it has " + std::to_string(draft.vocab_size()) + " tokens, the target " + std::to_string(target.vocab_size()));
  }
  if (target.bos_id() != draft.bos_id() || target.eos_id() != draft.eos_id()) {
    return vocabulary_mismatch("BOS/EOS ids " + std::to_string(draft.bos_id()) + "/" + std::to_string(draft.eos_id()) + ", the target's " +
                               std::to_string(target.bos_id()) + "/" + std::to_string(target.eos_id()));
  }
  for (int32_t id = 0; id < target.vocab_size(); ++id) {
    if (target.piece(id) != draft.piece(id) || target.type(id) != draft.type(id)) {
      return vocabulary_mismatch("token " + std::to_string(id) + " is " + printable(draft.piece(id)) + " (type " +
                                 std::to_string(static_cast<int>(draft.type(id))) + "), in the target " + printable(target.piece(id)) + " (type " +
                                 std::to_string(static_cast<int>(target.type(id))) + ")");
    }
  }
  return Status::ok();
}

Result<std::unique_ptr<DraftProposer>> DraftProposer::create(const DraftModelOptions& o, const Tokenizer& target, std::shared_ptr<ThreadPool> pool) {
  const auto failed = [&](const Status& s) { return Status(s.code(), "draft model '" + o.path + "': " + s.message()); };
  if (o.block_size < 1 || o.block_size > 1024) return Status(ErrorCode::kInvalidArgument, "the draft model's block size must be in [1, 1024]");
  if (o.context_length < 0 || o.kv_blocks < 0) return Status(ErrorCode::kInvalidArgument, "the draft model's context length and pool size must not be negative");
  auto file = GgufFile::open(o.path, o.use_mmap);
  if (!file.is_ok()) return failed(file.status());
  auto tokenizer = Tokenizer::from_gguf(file.value());
  if (!tokenizer.is_ok()) return failed(tokenizer.status());
  if (Status s = check_same_vocabulary(target, *tokenizer.value()); !s.is_ok()) return failed(s);
  auto model = LlamaModel::load(file.take());
  if (!model.is_ok()) return failed(model.status());
  const ModelConfig& c = model.value()->config();
  if (c.vocab_size != target.vocab_size()) {
    return failed(Status(ErrorCode::kModelFormat, "the tokenizer has " + std::to_string(target.vocab_size()) + " tokens but token_embd.weight has " +
                                                      std::to_string(c.vocab_size) + " rows"));
  }
  DraftModelOptions options = o;
  if (options.context_length == 0) options.context_length = c.context_length;
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, options.block_size, options.kv_blocks, options.kv_dtype, options.kv_dtype};
  layout.v_dim = c.value_dim(), layout.v_in_k = c.latent_attention();
  if (layout.num_blocks == 0) layout.num_blocks = (options.context_length + options.block_size - 1) / options.block_size * kDefaultDraftContexts;
  if (!pool) {
    const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    pool = std::make_shared<ThreadPool>(static_cast<size_t>(threads));
  }
  auto backend = CpuBackend::create(model.value(), layout, std::move(pool), options.context_length);
  if (!backend.is_ok()) return failed(backend.status());
  return std::unique_ptr<DraftProposer>(new DraftProposer(options, model.take(), tokenizer.take(), backend.take()));
}

DraftProposer::DraftProposer(const DraftModelOptions& options, std::shared_ptr<const LlamaModel> model, std::unique_ptr<Tokenizer> tokenizer,
                             std::unique_ptr<CpuBackend> backend)
    : options_(options), model_(std::move(model)), tokenizer_(std::move(tokenizer)), backend_(std::move(backend)),
      kv_(backend_->kv_layout().num_blocks, backend_->kv_layout().block_size), context_length_(options.context_length) {}

void DraftProposer::forget(uint64_t key) {
  const auto it = sequences_.find(key);
  if (it == sequences_.end()) return;
  kv_.free(it->second.block_table);
  sequences_.erase(it);
}

void DraftProposer::truncate(DraftSequence& sequence, size_t keep) {
  sequence.computed.resize(keep);
  const auto blocks = static_cast<size_t>(kv_.blocks_for_tokens(static_cast<int64_t>(keep)));
  if (sequence.block_table.size() <= blocks) return;
  std::vector<BlockId> tail(sequence.block_table.begin() + static_cast<std::ptrdiff_t>(blocks), sequence.block_table.end());
  sequence.block_table.resize(blocks);
  kv_.free(tail);
}

int32_t DraftProposer::reserve(DraftSequence& sequence, int64_t num_tokens, int32_t wanted) {
  wanted = std::min<int32_t>(wanted, static_cast<int32_t>(std::min<int64_t>(kMaxProposedTokens, context_length_ - num_tokens + 1)));
  for (int32_t k = wanted; k >= 1; --k) {
    if (kv_.allocate_slots(sequence.block_table, num_tokens + k - 1) >= 0) return k;
  }
  return 0;
}

void DraftProposer::propose(const std::vector<DraftRequest>& requests, std::vector<std::vector<int32_t>>& out) {
  out.assign(requests.size(), {});
  probabilities_.assign(requests.size(), {});
  std::vector<Drafting> drafting;
  for (size_t i = 0; i < requests.size(); ++i) {
    const DraftRequest& r = requests[i];
    if (r.tokens == nullptr || r.tokens->empty() || r.max_tokens < 1) continue;
    DraftSequence& sequence = sequences_[r.key];
    const std::vector<int32_t>& tokens = *r.tokens;
    const auto common = std::mismatch(sequence.computed.begin(), sequence.computed.end(), tokens.begin(), tokens.end()).first - sequence.computed.begin();
    // The last token always runs: its logits give the first drafted token.
    truncate(sequence, std::min<size_t>(static_cast<size_t>(common), tokens.size() - 1));
    const int32_t max_tokens = reserve(sequence, static_cast<int64_t>(tokens.size()), r.max_tokens);
    if (max_tokens == 0) {
      forget(r.key);  // its blocks serve other sequences better than a prefix it cannot extend
      continue;
    }
    drafting.push_back(Drafting{i, &sequence, &tokens, max_tokens});
  }
  if (drafting.empty()) return;
  Status status = catch_up(drafting, out);
  if (status.is_ok()) status = decode(drafting, out);
  if (!status.is_ok()) {
    // Nothing half-done is kept: the failed pass's sequences start over next time.
    for (const Drafting& d : drafting) forget(requests[d.request].key);
    out.assign(requests.size(), {});
    probabilities_.assign(requests.size(), {});
  }
}

Status DraftProposer::catch_up(std::vector<Drafting>& drafting, std::vector<std::vector<int32_t>>& out) {
  const auto budget = static_cast<size_t>(std::max(1, options_.max_batch_tokens));
  for (;;) {
    batch_.tokens.clear();
    batch_.sequences.clear();
    std::vector<Drafting*> members;  // the pass's sequence i is members[i]
    for (Drafting& d : drafting) {
      const size_t computed = d.sequence->computed.size();
      const size_t pending = d.tokens->size() - computed;
      const size_t room = budget - batch_.tokens.size();
      if (pending == 0 || room == 0) continue;
      const size_t chunk = std::min(pending, room);
      BatchSequence bs;
      bs.first_token = static_cast<int32_t>(batch_.tokens.size());
      bs.num_tokens = static_cast<int32_t>(chunk);
      bs.start_position = static_cast<int32_t>(computed);
      bs.block_table = d.sequence->block_table.data();
      bs.want_logits = chunk == pending;
      batch_.sequences.push_back(bs);
      const auto first = d.tokens->begin() + static_cast<std::ptrdiff_t>(computed);
      batch_.tokens.insert(batch_.tokens.end(), first, first + static_cast<std::ptrdiff_t>(chunk));
      members.push_back(&d);
    }
    if (members.empty()) return Status::ok();
    if (Status s = forward(); !s.is_ok()) return s;
    size_t row = 0;
    for (size_t i = 0; i < members.size(); ++i) {
      const BatchSequence& bs = batch_.sequences[i];
      const int32_t* first = batch_.tokens.data() + bs.first_token;
      members[i]->sequence->computed.insert(members[i]->sequence->computed.end(), first, first + bs.num_tokens);
      if (bs.want_logits) take_token(*members[i], row++, out);
    }
  }
}

Status DraftProposer::decode(std::vector<Drafting>& drafting, std::vector<std::vector<int32_t>>& out) {
  for (;;) {
    batch_.tokens.clear();
    batch_.sequences.clear();
    std::vector<Drafting*> running;
    for (Drafting& d : drafting) {
      if (d.done) continue;
      BatchSequence bs;
      bs.first_token = static_cast<int32_t>(batch_.tokens.size());
      bs.num_tokens = 1;
      bs.start_position = static_cast<int32_t>(d.sequence->computed.size());
      bs.block_table = d.sequence->block_table.data();
      bs.want_logits = true;
      batch_.sequences.push_back(bs);
      batch_.tokens.push_back(out[d.request].back());
      running.push_back(&d);
    }
    if (running.empty()) return Status::ok();
    if (Status s = forward(); !s.is_ok()) return s;
    for (size_t row = 0; row < running.size(); ++row) {
      running[row]->sequence->computed.push_back(out[running[row]->request].back());
      take_token(*running[row], row, out);
    }
  }
}

Status DraftProposer::forward() {
  try {
    logits_.resize(static_cast<size_t>(batch_.num_logit_rows()) * static_cast<size_t>(model_->config().vocab_size));
    return backend_->forward(batch_, logits_.data());
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kOutOfMemory, "out of memory in a draft pass");
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal, std::string("draft pass failed: ") + e.what());
  }
}

void DraftProposer::take_token(Drafting& d, size_t row, std::vector<std::vector<int32_t>>& out) {
  const int32_t vocab = model_->config().vocab_size;
  const auto [token, probability] = best_token(logits_.data() + row * static_cast<size_t>(vocab), vocab);
  if (probability < options_.min_probability) {
    d.done = true;
    return;
  }
  out[d.request].push_back(token);
  probabilities_[d.request].push_back(probability);
  // Past an end of generation the target stops: nothing after it is worth verifying.
  d.done = static_cast<int32_t>(out[d.request].size()) >= d.max_tokens || tokenizer_->is_end_of_generation(token);
}

}  // namespace pagedlm::speculative
