#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <iterator>
#include <string_view>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"

namespace pagedlm {

namespace {

Status bad(const std::string& message) { return Status(ErrorCode::kModelFormat, message); }

// Texts llama.cpp makes control tokens whatever token_type the file gives them (end-of-turn,
// end-of-generation and fill-in-the-middle markers that converters often leave user-defined, such as
// Gemma's "</s>"); pagedlm does the same so that such text is cut out of the input only with parse_special.
constexpr std::string_view kControlTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "[EOS]", "<｜end▁of▁sentence｜>", "<end_of_utterance>", "<|return|>",
    "<|call|>", "<|flush|>", "<|calls|>", "</s>", "<|eom_id|>", "<eos>", "<turn|>", "<|tool_response>", "[e~[",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
    "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>", "<|fim_middle|>",
    "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>",
    "<|middle|>", "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>",
    "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};

bool is_control_text(std::string_view text) {
  return std::find(std::begin(kControlTexts), std::end(kControlTexts), text) != std::end(kControlTexts);
}

}  // namespace

class TokenizerFactory {
 public:
  static Result<std::unique_ptr<Tokenizer>> create(const GgufFile& file) {
    const auto model = file.get_string("tokenizer.ggml.model");
    if (!model.is_ok()) return model.status();
    if (!model.value()) return bad("missing metadata 'tokenizer.ggml.model': the file carries no tokenizer");
    std::unique_ptr<Tokenizer> tokenizer;
    if (*model.value() == "llama") {
      tokenizer = std::make_unique<SpmTokenizer>();
    } else if (*model.value() == "gpt2") {
      tokenizer = std::make_unique<BpeTokenizer>();
    } else {
      return Status(ErrorCode::kUnsupported, "unsupported tokenizer '" + *model.value() + "' (pagedlm reads 'llama' and 'gpt2')");
    }
    if (Status s = tokenizer->init_common(file); !s.is_ok()) return s;
    if (Status s = tokenizer->init(file); !s.is_ok()) return s;
    return tokenizer;
  }
};

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& file) { return TokenizerFactory::create(file); }

