// A parsed grammar in the form the matcher walks: every rule is a list of alternatives, every alternative a
// run of elements in one flat array ended by a kEnd element. An element is a character class (sorted code
// point ranges) or a reference to a rule. Literals are runs of one-character classes; groups, repetitions
// and options are helper rules, so a position in the grammar is one index into the element array.
//
// Limits (parse_gbnf refuses a grammar past them, naming the position):
//   kMaxTextBytes     grammar text size
//   kMaxNesting       depth of nested ( groups )
//   kMaxRepeat        the bounds m and n of {m}, {m,}, {m,n}
//   kMaxRules         rules after expanding groups and repetitions
//   kMaxElements      elements after expansion
// and the matcher's, per step (see matcher.cpp for what happens past them):
//   kMaxStacks        parse stacks kept at one position
//   kMaxAdvanceWork   stack entries written while advancing by one character (bounds its time)
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "grammar/grammar.h"

namespace pagedlm::grammar {

inline constexpr size_t kMaxTextBytes = 4u << 20;
inline constexpr int kMaxNesting = 256;
inline constexpr uint32_t kMaxRepeat = 10000;
inline constexpr size_t kMaxRules = 1u << 16;
inline constexpr size_t kMaxElements = 1u << 20;
#ifdef PAGEDLM_FUZZING
// The same code with small caps: fuzz inputs reach them often, and each run stays fast.
inline constexpr size_t kMaxStacks = 1u << 6;
inline constexpr int64_t kMaxAdvanceWork = 1 << 11;
#else
inline constexpr size_t kMaxStacks = 1u << 14;
inline constexpr int64_t kMaxAdvanceWork = 1 << 17;
#endif

inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;

struct CodeRange {
  uint32_t lo;
  uint32_t hi;  // inclusive
};

enum class ElementKind : uint8_t { kChars, kRule, kEnd };

struct Element {
  ElementKind kind;
  uint32_t value;  // kChars: class index; kRule: rule index; kEnd: unused
};

// Masks computed for a grammar position, shared by every matcher of one Grammar (several sequences, forks).
// Keyed by the TokenIndex's id as well, so that two vocabularies never share a mask. Least recently used
// masks go first once the masks held pass `max_bytes`.
class MaskCache {
 public:
  explicit MaskCache(size_t max_bytes) : max_bytes_(max_bytes) {}
  std::shared_ptr<const TokenMask> find(uint64_t index_id, const std::string& state_key);
  void insert(uint64_t index_id, const std::string& state_key, std::shared_ptr<const TokenMask> mask);
  size_t size() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const TokenMask> mask;
  };
  static std::string full_key(uint64_t index_id, const std::string& state_key);

  mutable std::mutex mutex_;
  size_t max_bytes_;
  size_t bytes_ = 0;
  std::list<Entry> recent_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> entries_;
};

class Grammar {
 public:
  Grammar(std::vector<Element> elements, std::vector<std::vector<uint32_t>> alternatives,
          std::vector<CodeRange> ranges, std::vector<std::pair<uint32_t, uint32_t>> classes, uint32_t root);

  const Element& element(uint32_t position) const { return elements_[position]; }
  // Start positions of the rule's alternatives, in the order written.
  std::span<const uint32_t> alternatives(uint32_t rule) const { return alternatives_[rule]; }
  uint32_t root() const { return root_; }
  size_t rule_count() const { return alternatives_.size(); }
  size_t element_count() const { return elements_.size(); }

  std::span<const CodeRange> class_ranges(uint32_t char_class) const;  // sorted, disjoint, not adjacent
  bool class_contains(uint32_t char_class, uint32_t code_point) const;
  bool class_intersects(uint32_t char_class, uint32_t lo, uint32_t hi) const;

  MaskCache& mask_cache() const { return mask_cache_; }

 private:
  std::vector<Element> elements_;
  std::vector<std::vector<uint32_t>> alternatives_;
  std::vector<CodeRange> ranges_;
  std::vector<std::pair<uint32_t, uint32_t>> classes_;  // (first range, range count)
  uint32_t root_;
  mutable MaskCache mask_cache_;
};

}  // namespace pagedlm::grammar
