// Turns one sequence's generated token bytes into text that is safe to hand to JavaScript as it arrives:
// never half a UTF-8 character, never the beginning of a stop string that may still complete.
// Engine thread only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pagedlm {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop_strings);

  // Adds a token's bytes; returns the text that can be emitted now. When a stop string appears, returns
  // the text before it, drops the rest and sets *stopped.
  std::string push(std::string_view bytes, bool* stopped);
  // Flushes what is held back (incomplete UTF-8 becomes U+FFFD) at the end of generation.
  std::string finish();

 private:
  size_t held_back_length() const;

  std::vector<std::string> stops_;
  std::string pending_;
};

}  // namespace pagedlm
