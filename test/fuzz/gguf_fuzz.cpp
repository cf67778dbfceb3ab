// libFuzzer: arbitrary bytes as a GGUF file -> parse, bind a model, build the tokenizer and use it.
// Everything must end in a Status, never a crash or a sanitizer report.
#include <cstddef>
#include <cstdint>

#include "model/gguf.h"
#include "model/llama_model.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagedlm;
  auto file = GgufFile::parse(data, size);
  if (!file.is_ok()) return 0;
  auto tokenizer = Tokenizer::from_gguf(file.value());
  if (tokenizer.is_ok()) {
    const Tokenizer& t = *tokenizer.value();
    const auto ids = t.encode("Hello, wörld! <s> 123", {.add_bos = true, .parse_special = true});
    (void)t.decode(ids);
  }
  (void)LlamaModel::load(file.take());
  return 0;
}
