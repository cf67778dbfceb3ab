// JSON Schema to GBNF. Each subschema becomes one rule (memoized by its JSON pointer, so a $ref and
// recursion cost one rule); objects chain their members through tail rules so that optional properties cost
// linear, not exponential, grammar. Whatever would change which values are valid and is not translated is
// refused with the pointer of its keyword. The grammar admits a subset of the valid JSON texts where a finite
// grammar needs one: numbers have bounded digits, whitespace is bounded, properties come in the schema's
// order, strings use canonical escapes where they must avoid ambiguity.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <tuple>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "grammar/grammar.h"
#include "grammar/schema_regex.h"

namespace pagedlm::grammar {
namespace {

using Json = nlohmann::ordered_json;
using schema::CodepointSet;

constexpr int kMaxJsonDepth = 64;          // nesting of the schema's JSON text
constexpr int kMaxCompileDepth = 256;      // subschemas being compiled at once, $ref hops included
constexpr size_t kMaxRules = 4096;
constexpr size_t kMaxEnumValues = 1024;
constexpr size_t kMaxRepeat = 1024;        // minLength, maxLength, minItems, maxItems, pattern repetitions
constexpr size_t kMaxPatternWeight = 16384;
constexpr size_t kMaxGrammarBytes = 1 << 20;
constexpr size_t kMaxOneOfComparisons = 1 << 16;
constexpr size_t kMaxOneOfWork = 1 << 14;  // type lookups and value comparisons proving oneOf's branches apart
// What a GBNF reader makes of the grammar: a rule per group, option and repetition count (parse_gbnf's own
// limit is higher; this keeps every grammar the compiler returns within it).
constexpr size_t kMaxExpandedRules = 50000;
constexpr int kIntegerDigits = 16;         // beyond a double's exact integers; bounds the model's digits
constexpr int kFractionDigits = 16;
constexpr int kExponentDigits = 2;          // keeps every number finite as a double (JSON.parse("1e400") is Infinity)
constexpr int kMaxIndent = 20;             // spaces or tabs after a newline between tokens
constexpr size_t kUnbounded = std::numeric_limits<size_t>::max();

struct SchemaError {
  std::string pointer;
  std::string what;
};

[[noreturn]] void fail(const std::string& pointer, const std::string& what) { throw SchemaError{pointer, what}; }

struct TooDeep {};

std::string escape_pointer_token(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string child(const std::string& pointer, std::string_view token) {
  return pointer + "/" + escape_pointer_token(token);
}
std::string child(const std::string& pointer, size_t index) { return pointer + "/" + std::to_string(index); }

std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

// ---- types ----------------------------------------------------------------------------------------------

enum TypeBits : unsigned {
  kNull = 1,
  kBoolean = 2,
  kObject = 4,
  kArray = 8,
  kString = 16,
  kInteger = 32,    // a number with no fraction: valid for both "integer" and "number"
  kFractional = 64, // a number with a fraction: valid for "number" only
  kAnyType = 127,
};

std::optional<unsigned> type_bits(std::string_view name) {
  if (name == "null") return kNull;
  if (name == "boolean") return kBoolean;
  if (name == "object") return kObject;
  if (name == "array") return kArray;
  if (name == "string") return kString;
  if (name == "integer") return kInteger;
  if (name == "number") return kInteger | kFractional;
  return std::nullopt;
}

bool is_integral(const Json& value) {
  if (value.is_number_integer()) return true;
  if (!value.is_number_float()) return false;
  const double d = value.get<double>();
  return std::isfinite(d) && std::floor(d) == d;
}

unsigned value_type(const Json& value) {
  if (value.is_null()) return kNull;
  if (value.is_boolean()) return kBoolean;
  if (value.is_object()) return kObject;
  if (value.is_array()) return kArray;
  if (value.is_string()) return kString;
  return is_integral(value) ? kInteger : kFractional;
}

// ---- keywords -----------------------------------------------------------------------------------------

bool is_annotation(const std::string& key) {
  static const std::set<std::string, std::less<>> annotations = {
      "title", "description", "$schema", "$id", "$comment", "$anchor", "default", "examples", "deprecated",
      "readOnly", "writeOnly", "contentEncoding", "contentMediaType"};
  return annotations.count(key) != 0 || key.rfind("x-", 0) == 0;
}

bool is_container(const std::string& key) { return key == "$defs" || key == "definitions"; }

bool is_translated(const std::string& key) {
  static const std::set<std::string, std::less<>> translated = {
      "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "required",
      "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minLength", "maxLength", "pattern",
      "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
  return translated.count(key) != 0;
}

bool is_known_untranslated(const std::string& key) {
  static const std::set<std::string, std::less<>> known = {
      "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies", "patternProperties",
      "propertyNames", "minProperties", "maxProperties", "unevaluatedProperties", "unevaluatedItems", "contains",
      "minContains", "maxContains", "uniqueItems", "multipleOf", "additionalItems", "$dynamicRef",
      "$recursiveRef", "$dynamicAnchor", "$recursiveAnchor", "$vocabulary", "nullable", "discriminator"};
  return known.count(key) != 0;
}

void check_keywords(const Json& schema, const std::string& pointer) {
  for (const auto& [key, value] : schema.items()) {
    // A nested $id starts a new base URI that $ref would resolve against: the compiler resolves in one document.
    if (key == "$id" && !pointer.empty()) fail(child(pointer, key), "$id inside a subschema is not supported");
    if (is_annotation(key) || is_container(key) || is_translated(key)) continue;
    if (key == "uniqueItems" && value == false) continue;
    if (is_known_untranslated(key)) fail(child(pointer, key), "keyword '" + key + "' is not supported");
    fail(child(pointer, key), "unknown keyword '" + key + "'");
  }
}

// Keywords that constrain the value (everything but annotations and $defs).
std::vector<std::string> assertions(const Json& schema) {
  std::vector<std::string> out;
  for (const auto& [key, value] : schema.items()) {
    if (!is_annotation(key) && !is_container(key)) out.push_back(key);
  }
  return out;
}

// ---- integers in decimal ------------------------------------------------------------------------------

std::string digit_class(char lo, char hi) {
  return lo == hi ? std::string("\"") + lo + "\"" : std::string("[") + lo + "-" + hi + "]";
}

std::string any_digits(size_t count) {
  if (count == 0) return "";
  return count == 1 ? "[0-9]" : "[0-9]{" + std::to_string(count) + "}";
}

std::string sequence(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + " " + b;
}

std::string group(const std::vector<std::string>& alternatives) {
  if (alternatives.size() == 1) return alternatives[0];
  std::string out = "(";
  for (size_t i = 0; i < alternatives.size(); ++i) out += (i == 0 ? " " : " | ") + alternatives[i];
  return out + " )";
}

// Digit strings of one length from `lo` to `hi` inclusive.
std::string same_length_range(std::string_view lo, std::string_view hi) {
  if (lo.empty()) return "";
  if (lo == hi) return "\"" + std::string(lo) + "\"";
  const size_t rest = lo.size() - 1;
  if (lo[0] == hi[0]) return sequence(digit_class(lo[0], lo[0]), same_length_range(lo.substr(1), hi.substr(1)));
  const bool low_is_full = lo.find_first_not_of('0', 1) == std::string_view::npos;
  const bool high_is_full = hi.find_first_not_of('9', 1) == std::string_view::npos;
  std::vector<std::string> alternatives;
  char first_middle = static_cast<char>(lo[0] + 1);
  char last_middle = static_cast<char>(hi[0] - 1);
  if (low_is_full) {
    first_middle = lo[0];
  } else {
    alternatives.push_back(sequence(digit_class(lo[0], lo[0]), same_length_range(lo.substr(1), std::string(rest, '9'))));
  }
  if (high_is_full) last_middle = hi[0];
  if (first_middle <= last_middle) alternatives.push_back(sequence(digit_class(first_middle, last_middle), any_digits(rest)));
  if (!high_is_full) {
    alternatives.push_back(sequence(digit_class(hi[0], hi[0]), same_length_range(std::string(rest, '0'), hi.substr(1))));
  }
  return group(alternatives);
}

// Decimal spellings without leading zeros of the integers from lo to hi (0 <= lo <= hi).
std::string nonnegative_range(int64_t lo, int64_t hi) {
  std::vector<std::string> alternatives;
  int64_t length_start = 0;
  int64_t length_end = 9;
  while (length_start <= hi) {
    const int64_t a = std::max(lo, length_start);
    const int64_t b = std::min(hi, length_end);
    if (a <= b) alternatives.push_back(same_length_range(std::to_string(a), std::to_string(b)));
    length_start = length_end + 1;
    if (length_end > std::numeric_limits<int64_t>::max() / 10) break;
    length_end = length_end * 10 + 9;
  }
  return group(alternatives);
}

std::string integer_range(int64_t lo, int64_t hi) {
  std::vector<std::string> alternatives;
  if (lo < 0) {
    const int64_t negative_hi = std::min<int64_t>(hi, -1);
    alternatives.push_back("\"-\" " + nonnegative_range(-negative_hi, -lo));
  }
  if (hi >= 0) alternatives.push_back(nonnegative_range(std::max<int64_t>(lo, 0), hi));
  return group(alternatives);
}

int64_t largest_spelled_integer() {
  int64_t v = 0;
  for (int i = 0; i < kIntegerDigits; ++i) v = v * 10 + 9;
  return v;
}

// ---- the compiler ---------------------------------------------------------------------------------------

struct Rule {
  std::string name;
  std::string body;
  std::string pointer;  // the subschema it compiles
  bool is_schema = false;
  // Each alternative's schema rules it cannot do without (for the check that every rule admits a value).
  std::vector<std::vector<size_t>> needs;
  // Schema rules an alternative starts with, consuming nothing first (for the left-recursion check).
  std::vector<size_t> aliases;
};

struct Alternative {
  std::string text;
  std::vector<size_t> needs;
  std::optional<size_t> alias;
};

// A member value or array element: the rule to reference and, when it is a schema rule, its index.
struct ValueRef {
  std::string name;
  std::optional<size_t> rule;
};

class SchemaCompiler {
 public:
  SchemaCompiler(const Json& document, std::string prefix) : document_(document), prefix_(std::move(prefix)) {
    for (const char* helper : {"root", "ws", "char", "char-scalar", "string", "integer", "number", "boolean", "null",
                               "value", "object", "array", "date", "time", "date-time", "uuid", "email"}) {
      names_.insert(prefix_ + helper);
    }
  }

  std::string compile() {
    schema_rule(document_, "", 0);
    check_no_left_recursion();
    check_every_rule_admits_a_value();
    return text();
  }

 private:
  // ---- rules and names ----

  size_t new_rule(const std::string& name, const std::string& pointer) {
    if (rules_.size() >= kMaxRules) fail(pointer, "the schema needs more than " + std::to_string(kMaxRules) + " grammar rules");
    rules_.push_back(Rule{name, "", pointer, false, {}, {}});
    return rules_.size() - 1;
  }

  std::string unique_name(const std::string& base) {
    std::string name = prefix_ + base;
    for (int n = 2; names_.count(name) != 0; ++n) name = prefix_ + base + "-" + std::to_string(n);
    names_.insert(name);
    return name;
  }

  // Readable names: the pointer's tokens joined with '-', "properties" left out.
  std::string name_for_pointer(const std::string& pointer) {
    if (pointer.empty()) return prefix_ + "root";
    std::string base;
    size_t start = 1;
    while (start <= pointer.size()) {
      size_t end = pointer.find('/', start);
      if (end == std::string::npos) end = pointer.size();
      std::string token = pointer.substr(start, end - start);
      start = end + 1;
      if (token == "properties") continue;
      std::string clean;
      for (char c : token) {
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (alnum) {
          clean += c;
        } else if (!clean.empty() && clean.back() != '-') {
          clean += '-';
        }
      }
      while (!clean.empty() && clean.back() == '-') clean.pop_back();
      if (!clean.empty()) base += (base.empty() ? "" : "-") + clean;
    }
    if (base.size() > 40) base = base.substr(base.size() - 40);
    while (!base.empty() && base.front() == '-') base.erase(0, 1);
    return unique_name(base.empty() ? "schema" : base);
  }

  // A fixed rule shared by the whole grammar, defined on first use.
  std::string helper(const std::string& key) {
    auto it = helpers_.find(key);
    if (it != helpers_.end()) return it->second;
    const std::string name = prefix_ + key;
    helpers_.emplace(key, name);
    const size_t id = new_rule(name, "");
    rules_[id].body = helper_body(key);
    return name;
  }

  std::string helper_body(const std::string& key) {
    const std::string hex = "[0-9a-fA-F]";
    if (key == "ws") return "( \" \" | \"\\n\" [ \\t]{0," + std::to_string(kMaxIndent) + "} )?";
    if (key == "char") return "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" " + hex + "{4} )";
    // One code point per character, so that minLength and maxLength count as validators do: no surrogate escapes.
    if (key == "char-scalar") {
      return "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-Ce-fE-F] " + hex + "{3} | [dD] [0-7] " +
             hex + "{2} ) )";
    }
    if (key == "string") return "\"\\\"\" " + helper("char") + "* \"\\\"\"";
    if (key == "integer") return "\"-\"? ( \"0\" | [1-9] [0-9]{0," + std::to_string(kIntegerDigits - 1) + "} )";
    if (key == "number") {
      return helper("integer") + " ( \".\" [0-9]{1," + std::to_string(kFractionDigits) + "} )? ( [eE] [-+]? [0-9]{1," +
             std::to_string(kExponentDigits) + "} )?";
    }
    if (key == "boolean") return "\"true\" | \"false\"";
    if (key == "null") return "\"null\"";
    if (key == "value") {
      return helper("object") + " | " + helper("array") + " | " + helper("string") + " | " + helper("number") + " | " +
             helper("boolean") + " | " + helper("null");
    }
    const std::string ws = helper("ws");
    if (key == "object") {
      const std::string member = helper("string") + " \":\" " + ws + " " + helper("value");
      return "\"{\" " + ws + " ( " + member + " ( \",\" " + ws + " " + member + " )* " + ws + " )? \"}\"";
    }
    if (key == "array") {
      const std::string value = helper("value");
      return "\"[\" " + ws + " ( " + value + " ( \",\" " + ws + " " + value + " )* " + ws + " )? \"]\"";
    }
    return format_body(key);
  }

  std::string format_body(const std::string& key) {
    const std::string two_digit_hour = "( [01] [0-9] | \"2\" [0-3] )";
    const std::string minute = "[0-5] [0-9]";
    if (key == "date") {
      // Days that exist in every year: February stops at 28 (a leap day needs the year's arithmetic).
      return "[0-9]{4} \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] ) | "
             "( \"0\" [469] | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) | "
             "\"02-\" ( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] ) )";
    }
    if (key == "time") {
      return two_digit_hour + " \":\" " + minute + " \":\" " + minute + " ( \".\" [0-9]{1,6} )? ( \"Z\" | [-+] " +
             two_digit_hour + " \":\" " + minute + " )";
    }
    if (key == "date-time") return helper("date") + " \"T\" " + helper("time");
    if (key == "uuid") return "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12}";
    if (key == "email") {
      const std::string local = "[a-zA-Z0-9_+-]{1,32}";
      const std::string label = "[a-zA-Z0-9]{1,32}";
      return local + " ( \".\" " + local + " ){0,3} \"@\" " + label + " ( \".\" " + label + " ){1,3}";
    }
    fail("", "internal: no helper rule '" + key + "'");
  }

  // ---- schemas ----

  // The rule for the subschema at `pointer`, compiled once.
  size_t schema_rule(const Json& schema, const std::string& pointer, int depth) {
    auto it = by_pointer_.find(pointer);
    if (it != by_pointer_.end()) return it->second;
    if (depth > kMaxCompileDepth) fail(pointer, "schemas nested too deeply (through $ref or subschemas)");
    const size_t id = new_rule(name_for_pointer(pointer), pointer);
    rules_[id].is_schema = true;
    by_pointer_.emplace(pointer, id);
    std::vector<Alternative> alternatives = compile_alternatives(schema, pointer, depth);
    std::string body;
    for (const Alternative& alternative : alternatives) {
      body += (body.empty() ? "" : " | ") + alternative.text;
      rules_[id].needs.push_back(alternative.needs);
      if (alternative.alias) rules_[id].aliases.push_back(*alternative.alias);
    }
    rules_[id].body = std::move(body);
    return id;
  }

  std::vector<Alternative> compile_alternatives(const Json& schema, const std::string& pointer, int depth) {
    if (schema.is_boolean()) {
      if (!schema.get<bool>()) fail(pointer, "the schema false admits no value");
      return {{helper("value"), {}, std::nullopt}};
    }
    if (!schema.is_object()) fail(pointer, "a schema must be an object or a boolean");
    check_keywords(schema, pointer);
    if (schema.contains("$ref")) return {reference(schema, pointer, depth)};
    for (const char* combinator : {"anyOf", "oneOf", "allOf"}) {
      if (schema.contains(combinator)) return combination(schema, pointer, combinator, depth);
    }
    if (schema.contains("enum") || schema.contains("const")) return enumeration(schema, pointer);
    std::vector<Alternative> alternatives;
    for (const std::string& type : types_of(schema, pointer)) alternatives.push_back(typed(schema, pointer, type, depth));
    return alternatives;
  }

  // A keyword whose meaning would combine with `keyword`'s is refused: the grammar has no intersection.
  void refuse_siblings(const Json& schema, const std::string& pointer, const std::string& keyword,
                       const std::set<std::string>& allowed = {}) {
    for (const std::string& key : assertions(schema)) {
      if (key == keyword || allowed.count(key) != 0) continue;
      fail(child(pointer, key), "'" + key + "' beside '" + keyword + "' is not supported");
    }
  }

  // ---- $ref ----

  Alternative reference(const Json& schema, const std::string& pointer, int depth) {
    refuse_siblings(schema, pointer, "$ref");
    const std::string where = child(pointer, "$ref");
    const Json& ref = schema["$ref"];
    if (!ref.is_string()) fail(where, "$ref must be a string");
    auto [target, target_pointer] = resolve(ref.get<std::string>(), where);
    const size_t id = schema_rule(*target, target_pointer, depth + 1);
    return {rules_[id].name, {id}, id};
  }

  std::pair<const Json*, std::string> resolve(const std::string& ref, const std::string& where) const {
    if (ref.empty() || ref[0] != '#') fail(where, "only references inside the schema (#/...) are supported, not '" + ref + "'");
    const std::string fragment = percent_decoded(ref.substr(1), where);
    if (!fragment.empty() && fragment[0] != '/') fail(where, "anchors ('" + ref + "') are not supported; use #/$defs/...");
    const Json* node = &document_;
    std::string canonical;
    size_t start = 1;
    while (start <= fragment.size() && !fragment.empty()) {
      size_t end = fragment.find('/', start);
      if (end == std::string::npos) end = fragment.size();
      const std::string token = unescaped_pointer_token(fragment.substr(start, end - start));
      start = end + 1;
      node = step(*node, token);
      if (node == nullptr) fail(where, "'" + ref + "' does not resolve to a schema in this document");
      canonical = child(canonical, token);
    }
    return {node, canonical};
  }

  static const Json* step(const Json& node, const std::string& token) {
    if (node.is_object()) {
      auto it = node.find(token);
      return it == node.end() ? nullptr : &*it;
    }
    if (node.is_array()) {
      if (token.empty() || token.size() > 9 || token.find_first_not_of("0123456789") != std::string::npos) return nullptr;
      const size_t index = std::stoul(token);
      return index < node.size() ? &node[index] : nullptr;
    }
    return nullptr;
  }

  static std::string unescaped_pointer_token(const std::string& token) {
    std::string out;
    for (size_t i = 0; i < token.size(); ++i) {
      if (token[i] == '~' && i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
        out += token[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        out += token[i];
      }
    }
    return out;
  }

  static std::string percent_decoded(const std::string& text, const std::string& where) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '%') {
        out += text[i];
        continue;
      }
      if (i + 2 >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[i + 1])) ||
          !std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
        fail(where, "invalid percent-escape in $ref");
      }
      out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
      i += 2;
    }
    return out;
  }

  // ---- anyOf, oneOf, allOf ----

  std::vector<Alternative> combination(const Json& schema, const std::string& pointer, const std::string& keyword,
                                       int depth) {
    refuse_siblings(schema, pointer, keyword);
    const std::string where = child(pointer, keyword);
    const Json& branches = schema[keyword];
    if (!branches.is_array() || branches.empty()) fail(where, keyword + " must be a non-empty array of schemas");
    if (keyword == "allOf" && branches.size() > 1) fail(where, "allOf with more than one schema is not supported");
    if (keyword == "oneOf") check_disjoint(branches, where);
    std::vector<Alternative> alternatives;
    for (size_t i = 0; i < branches.size(); ++i) {
      if (branches[i].is_boolean() && !branches[i].get<bool>()) continue;
      const size_t id = schema_rule(branches[i], child(where, i), depth + 1);
      alternatives.push_back({rules_[id].name, {id}, id});
    }
    if (alternatives.empty()) fail(where, "no branch admits a value");
    return alternatives;
  }

  // oneOf means "exactly one": the grammar spells anyOf, which is the same only when no value can match two
  // branches. Two ways to be sure: the branches' types do not overlap, or both are objects requiring one
  // property whose const/enum values differ.
  void check_disjoint(const Json& branches, const std::string& where) const {
    if (branches.size() * branches.size() > kMaxOneOfComparisons) fail(where, "oneOf has too many branches; use anyOf");
    oneof_work_ = 0;
    std::vector<unsigned> types;
    for (const Json& branch : branches) types.push_back(possible_types(follow_refs(branch), 0));
    for (size_t i = 0; i < branches.size(); ++i) {
      for (size_t j = i + 1; j < branches.size(); ++j) {
        if ((types[i] & types[j]) == 0) continue;
        if (types[i] == kObject && types[j] == kObject && discriminated(follow_refs(branches[i]), follow_refs(branches[j]))) continue;
        fail(where, "oneOf branches " + std::to_string(i) + " and " + std::to_string(j) +
                        " may match the same value (only branches of different types, or objects told apart by a "
                        "required const/enum property, are supported); use anyOf");
      }
    }
  }

  const Json& follow_refs(const Json& schema) const {
    const Json* node = &schema;
    for (int hops = 0; hops < kMaxCompileDepth && node->is_object() && node->contains("$ref") && (*node)["$ref"].is_string();
         ++hops) {
      try {
        node = resolve((*node)["$ref"].get<std::string>(), "").first;
      } catch (const SchemaError&) {
        break;
      }
    }
    return *node;
  }

  // The types a value valid against `schema` may have, as a validator sees them (no inference from
  // keywords: a schema without "type" admits every type).
  // Past its share of work it answers "any type", which only makes oneOf refuse.
  unsigned possible_types(const Json& schema, int depth) const {
    if (schema.is_boolean()) return schema.get<bool>() ? unsigned{kAnyType} : 0u;
    if (!schema.is_object() || depth > 16 || ++oneof_work_ > kMaxOneOfWork) return kAnyType;
    if (schema.contains("$ref")) return possible_types(follow_refs(schema), depth + 1);
    unsigned types = kAnyType;
    if (schema.contains("type")) types = declared_types(schema["type"]);
    if (schema.contains("const")) types &= value_type(schema["const"]);
    if (schema.contains("enum") && schema["enum"].is_array()) {
      unsigned enum_types = 0;
      for (const Json& value : schema["enum"]) enum_types |= value_type(value);
      types &= enum_types;
    }
    for (const char* combinator : {"anyOf", "oneOf"}) {
      if (!schema.contains(combinator) || !schema[combinator].is_array()) continue;
      unsigned branch_types = 0;
      for (const Json& branch : schema[combinator]) branch_types |= possible_types(follow_refs(branch), depth + 1);
      types &= branch_types;
    }
    if (schema.contains("allOf") && schema["allOf"].is_array()) {
      for (const Json& branch : schema["allOf"]) types &= possible_types(follow_refs(branch), depth + 1);
    }
    return types;
  }

  static unsigned declared_types(const Json& type) {
    unsigned bits = 0;
    if (type.is_string()) return type_bits(type.get<std::string>()).value_or(unsigned{kAnyType});
    if (!type.is_array()) return kAnyType;
    for (const Json& name : type) bits |= name.is_string() ? type_bits(name.get<std::string>()).value_or(unsigned{kAnyType}) : unsigned{kAnyType};
    return bits;
  }

  bool discriminated(const Json& a, const Json& b) const {
    if (!a.contains("properties") || !b.contains("properties") || !a["properties"].is_object() ||
        !b["properties"].is_object()) {
      return false;
    }
    for (const auto& [key, schema_a] : a["properties"].items()) {
      if (!requires_property(a, key) || !requires_property(b, key) || !b["properties"].contains(key)) continue;
      const auto values_a = fixed_values(follow_refs(schema_a));
      const auto values_b = fixed_values(follow_refs(b["properties"][key]));
      if (!values_a || !values_b) continue;
      oneof_work_ += values_a->size() * values_b->size();
      if (oneof_work_ > kMaxOneOfWork) return false;
      bool overlap = false;
      for (const Json& x : *values_a) {
        for (const Json& y : *values_b) overlap = overlap || x == y;
      }
      if (!overlap) return true;
    }
    return false;
  }

  static bool requires_property(const Json& schema, const std::string& key) {
    if (!schema.contains("required") || !schema["required"].is_array()) return false;
    for (const Json& name : schema["required"]) {
      if (name.is_string() && name.get<std::string>() == key) return true;
    }
    return false;
  }

  static std::optional<std::vector<Json>> fixed_values(const Json& schema) {
    if (!schema.is_object()) return std::nullopt;
    if (schema.contains("const")) return std::vector<Json>{schema["const"]};
    if (schema.contains("enum") && schema["enum"].is_array() && schema["enum"].size() <= 64) {
      return std::vector<Json>(schema["enum"].begin(), schema["enum"].end());
    }
    return std::nullopt;
  }

  // ---- enum, const ----

  std::vector<Alternative> enumeration(const Json& schema, const std::string& pointer) {
    const bool has_enum = schema.contains("enum");
    refuse_siblings(schema, pointer, has_enum ? "enum" : "const", {"type", "enum", "const"});
    std::vector<Json> values;
    if (has_enum) {
      const Json& list = schema["enum"];
      if (!list.is_array() || list.empty()) fail(child(pointer, "enum"), "enum must be a non-empty array");
      if (list.size() > kMaxEnumValues) {
        fail(child(pointer, "enum"), "enum has more than " + std::to_string(kMaxEnumValues) + " values");
      }
      values.assign(list.begin(), list.end());
    }
    if (schema.contains("const")) {
      const Json& constant = schema["const"];
      if (has_enum && std::find(values.begin(), values.end(), constant) == values.end()) {
        fail(child(pointer, "const"), "const is not one of the enum's values");
      }
      values = {constant};
    }
    const unsigned allowed = schema.contains("type") ? declared_types(schema["type"]) : kAnyType;
    if (schema.contains("type")) types_of(schema, pointer);  // refuses unknown type names
    std::vector<Alternative> alternatives;
    std::set<std::string> seen;
    for (const Json& value : values) {
      const std::string text = fixed_value_text(value);
      if ((value_type(value) & allowed) == 0 || !seen.insert(text).second) continue;
      alternatives.push_back({text, {}, std::nullopt});
    }
    if (alternatives.empty()) fail(child(pointer, has_enum ? "enum" : "const"), "no value has the schema's type");
    return alternatives;
  }

  // A given value, with the same whitespace between tokens as everywhere else.
  std::string fixed_value_text(const Json& value) {
    if (!value.is_object() && !value.is_array()) return schema::gbnf_literal(dump(value));
    const std::string ws = helper("ws");
    const bool is_object = value.is_object();
    std::string text = is_object ? "\"{\" " + ws : "\"[\" " + ws;
    bool first = true;
    for (const auto& [key, element] : value.items()) {
      if (!first) text += " \",\" " + ws;
      first = false;
      if (is_object) text += " " + schema::gbnf_literal(dump(Json(key))) + " \":\" " + ws;
      text += ' ';
      text += fixed_value_text(element);
    }
    if (!first) text += " " + ws;
    return text + (is_object ? " \"}\"" : " \"]\"");
  }

  // ---- types ----

  // The declared types, or those the keywords imply, or "any" when nothing says.
  std::vector<std::string> types_of(const Json& schema, const std::string& pointer) const {
    std::vector<std::string> out;
    if (schema.contains("type")) {
      const Json& type = schema["type"];
      const std::string where = child(pointer, "type");
      if (type.is_string()) {
        if (!type_bits(type.get<std::string>())) fail(where, "unknown type '" + type.get<std::string>() + "'");
        return {type.get<std::string>()};
      }
      if (!type.is_array() || type.empty()) fail(where, "type must be a type name or a non-empty array of them");
      for (size_t i = 0; i < type.size(); ++i) {
        if (!type[i].is_string()) fail(child(where, i), "type names are strings");
        const std::string name = type[i].get<std::string>();
        if (!type_bits(name)) fail(child(where, i), "unknown type '" + name + "'");
        if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
      }
      return out;
    }
    auto any_of = [&](std::initializer_list<const char*> keys) {
      return std::any_of(keys.begin(), keys.end(), [&](const char* key) { return schema.contains(key); });
    };
    if (any_of({"properties", "required", "additionalProperties"})) out.push_back("object");
    if (any_of({"items", "prefixItems", "minItems", "maxItems"})) out.push_back("array");
    if (any_of({"minLength", "maxLength", "pattern", "format"})) out.push_back("string");
    if (any_of({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) out.push_back("number");
    if (out.empty()) out.push_back("any");
    return out;
  }

  Alternative typed(const Json& schema, const std::string& pointer, const std::string& type, int depth) {
    if (type == "any") return {helper("value"), {}, std::nullopt};
    if (type == "null") return {helper("null"), {}, std::nullopt};
    if (type == "boolean") return {helper("boolean"), {}, std::nullopt};
    if (type == "string") return {string_text(schema, pointer), {}, std::nullopt};
    if (type == "integer") return {integer_text(schema, pointer), {}, std::nullopt};
    if (type == "number") return {number_text(schema, pointer), {}, std::nullopt};
    if (type == "array") return array_alternative(schema, pointer, depth);
    return object_alternative(schema, pointer, depth);
  }

  // A count keyword (minLength, maxItems, ...): a non-negative integer within what the grammar expands.
  std::optional<size_t> count(const Json& schema, const std::string& pointer, const char* key) const {
    if (!schema.contains(key)) return std::nullopt;
    const Json& value = schema[key];
    const std::string where = child(pointer, key);
    if (!is_integral(value) || value.get<double>() < 0) fail(where, std::string(key) + " must be a non-negative integer");
    if (value.get<double>() > static_cast<double>(kMaxRepeat)) {
      fail(where, std::string(key) + " above " + std::to_string(kMaxRepeat) + " is not supported");
    }
    return static_cast<size_t>(value.get<double>());
  }

  // `item` repeated min to max times (max kUnbounded: no limit).
  static std::string repeat(const std::string& item, size_t min, size_t max) {
    if (max == 0) return "";
    if (min == 0 && max == kUnbounded) return item + "*";
    if (min == 1 && max == kUnbounded) return item + "+";
    if (min == 0 && max == 1) return item + "?";
    if (min == 1 && max == 1) return item;
    if (max == kUnbounded) return item + "{" + std::to_string(min) + ",}";
    if (min == max) return item + "{" + std::to_string(min) + "}";
    return item + "{" + std::to_string(min) + "," + std::to_string(max) + "}";
  }

  std::string string_text(const Json& schema, const std::string& pointer) {
    const std::string quote = "\"\\\"\"";
    if (schema.contains("format")) {
      for (const char* other : {"pattern", "minLength", "maxLength"}) {
        if (schema.contains(other)) fail(child(pointer, other), std::string("'") + other + "' beside 'format' is not supported");
      }
      return quote + " " + format_rule(schema["format"], child(pointer, "format")) + " " + quote;
    }
    if (schema.contains("pattern")) {
      for (const char* other : {"minLength", "maxLength"}) {
        if (schema.contains(other)) fail(child(pointer, other), std::string("'") + other + "' beside 'pattern' is not supported");
      }
      return quote + " " + pattern_text(schema["pattern"], child(pointer, "pattern")) + " " + quote;
    }
    const std::optional<size_t> min = count(schema, pointer, "minLength");
    const std::optional<size_t> max = count(schema, pointer, "maxLength");
    if (!min && !max) return helper("string");
    if (min && max && *max < *min) fail(child(pointer, "maxLength"), "maxLength is less than minLength");
    const std::string chars = repeat(helper("char-scalar"), min.value_or(0), max.value_or(kUnbounded));
    return chars.empty() ? quote + " " + quote : quote + " " + chars + " " + quote;
  }

  std::string format_rule(const Json& format, const std::string& where) {
    if (!format.is_string()) fail(where, "format must be a string");
    const std::string name = format.get<std::string>();
    for (const char* known : {"date", "time", "date-time", "uuid", "email"}) {
      if (name == known) return helper(name);
    }
    fail(where, "format '" + name + "' is not supported (supported: date, time, date-time, uuid, email)");
  }

  std::string pattern_text(const Json& pattern, const std::string& where) {
    if (!pattern.is_string()) fail(where, "pattern must be a string");
    try {
      const std::string text =
          schema::pattern_to_gbnf(pattern.get<std::string>(), helper("char"), kMaxRepeat, kMaxPatternWeight);
      return text;
    } catch (const schema::PatternError& error) {
      fail(where, "at character " + std::to_string(error.offset) + ": " + error.what());
    }
  }

  struct Bounds {
    std::optional<double> lo, hi;
    bool lo_exclusive = false, hi_exclusive = false;
  };

  Bounds numeric_bounds(const Json& schema, const std::string& pointer) const {
    Bounds bounds;
    auto read = [&](const char* key) -> std::optional<double> {
      if (!schema.contains(key)) return std::nullopt;
      const Json& value = schema[key];
      if (value.is_boolean()) fail(child(pointer, key), std::string(key) + " as a boolean (draft 4) is not supported; give the bound as a number");
      if (!value.is_number()) fail(child(pointer, key), std::string(key) + " must be a number");
      return value.get<double>();
    };
    auto tighter = [](std::optional<double>& current, bool& exclusive, std::optional<double> candidate, bool candidate_exclusive,
                      bool is_lower) {
      if (!candidate) return;
      const bool better = !current || (is_lower ? *candidate > *current : *candidate < *current) ||
                          (*candidate == *current && candidate_exclusive);
      if (better) {
        current = candidate;
        exclusive = candidate_exclusive;
      }
    };
    tighter(bounds.lo, bounds.lo_exclusive, read("minimum"), false, true);
    tighter(bounds.lo, bounds.lo_exclusive, read("exclusiveMinimum"), true, true);
    tighter(bounds.hi, bounds.hi_exclusive, read("maximum"), false, false);
    tighter(bounds.hi, bounds.hi_exclusive, read("exclusiveMaximum"), true, false);
    return bounds;
  }

  // Validators that check formats check these on numbers: int32 and int64 (JavaScript's safe integers) as
  // ranges, float and double not at all.
  void apply_number_format(const Json& schema, const std::string& pointer, bool integer, Bounds& bounds) const {
    if (!schema.contains("format")) return;
    const std::string where = child(pointer, "format");
    if (!schema["format"].is_string()) fail(where, "format must be a string");
    const std::string name = schema["format"].get<std::string>();
    if (name == "float" || name == "double") return;
    if (!integer || (name != "int32" && name != "int64")) {
      fail(where, "format '" + name + "' is not supported on " + (integer ? "an integer" : "a number") +
                      " (supported: int32, int64 on integers; float, double)");
    }
    const double top = name == "int32" ? 2147483647.0 : 9007199254740991.0;
    const double bottom = name == "int32" ? -2147483648.0 : -9007199254740991.0;
    if (!bounds.lo || *bounds.lo < bottom) bounds.lo = bottom, bounds.lo_exclusive = false;
    if (!bounds.hi || *bounds.hi > top) bounds.hi = top, bounds.hi_exclusive = false;
  }

  std::string integer_text(const Json& schema, const std::string& pointer) {
    Bounds bounds = numeric_bounds(schema, pointer);
    apply_number_format(schema, pointer, true, bounds);
    if (!bounds.lo && !bounds.hi) return helper("integer");
    const int64_t limit = largest_spelled_integer();
    // Clamped as doubles first: a double past int64's range does not convert.
    auto to_integer = [&](double d) { return std::clamp(static_cast<int64_t>(std::clamp(d, -1e17, 1e17)), -limit, limit); };
    int64_t lo = -limit;
    int64_t hi = limit;
    if (bounds.lo) lo = to_integer(bounds.lo_exclusive ? std::floor(*bounds.lo) + 1 : std::ceil(*bounds.lo));
    if (bounds.hi) hi = to_integer(bounds.hi_exclusive ? std::ceil(*bounds.hi) - 1 : std::floor(*bounds.hi));
    if (bounds.lo && *bounds.lo > static_cast<double>(limit)) lo = limit + 1;
    if (bounds.hi && *bounds.hi < -static_cast<double>(limit)) hi = -limit - 1;
    if (lo > hi) {
      fail(child(pointer, bounds.hi ? (bounds.hi_exclusive ? "exclusiveMaximum" : "maximum") : "minimum"),
           "no integer of at most " + std::to_string(kIntegerDigits) + " digits lies within the bounds");
    }
    return integer_range(lo, hi);
  }

  std::string number_text(const Json& schema, const std::string& pointer) {
    Bounds bounds = numeric_bounds(schema, pointer);
    apply_number_format(schema, pointer, false, bounds);
    if (!bounds.lo && !bounds.hi) return helper("number");
    return bounded_number(bounds, pointer);
  }

  // A number between integer bounds, spelled without an exponent. Nonnegative spellings are magnitudes
  // within the bounds, negative ones "-" and a nonzero magnitude within the negated bounds.
  std::string bounded_number(const Bounds& bounds, const std::string& pointer) {
    const int64_t limit = largest_spelled_integer();
    std::optional<int64_t> lo;
    std::optional<int64_t> hi;
    for (auto [value, key, out] : {std::tuple{bounds.lo, bounds.lo_exclusive ? "exclusiveMinimum" : "minimum", &lo},
                                   std::tuple{bounds.hi, bounds.hi_exclusive ? "exclusiveMaximum" : "maximum", &hi}}) {
      if (!value) continue;
      if (std::floor(*value) != *value) {
        fail(child(pointer, key), "a number's bounds must be integers (fractional bounds are not supported)");
      }
      if (std::fabs(*value) <= static_cast<double>(limit)) *out = static_cast<int64_t>(*value);
    }
    if (bounds.lo && !lo && *bounds.lo > 0) fail(child(pointer, "minimum"), "the bound is beyond the numbers the grammar spells");
    if (bounds.hi && !hi && *bounds.hi < 0) fail(child(pointer, "maximum"), "the bound is beyond the numbers the grammar spells");
    std::vector<std::string> alternatives;
    if (!hi || *hi >= 0) {
      const bool from_lo = lo && *lo >= 0;
      magnitudes("", from_lo ? *lo : 0, from_lo && bounds.lo_exclusive, hi.has_value(), hi.value_or(0), bounds.hi_exclusive,
                 alternatives);
    }
    if (!lo || *lo < 0) {
      const bool from_hi = hi && *hi < 0;
      magnitudes("\"-\" ", from_hi ? -*hi : 0, from_hi ? bounds.hi_exclusive : true, lo.has_value(), lo ? -*lo : 0,
                 bounds.lo_exclusive, alternatives);
    }
    if (alternatives.empty()) fail(child(pointer, bounds.hi_exclusive ? "exclusiveMaximum" : "maximum"), "no number lies within the bounds");
    return group(alternatives);
  }

  // Spellings `sign` I.F of the magnitudes m with a <= m (a < m when a_open) and m <= b (m < b when b_open;
  // without has_b: up to the largest spelled integer part).
  void magnitudes(const std::string& sign, int64_t a, bool a_open, bool has_b, int64_t b, bool b_open,
                  std::vector<std::string>& alternatives) {
    const std::string any_fraction = "( \".\" [0-9]{1," + std::to_string(kFractionDigits) + "} )?";
    const std::string zero_fraction = "( \".\" \"0\"{1," + std::to_string(kFractionDigits) + "} )?";
    const std::string nonzero_fraction = "\".\" \"0\"{0," + std::to_string(kFractionDigits - 1) + "} [1-9] [0-9]{0," +
                                         std::to_string(kFractionDigits - 1) + "}";
    int64_t first_whole = a;
    if (a_open) {
      if (!has_b || a < b) alternatives.push_back(sign + integer_range(a, a) + " " + nonzero_fraction);
      first_whole = a + 1;
    }
    const int64_t last_any = has_b ? b - 1 : largest_spelled_integer();
    if (first_whole <= last_any) alternatives.push_back(sign + integer_range(first_whole, last_any) + " " + any_fraction);
    if (has_b && !b_open && b >= first_whole) alternatives.push_back(sign + integer_range(b, b) + " " + zero_fraction);
  }

  // ---- arrays ----

  ValueRef value_schema(const Json& schema, const std::string& pointer, int depth) {
    if (schema.is_boolean() && schema.get<bool>()) return {helper("value"), std::nullopt};
    const size_t id = schema_rule(schema, pointer, depth + 1);
    return {rules_[id].name, id};
  }

  Alternative array_alternative(const Json& schema, const std::string& pointer, int depth) {
    std::vector<ValueRef> prefix;
    if (schema.contains("prefixItems")) {
      const Json& items = schema["prefixItems"];
      if (!items.is_array()) fail(child(pointer, "prefixItems"), "prefixItems must be an array of schemas");
      if (items.size() > kMaxRepeat) fail(child(pointer, "prefixItems"), "more than " + std::to_string(kMaxRepeat) + " prefixItems");
      for (size_t i = 0; i < items.size(); ++i) {
        if (items[i].is_boolean() && !items[i].get<bool>()) break;  // no element may stand here, nor after
        prefix.push_back(value_schema(items[i], child(child(pointer, "prefixItems"), i), depth));
      }
    }
    const size_t min = count(schema, pointer, "minItems").value_or(0);
    size_t max = count(schema, pointer, "maxItems").value_or(kUnbounded);
    std::optional<ValueRef> rest;
    const bool prefix_cut = schema.contains("prefixItems") && prefix.size() < schema["prefixItems"].size();
    if (schema.contains("items") && schema["items"].is_array()) {
      fail(child(pointer, "items"), "items as an array (draft 7 tuples) is not supported; use prefixItems");
    }
    if (prefix_cut || (schema.contains("items") && schema["items"] == false)) {
      max = std::min(max, prefix.size());
    } else {
      rest = schema.contains("items") ? value_schema(schema["items"], child(pointer, "items"), depth)
                                      : ValueRef{helper("value"), std::nullopt};
    }
    if (min > max) fail(child(pointer, "minItems"), "minItems is more than the items allowed");
    Alternative out;
    for (size_t i = 0; i < std::min(min, prefix.size()); ++i) {
      if (prefix[i].rule) out.needs.push_back(*prefix[i].rule);
    }
    if (min > prefix.size() && rest && rest->rule) out.needs.push_back(*rest->rule);
    const std::string ws = helper("ws");
    const std::string content = array_elements(prefix, rest, 0, min, max, pointer);
    if (content.empty()) {
      out.text = "\"[\" " + ws + " \"]\"";
    } else if (min == 0) {
      out.text = "\"[\" " + ws + " ( " + content + " " + ws + " )? \"]\"";
    } else {
      out.text = "\"[\" " + ws + " " + content + " " + ws + " \"]\"";
    }
    return out;
  }

  // Elements from position `i` on, given that those before it are present. Position 0 is never wrapped as
  // optional here: the caller pairs it with the closing whitespace. An optional prefix position gets a rule
  // of its own, so that long tuples nest rules rather than parentheses.
  std::string array_elements(const std::vector<ValueRef>& prefix, const std::optional<ValueRef>& rest, size_t i,
                             size_t min, size_t max, const std::string& pointer) {
    const std::string comma = "\",\" " + helper("ws") + " ";
    if (i >= max) return "";
    if (i < prefix.size()) {
      const std::string element =
          sequence((i == 0 ? "" : comma) + prefix[i].name, array_elements(prefix, rest, i + 1, min, max, pointer));
      if (i < min || i == 0) return element;
      const std::string base = rules_[by_pointer_.at(pointer)].name.substr(prefix_.size());
      const size_t id = new_rule(unique_name(base + "-from-" + std::to_string(i)), pointer);
      rules_[id].body = "( " + element + " )?";
      return rules_[id].name;
    }
    if (!rest) return "";
    const size_t more_min = min > i ? min - i : 0;
    const size_t more_max = max == kUnbounded ? kUnbounded : max - i;
    if (i > 0) return repeat("( " + comma + rest->name + " )", more_min, more_max);
    // The first element has no comma before it.
    const size_t others_max = more_max == kUnbounded ? kUnbounded : more_max - 1;
    return sequence(rest->name, repeat("( " + comma + rest->name + " )", more_min > 0 ? more_min - 1 : 0, others_max));
  }

  // ---- objects ----

  struct Member {
    std::string key;
    ValueRef value;
    bool required;
  };

  Alternative object_alternative(const Json& schema, const std::string& pointer, int depth) {
    const std::set<std::string> required = required_names(schema, pointer);
    std::vector<Member> members;
    std::set<std::string> declared;
    if (schema.contains("properties")) {
      const Json& properties = schema["properties"];
      if (!properties.is_object()) fail(child(pointer, "properties"), "properties must be an object of schemas");
      for (const auto& [key, property] : properties.items()) {
        declared.insert(key);
        const bool is_required = required.count(key) != 0;
        if (property.is_boolean() && !property.get<bool>()) {
          if (is_required) fail(child(pointer, "required"), "required property '" + key + "' has the schema false");
          continue;
        }
        members.push_back({key, value_schema(property, child(child(pointer, "properties"), key), depth), is_required});
      }
    }
    // Without "properties", an object schema admits any members; with them, only those (the strict form
    // structured output asks for) unless additionalProperties says otherwise.
    std::optional<ValueRef> additional;
    if (schema.contains("additionalProperties")) {
      const Json& extra = schema["additionalProperties"];
      if (!(extra.is_boolean() && !extra.get<bool>())) {
        additional = value_schema(extra, child(pointer, "additionalProperties"), depth);
      }
    } else if (!schema.contains("properties")) {
      additional = ValueRef{helper("value"), std::nullopt};
    }
    for (const std::string& key : required) {
      if (declared.count(key) != 0) continue;
      if (!additional) {
        fail(child(pointer, "required"), "required property '" + key + "' is not in properties and additional properties are not allowed");
      }
      declared.insert(key);
      members.push_back({key, *additional, true});
    }
    Alternative out;
    if (members.empty() && additional && additional->name == helper("value")) {
      out.text = helper("object");
      return out;
    }
    for (const Member& member : members) {
      if (member.required && member.value.rule) out.needs.push_back(*member.value.rule);
    }
    out.text = object_text(members, declared, additional, pointer);
    return out;
  }

  std::set<std::string> required_names(const Json& schema, const std::string& pointer) const {
    std::set<std::string> names;
    if (!schema.contains("required")) return names;
    const Json& list = schema["required"];
    const std::string where = child(pointer, "required");
    if (!list.is_array()) fail(where, "required must be an array of property names");
    for (size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_string()) fail(child(where, i), "property names are strings");
      names.insert(list[i].get<std::string>());
    }
    return names;
  }

  std::string member_text(const std::string& key, const std::string& value) {
    return schema::gbnf_literal(dump(Json(key))) + " \":\" " + helper("ws") + " " + value;
  }

  // Members in the schema's order, then any additional ones. tail(i) spells the members from i on, each after
  // a comma; the object starts with one of the optional members before the first required one, or with that.
  std::string object_text(const std::vector<Member>& members, const std::set<std::string>& declared,
                          const std::optional<ValueRef>& additional, const std::string& pointer) {
    const std::string ws = helper("ws");
    const std::string base = rules_[by_pointer_.at(pointer)].name.substr(prefix_.size());
    std::string extra_member;
    std::string extras_tail;
    if (additional) {
      extra_member = other_key(declared, base) + " \":\" " + ws + " " + additional->name;
      extras_tail = "( \",\" " + ws + " " + extra_member + " )*";
    }
    // tails[i]: the rule (or text when short) for members i.. after at least one member.
    std::vector<std::string> tails(members.size() + 1);
    tails[members.size()] = extras_tail;
    for (size_t i = members.size(); i-- > 1;) {
      const std::string piece = "\",\" " + ws + " " + member_text(members[i].key, members[i].value.name);
      const std::string text = sequence(members[i].required ? piece : "( " + piece + " )?", tails[i + 1]);
      const size_t id = new_rule(unique_name(base + "-tail-" + std::to_string(i)), pointer);
      rules_[id].body = text;
      tails[i] = rules_[id].name;
    }
    std::vector<std::string> starts;
    bool has_required = false;
    for (size_t i = 0; i < members.size(); ++i) {
      starts.push_back(sequence(member_text(members[i].key, members[i].value.name), tails[i + 1]));
      if (members[i].required) {
        has_required = true;
        break;
      }
    }
    if (!has_required && additional) starts.push_back(sequence(extra_member, extras_tail));
    if (starts.empty()) return "\"{\" " + ws + " \"}\"";
    const std::string body = group(starts);
    if (has_required) return "\"{\" " + ws + " " + body + " " + ws + " \"}\"";
    return "\"{\" " + ws + " ( " + body + " " + ws + " )? \"}\"";
  }

  // A key other than the declared ones. Keys here are spelled without escapes, so that a declared key cannot
  // come back in another spelling; a trie of the declared keys tells where a key departs from all of them.
  std::string other_key(const std::set<std::string>& declared, const std::string& base) {
    const std::string quote = "\"\\\"\"";
    const CodepointSet raw = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0xD7FF}, {0xE000, 0x10FFFF}};
    const std::string key_char = schema::gbnf_class(raw);
    if (declared.empty()) return helper("string");
    std::vector<std::u32string> keys;
    for (const std::string& key : declared) keys.push_back(decode(key));
    return quote + " " + trie_rule(keys, 0, keys.size(), 0, raw, key_char, base);
  }

  static std::u32string decode(const std::string& utf8) {
    std::u32string out;
    for (size_t i = 0; i < utf8.size();) {
      const auto b = static_cast<unsigned char>(utf8[i]);
      const size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
      uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
      for (size_t k = 1; k < len && i + k < utf8.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(utf8[i + k]) & 0x3F);
      out += static_cast<char32_t>(cp);
      i += len;
    }
    return out;
  }

  // The rest of a key (and its closing quote) that, after the common prefix of keys[first..last) of length
  // `at`, differs from all of them. `keys` is sorted.
  std::string trie_rule(const std::vector<std::u32string>& keys, size_t first, size_t last, size_t at,
                        const CodepointSet& raw, const std::string& key_char, const std::string& base) {
    const std::string quote = "\"\\\"\"";
    std::vector<std::string> alternatives;
    bool ends_here = false;
    CodepointSet next_chars;
    std::vector<std::pair<size_t, size_t>> groups;
    for (size_t i = first; i < last;) {
      if (keys[i].size() == at) {
        ends_here = true;
        ++i;
        continue;
      }
      const char32_t c = keys[i][at];
      size_t j = i;
      while (j < last && keys[j].size() > at && keys[j][at] == c) ++j;
      next_chars.push_back({c, c});
      groups.emplace_back(i, j);
      i = j;
    }
    if (!ends_here) alternatives.push_back(quote);
    const CodepointSet departing = schema::intersection(raw, schema::complement(next_chars));
    if (!departing.empty()) alternatives.push_back(schema::gbnf_class(departing) + " " + key_char + "* " + quote);
    for (auto [i, j] : groups) {
      const char32_t c = keys[i][at];
      if (c == '"' || c == '\\' || c < 0x20) continue;  // such a key has no unescaped spelling to avoid
      schema::CodepointSet one = {{static_cast<uint32_t>(c), static_cast<uint32_t>(c)}};
      alternatives.push_back(schema::gbnf_class(one) + " " + trie_rule(keys, i, j, at + 1, raw, key_char, base));
    }
    const size_t id = new_rule(unique_name(base + "-key"), "");
    rules_[id].body = group(alternatives);
    return rules_[id].name;
  }

  // ---- checks over the whole grammar ----

  // A schema rule that can start with itself without consuming a character is left recursion: refused.
  void check_no_left_recursion() const {
    std::vector<int> state(rules_.size(), 0);  // 0 unvisited, 1 on the path, 2 done
    std::function<void(size_t)> visit = [&](size_t id) {
      state[id] = 1;
      for (size_t next : rules_[id].aliases) {
        if (state[next] == 1) {
          fail(rules_[next].pointer, "the schema refers to itself through $ref without any JSON in between, so it describes no value");
        }
        if (state[next] == 0) visit(next);
      }
      state[id] = 2;
    };
    for (size_t id = 0; id < rules_.size(); ++id) {
      if (state[id] == 0) visit(id);
    }
  }

  // Every schema rule must admit some finite value; one that only recurses (a required property whose
  // schema is the object itself) would let generation run forever.
  void check_every_rule_admits_a_value() const {
    std::vector<bool> finite(rules_.size(), false);
    for (size_t id = 0; id < rules_.size(); ++id) finite[id] = !rules_[id].is_schema;
    bool changed = true;
    while (changed) {
      changed = false;
      for (size_t id = 0; id < rules_.size(); ++id) {
        if (finite[id]) continue;
        for (const auto& needs : rules_[id].needs) {
          if (std::all_of(needs.begin(), needs.end(), [&](size_t n) { return finite[n]; })) {
            finite[id] = true;
            changed = true;
            break;
          }
        }
      }
    }
    for (size_t id = 0; id < rules_.size(); ++id) {
      if (!finite[id]) fail(rules_[id].pointer, "no finite JSON value satisfies this schema (it requires itself through $ref)");
    }
  }

  std::string text() const {
    std::string out;
    size_t expanded = 0;
    for (const Rule& rule : rules_) {
      out += rule.name + " ::= " + rule.body + "\n";
      expanded += 1 + expanded_rules(rule.body);
      if (out.size() > kMaxGrammarBytes) fail("", "the grammar would be larger than " + std::to_string(kMaxGrammarBytes) + " bytes");
      if (expanded > kMaxExpandedRules) {
        fail("", "the grammar would be too large (its groups and repetitions expand past " + std::to_string(kMaxExpandedRules) +
                     " rules)");
      }
    }
    return out;
  }

  // The rules a GBNF reader creates for a body: one per group and per operator, and one per optional count of
  // a {m,n} repetition.
  static size_t expanded_rules(const std::string& body) {
    size_t count = 0;
    for (size_t i = 0; i < body.size(); ++i) {
      const char c = body[i];
      if (c == '"' || c == '[') {
        const char close = c == '"' ? '"' : ']';
        for (++i; i < body.size() && body[i] != close; ++i) {
          if (body[i] == '\\') ++i;
        }
      } else if (c == '(' || c == '*' || c == '+' || c == '?') {
        ++count;
      } else if (c == '{') {
        const size_t close = body.find('}', i);
        const std::string bounds = body.substr(i + 1, close - i - 1);
        const size_t comma = bounds.find(',');
        const std::string last = comma == std::string::npos ? bounds : bounds.substr(comma + 1);
        count += 1 + std::stoul(last.empty() ? bounds.substr(0, comma) : last);
        i = close;
      }
    }
    return count;
  }

  const Json& document_;
  std::string prefix_;
  std::vector<Rule> rules_;
  std::unordered_map<std::string, size_t> by_pointer_;
  std::unordered_set<std::string> names_;
  std::unordered_map<std::string, std::string> helpers_;
  mutable size_t oneof_work_ = 0;
};