Status Tokenizer::init_common(const GgufFile& file) {
  auto tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (!tokens.is_ok()) return tokens.status();
  if (tokens.value().empty()) return bad("missing metadata 'tokenizer.ggml.tokens'");
  const size_t n = tokens.value().size();
  pieces_.reserve(n);
  for (std::string_view t : tokens.value()) pieces_.emplace_back(t);

  auto scores = file.get_float_array("tokenizer.ggml.scores");
  if (!scores.is_ok()) return scores.status();
  scores_ = scores.take();
  if (scores_.empty()) scores_.assign(n, 0.0f);
  if (scores_.size() != n) return bad("tokenizer.ggml.scores has " + std::to_string(scores_.size()) + " entries for " + std::to_string(n) + " tokens");

  auto types = file.get_int_array("tokenizer.ggml.token_type");
  if (!types.is_ok()) return types.status();
  if (!types.value().empty() && types.value().size() != n) return bad("tokenizer.ggml.token_type length differs from the token count");
  types_.assign(n, TokenType::kNormal);
  for (size_t i = 0; i < types.value().size(); ++i) {
    const int32_t t = types.value()[i];
    types_[i] = t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::kNormal;
  }

  for (size_t i = 0; i < n; ++i) index_.emplace(pieces_[i], static_cast<int32_t>(i));  // first wins on duplicates
  for (size_t i = 0; i < n; ++i) {
    if (is_control_text(pieces_[i])) types_[i] = TokenType::kControl;
  }
  // Gemma 4 uses "</s>" as ordinary text next to its "<|tool_response>" marker; llama.cpp keeps it normal there.
  if (const int32_t s = lookup("</s>"); s >= 0 && lookup("<|tool_response>") >= 0) types_[s] = TokenType::kNormal;

  auto read_id = [&](const char* key, int32_t* out) -> Status {
    auto v = file.get_int(key);
    if (!v.is_ok()) return v.status();
    if (!v.value()) return Status::ok();
    if (*v.value() < 0 || *v.value() >= static_cast<int64_t>(n)) return bad(std::string(key) + " = " + std::to_string(*v.value()) + " is outside the vocabulary");
    *out = static_cast<int32_t>(*v.value());
    return Status::ok();
  };
  for (auto [key, out] : {std::pair{"tokenizer.ggml.bos_token_id", &bos_id_}, std::pair{"tokenizer.ggml.eos_token_id", &eos_id_},
                          std::pair{"tokenizer.ggml.unknown_token_id", &unk_id_}}) {
    if (Status s = read_id(key, out); !s.is_ok()) return s;
  }
  auto add_bos = file.get_bool("tokenizer.ggml.add_bos_token");
  if (!add_bos.is_ok()) return add_bos.status();
  add_bos_ = add_bos.value().value_or(bos_id_ >= 0) && bos_id_ >= 0;
  auto space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix");
  if (!space_prefix.is_ok()) return space_prefix.status();
  add_space_prefix_ = space_prefix.value().value_or(true);

  for (size_t i = 0; i < n; ++i) {
    const TokenType t = types_[i];
    if ((t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) && !pieces_[i].empty()) {
      special_ids_.push_back(static_cast<int32_t>(i));
    }
    // End-of-turn markers of common chat formats end generation like EOS does.
    if (t == TokenType::kControl && (pieces_[i] == "<|eot_id|>" || pieces_[i] == "<|im_end|>" || pieces_[i] == "<|end|>" || pieces_[i] == "<end_of_turn>")) {
      end_of_generation_ids_.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(special_ids_.begin(), special_ids_.end(),
                   [&](int32_t a, int32_t b) { return pieces_[a].size() > pieces_[b].size(); });
  if (eos_id_ >= 0) end_of_generation_ids_.push_back(eos_id_);
  return Status::ok();
}

int32_t Tokenizer::lookup(std::string_view piece) const {
  const auto it = index_.find(std::string(piece));
  return it == index_.end() ? -1 : it->second;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(end_of_generation_ids_.begin(), end_of_generation_ids_.end(), id) != end_of_generation_ids_.end();
}

std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text, bool parse_special) const {
  std::vector<Fragment> fragments = {{0, text.size(), -1}};
  std::vector<Fragment> split;
  // Longest token text first, each one cut out of every text fragment left, as llama.cpp partitions.
  for (int32_t id : special_ids_) {
    const TokenType t = types_[id];
    if (!parse_special && (t == TokenType::kControl || t == TokenType::kUnknown)) continue;
    const std::string& piece = pieces_[id];
    if (text.find(piece) == std::string_view::npos) continue;
    split.clear();
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        split.push_back(f);
        continue;
      }
      size_t begin = f.begin;
      const size_t end = f.begin + f.length;
      for (size_t at; (at = text.substr(0, end).find(piece, begin)) != std::string_view::npos;) {
        if (at > begin) split.push_back({begin, at - begin, -1});
        split.push_back({at, piece.size(), id});
        begin = at + piece.size();
      }
      if (begin < end) split.push_back({begin, end - begin, -1});
    }
    fragments.swap(split);
  }
  return fragments;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> out;
  if (options.add_bos && add_bos_) out.push_back(bos_id_);
  if (text.empty()) return out;
  bool follows_special = true;  // the start of the input counts as following one
  for (const Fragment& f : partition(text, options.parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      follows_special = true;
    } else {
      encode_fragment(text.substr(f.begin, f.length), follows_special, out);
      follows_special = false;
    }
  }
  return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  const TokenType t = types_[id];
  if (t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUnused) return {};
  return piece_bytes(id);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  if (kind_ == TokenizerKind::kSentencePiece && add_space_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

}  // namespace pagedlm
