// libFuzzer: arbitrary bytes as text to encode, and as token ids to decode through the streaming text
// filter, for a SentencePiece vocabulary (the shared Llama-2 one when present) and a byte-level BPE one; and
// as text for every pre-tokenizer to split.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/text_stream.h"
#include "model/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

using namespace pagedlm;

// A GGUF holding only a tokenizer, written in memory.
struct MiniGguf {
  std::vector<uint8_t> bytes;
  uint64_t count = 0;
  void put(const void* p, size_t n) { bytes.insert(bytes.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); }
  void u32(uint32_t v) { put(&v, 4); }
  void u64(uint64_t v) { put(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    put(s.data(), s.size());
  }
  void key(const std::string& k, uint32_t type) {
    str(k);
    u32(type);
    ++count;
  }
  std::vector<uint8_t> finish() {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    const uint64_t tensors = 0;
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(&tensors), reinterpret_cast<const uint8_t*>(&tensors) + 8);
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(&count), reinterpret_cast<const uint8_t*>(&count) + 8);
    out.insert(out.end(), bytes.begin(), bytes.end());
    return out;
  }
};

std::string byte_symbol(int b) { return bpe_byte_symbol(static_cast<uint8_t>(b)); }

std::unique_ptr<Tokenizer> bpe_tokenizer() {
  static std::vector<uint8_t> storage;
  MiniGguf g;
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_symbol(b));
  const std::vector<std::pair<std::string, std::string>> merges = {{"t", "h"}, {"th", "e"}, {byte_symbol(' '), "the"}, {"i", "n"}, {"e", "r"}};
  for (const auto& [a, b] : merges) tokens.push_back(a + b);
  tokens.push_back("<|end|>");
  g.key("tokenizer.ggml.model", 8);
  g.str("gpt2");
  g.key("tokenizer.ggml.pre", 8);
  g.str("llama-bpe");
  g.key("tokenizer.ggml.tokens", 9);
  g.u32(8);
  g.u64(tokens.size());
  for (const auto& t : tokens) g.str(t);
  g.key("tokenizer.ggml.merges", 9);
  g.u32(8);
  g.u64(merges.size());
  for (const auto& [a, b] : merges) g.str(a + " " + b);
  storage = g.finish();
  static auto file = GgufFile::parse(storage.data(), storage.size());
  return Tokenizer::from_gguf(file.value()).take();
}

std::unique_ptr<Tokenizer> spm_tokenizer() {
  static Result<GgufFile> file = [] {
    const char* dir = std::getenv("PAGEDLM_MODELS_DIR");
    return GgufFile::open(std::string(dir ? dir : PAGEDLM_SHARED_MODELS_DIR) + "/synth-tiny-f16.gguf");
  }();
  if (!file.is_ok()) return nullptr;
  return Tokenizer::from_gguf(file.value()).take();
}

void exercise(const Tokenizer& t, const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto ids = t.encode(text, {.add_bos = (size & 1) != 0, .parse_special = (size & 2) != 0});
  for (int32_t id : ids) {
    if (id < 0 || id >= t.vocab_size()) std::abort();
  }
  // The same bytes as token ids, streamed through the text filter with a stop string from the input.
  TextStream stream({std::string(text.substr(0, std::min<size_t>(size, 3)))});
  std::string streamed;
  for (size_t i = 0; i + 4 <= size; i += 4) {
    int32_t id;
    std::memcpy(&id, data + i, 4);
    bool stopped = false;
    streamed += stream.push(t.token_bytes(id), &stopped);
    if (stopped) break;
  }
  streamed += stream.finish();
  if (utf8_sanitize(streamed) != streamed) std::abort();  // never invalid UTF-8 out
}

// Every pre-tokenizer splits any bytes into non-empty words that join back into them.
void split_with_every_pre_tokenizer(const uint8_t* data, size_t size) {
  static const std::vector<std::string> names = PreTokenizer::names();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const std::string& name : names) {
    std::string joined;
    for (std::string_view word : PreTokenizer::find(name)->split(text)) {
      if (word.empty()) std::abort();
      joined += word;
    }
    if (joined != text) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Tokenizer> spm = spm_tokenizer();
  static const std::unique_ptr<Tokenizer> bpe = bpe_tokenizer();
  if (spm) exercise(*spm, data, size);
  exercise(*bpe, data, size);
  split_with_every_pre_tokenizer(data, size);
  return 0;
}
