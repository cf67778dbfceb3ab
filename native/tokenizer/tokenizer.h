// Text <-> token ids from a GGUF's tokenizer.ggml.* metadata: SentencePiece-style ("llama": scores, byte
// fallback, leading-space convention) or byte-level BPE ("gpt2": merges, pre-tokenization).
// Immutable after construction: encode/decode from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "model/gguf.h"

namespace pagedlm {

enum class TokenType : int32_t { kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

enum class TokenizerKind { kSentencePiece, kBytePairEncoding };

struct EncodeOptions {
  bool add_bos = true;        // prepend BOS when the model asks for it (tokenizer.ggml.add_bos_token)
  // Recognise control-token text such as "<s>" in the input. User-defined added tokens (Qwen's <think>,
  // Gemma's <h1>) are recognised either way, as llama.cpp and Hugging Face tokenizers do.
  bool parse_special = false;
};

class Tokenizer {
 public:
  static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& file);
  virtual ~Tokenizer() = default;

  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options = {}) const;

  // Bytes that token `id` contributes to the output: control tokens give nothing, byte tokens one raw
  // byte, other pieces their text (a piece may end in the middle of a UTF-8 character).
  std::string token_bytes(int32_t id) const;
  // Whole-sequence text: drops the leading space SentencePiece adds to the first word. May hold invalid
  // UTF-8 only where the ids themselves do.
  std::string decode(const std::vector<int32_t>& ids) const;

  TokenizerKind kind() const { return kind_; }
  // The pre-tokenizer's name (tokenizer.ggml.pre, "default" when the file has none); empty for SentencePiece.
  virtual const std::string& pre_tokenizer_name() const {
    static const std::string none;
    return none;
  }
  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  bool add_bos() const { return add_bos_; }
  bool is_end_of_generation(int32_t id) const;  // EOS or an end-of-turn control token
  const std::string& piece(int32_t id) const { return pieces_[id]; }
  TokenType type(int32_t id) const { return types_[id]; }

 protected:
  Tokenizer() = default;
  // Encodes plain text (no special tokens inside); `follows_special` is true for a fragment at the start of
  // the input or right after a special token (where SentencePiece adds its leading space).
  virtual void encode_fragment(std::string_view text, bool follows_special, std::vector<int32_t>& out) const = 0;
  virtual std::string piece_bytes(int32_t id) const = 0;
  // Reads the metadata a kind needs beyond the shared vocabulary.
  virtual Status init(const GgufFile& /*file*/) { return Status::ok(); }

  int32_t lookup(std::string_view piece) const;  // -1 when absent

  TokenizerKind kind_ = TokenizerKind::kSentencePiece;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t> index_;
  std::vector<int32_t> special_ids_;  // control, user-defined and unknown tokens, longest text first
  std::vector<int32_t> end_of_generation_ids_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t unk_id_ = -1;
  bool add_bos_ = true;
  bool add_space_prefix_ = true;

 private:
  // A span of the input: plain text (token < 0) or the text of special token `token`.
  struct Fragment {
    size_t begin;
    size_t length;
    int32_t token;
  };
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
  Status init_common(const GgufFile& file);
  friend class TokenizerFactory;
};

}  // namespace pagedlm
