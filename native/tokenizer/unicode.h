// UTF-8 helpers and the coarse Unicode classes the BPE pre-tokenizer needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pagedlm {

// Length of the UTF-8 sequence a lead byte starts (1 for invalid lead bytes, so scanning always advances).
size_t utf8_sequence_length(uint8_t lead);

// Decodes the code point at text[pos]; sets *length. Invalid bytes decode as U+FFFD with length 1.
uint32_t utf8_decode(std::string_view text, size_t pos, size_t* length);

void utf8_append(std::string& out, uint32_t code_point);

// Bytes at the end of `text` that begin a UTF-8 sequence not yet complete (0 when none).
size_t utf8_incomplete_tail(std::string_view text);

// Replaces invalid sequences with U+FFFD so the result is always valid UTF-8.
std::string utf8_sanitize(std::string_view text);

bool is_unicode_whitespace(uint32_t cp);
bool is_unicode_number(uint32_t cp);
// Letters: ASCII letters and every non-ASCII code point that is not whitespace, a number, punctuation or a
// symbol. A coarse stand-in for \p{L} that agrees with it on ASCII and the common scripts.
bool is_unicode_letter(uint32_t cp);

}  // namespace pagedlm