bool valid_prefix(std::string_view prefix) {
  return std::all_of(prefix.begin(), prefix.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
  });
}

Json parse_schema_text(std::string_view text) {
  const Json::parser_callback_t limit_depth = [](int depth, Json::parse_event_t event, Json&) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) && depth >= kMaxJsonDepth) {
      throw TooDeep{};
    }
    return true;
  };
  return Json::parse(text.begin(), text.end(), limit_depth);
}

Status schema_error(const std::string& pointer, const std::string& what) {
  return Status(ErrorCode::kInvalidArgument, "schema: " + (pointer.empty() ? std::string("(root)") : pointer) + ": " + what);
}

}  // namespace

Result<std::string> json_schema_to_gbnf(std::string_view schema_json, std::string_view rule_prefix) {
  if (!valid_prefix(rule_prefix)) {
    return Status(ErrorCode::kInvalidArgument,
                  "schema: rule prefix '" + std::string(rule_prefix) + "' may hold only letters, digits and '-'");
  }
  Json schema;
  try {
    schema = parse_schema_text(schema_json);
  } catch (const Json::parse_error& error) {
    return Status(ErrorCode::kInvalidArgument,
                  "schema: invalid JSON at byte " + std::to_string(error.byte > 0 ? error.byte - 1 : 0));
  } catch (const Json::out_of_range&) {
    return Status(ErrorCode::kInvalidArgument, "schema: a number in the JSON is too large to represent");
  } catch (const TooDeep&) {
    return Status(ErrorCode::kInvalidArgument,
                  "schema: JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  try {
    return SchemaCompiler(schema, std::string(rule_prefix)).compile();
  } catch (const SchemaError& error) {
    return schema_error(error.pointer, error.what);
  }
}

std::string json_value_gbnf(bool object_only) {
  const Json schema = object_only ? Json{{"type", "object"}} : Json::object();
  return SchemaCompiler(schema, "").compile();
}

}  // namespace pagedlm::grammar
