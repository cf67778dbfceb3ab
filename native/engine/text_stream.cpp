#include "engine/text_stream.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace pagedlm {

TextStream::TextStream(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

size_t TextStream::held_back_length() const {
  size_t hold = utf8_incomplete_tail(pending_);
  for (const std::string& stop : stops_) {
    // Longest suffix of pending_ that is a proper prefix of the stop string.
    for (size_t n = std::min(stop.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, stop, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

std::string TextStream::push(std::string_view bytes, bool* stopped) {
  *stopped = false;
  pending_.append(bytes);
  size_t first_stop = std::string::npos;
  for (const std::string& stop : stops_) {
    if (!stop.empty()) first_stop = std::min(first_stop, pending_.find(stop));
  }
  if (first_stop != std::string::npos) {
    *stopped = true;
    std::string out = utf8_sanitize(std::string_view(pending_).substr(0, first_stop));
    pending_.clear();
    return out;
  }
  const size_t emit = pending_.size() - held_back_length();
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, emit));
  pending_.erase(0, emit);
  return out;
}

std::string TextStream::finish() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace pagedlm
