// JSON Schema to GBNF: the grammar's shape (rule names, prefixes, every reference defined), the errors for
// what is refused, and the grammars run through the matcher byte by byte: the valid instances of the schema
// corpus in test/fixtures/schemas are accepted (compact and pretty-printed), the invalid ones refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "grammar/gbnf.h"
#include "grammar/grammar.h"
#include "support/byte_tokens.h"

namespace pagedlm::grammar {
namespace {

std::string compile_ok(const std::string& schema, const std::string& prefix = "") {
  auto result = json_schema_to_gbnf(schema, prefix);
  EXPECT_TRUE(result.is_ok()) << schema << "\n" << (result.is_ok() ? "" : result.status().message());
  return result.is_ok() ? result.value() : "";
}

std::string compile_error(const std::string& schema) {
  auto result = json_schema_to_gbnf(schema);
  EXPECT_FALSE(result.is_ok()) << schema << " compiled to\n" << (result.is_ok() ? result.value() : "");
  if (result.is_ok()) return "";
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument);
  return result.status().message();
}

// Rule name -> body, in the order defined.
std::vector<std::pair<std::string, std::string>> rules_of(const std::string& grammar) {
  std::vector<std::pair<std::string, std::string>> rules;
  size_t start = 0;
  while (start < grammar.size()) {
    size_t end = grammar.find('\n', start);
    if (end == std::string::npos) end = grammar.size();
    const std::string line = grammar.substr(start, end - start);
    start = end + 1;
    const size_t arrow = line.find(" ::= ");
    EXPECT_NE(arrow, std::string::npos) << line;
    if (arrow != std::string::npos) rules.emplace_back(line.substr(0, arrow), line.substr(arrow + 5));
  }
  return rules;
}

// The rule names a body refers to: identifiers outside literals, classes and {m,n} counts.
std::set<std::string> references(const std::string& body) {
  std::set<std::string> names;
  for (size_t i = 0; i < body.size();) {
    const char c = body[i];
    if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      for (++i; i < body.size() && body[i] != close; ++i) {
        if (body[i] == '\\') ++i;
      }
      ++i;
    } else if (c == '{') {
      i = body.find('}', i) + 1;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') {
      size_t j = i;
      while (j < body.size() && (std::isalnum(static_cast<unsigned char>(body[j])) || body[j] == '-')) ++j;
      names.insert(body.substr(i, j - i));
      i = j;
    } else {
      ++i;
    }
  }
  return names;
}

void expect_well_formed(const std::string& grammar, const std::string& prefix) {
  const auto rules = rules_of(grammar);
  ASSERT_FALSE(rules.empty());
  EXPECT_EQ(rules[0].first, prefix + "root");
  std::set<std::string> defined;
  for (const auto& [name, body] : rules) {
    EXPECT_TRUE(defined.insert(name).second) << "defined twice: " << name;
    EXPECT_EQ(name.rfind(prefix, 0), 0u) << name;
  }
  for (const auto& [name, body] : rules) {
    for (const std::string& ref : references(body)) EXPECT_TRUE(defined.count(ref)) << name << " refers to " << ref;
  }
}

TEST(JsonSchema, EveryRuleCarriesThePrefixAndEveryReferenceIsDefined) {
  const std::string schema = R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "maxLength": 20},
      "age": {"type": "integer", "minimum": 0, "maximum": 150},
      "email": {"type": "string", "format": "email"},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
      "kind": {"enum": ["a", "b", null]},
      "next": {"$ref": "#/$defs/node"}
    },
    "required": ["name", "age"],
    "additionalProperties": false,
    "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}, "additionalProperties": false}}
  })";
  for (const std::string prefix : {"", "tool-0-", "x"}) expect_well_formed(compile_ok(schema, prefix), prefix);
}

TEST(JsonSchema, AnyValueGrammars) {
  expect_well_formed(json_value_gbnf(false), "");
  expect_well_formed(json_value_gbnf(true), "");
  EXPECT_EQ(json_value_gbnf(true).rfind("root ::= object\n", 0), 0u) << json_value_gbnf(true);
  EXPECT_EQ(json_value_gbnf(false).rfind("root ::= value\n", 0), 0u) << json_value_gbnf(false);
}

TEST(JsonSchema, PropertiesKeepTheSchemasOrder) {
  const std::string grammar =
      compile_ok(R"({"type":"object","properties":{"zeta":{"type":"null"},"alpha":{"type":"null"}},"required":["zeta","alpha"]})");
  const size_t zeta = grammar.find("zeta\\\"");
  const size_t alpha = grammar.find("alpha\\\"");
  ASSERT_NE(zeta, std::string::npos);
  ASSERT_NE(alpha, std::string::npos);
  EXPECT_LT(zeta, alpha) << grammar;
}

TEST(JsonSchema, ManyOptionalPropertiesStayLinear) {
  std::string schema = R"({"type":"object","additionalProperties":false,"properties":{)";
  for (int i = 0; i < 200; ++i) schema += (i ? "," : "") + std::string("\"p") + std::to_string(i) + "\":{\"type\":\"boolean\"}";
  schema += "}}";
  const std::string grammar = compile_ok(schema);
  EXPECT_LT(grammar.size(), 200u * 400) << "optional members must not multiply";
  expect_well_formed(grammar, "");
}

TEST(JsonSchema, RecursiveReferencesBecomeRecursiveRules) {
  const std::string grammar = compile_ok(R"({"$ref":"#/$defs/tree","$defs":{"tree":{"type":"object","properties":{
    "children":{"type":"array","items":{"$ref":"#/$defs/tree"}}},"additionalProperties":false}}})");
  expect_well_formed(grammar, "");
  EXPECT_NE(grammar.find("root ::= defs-tree\n"), std::string::npos) << grammar;
}

TEST(JsonSchema, InvalidJsonNamesTheByte) {
  EXPECT_EQ(compile_error(R"({"type": })"), "schema: invalid JSON at byte 9");
  EXPECT_EQ(compile_error(""), "schema: invalid JSON at byte 0");
  EXPECT_EQ(compile_error(R"({"maxLength":1)" + std::string(400, '0') + "}"), "schema: a number in the JSON is too large to represent");
}

TEST(JsonSchema, ErrorsNameThePointerOfTheKeyword) {
  EXPECT_EQ(compile_error(R"({"type":"object","properties":{"age":{"type":"int"}}})"),
            "schema: /properties/age/type: unknown type 'int'");
  EXPECT_EQ(compile_error(R"({"type":["string","float"]})"), "schema: /type/1: unknown type 'float'");
  EXPECT_EQ(compile_error(R"({"type":"string","maxLenght":3})"), "schema: /maxLenght: unknown keyword 'maxLenght'");
  EXPECT_EQ(compile_error(R"({"not":{"type":"string"}})"), "schema: /not: keyword 'not' is not supported");
  EXPECT_EQ(compile_error(R"({"type":"array","uniqueItems":true})"), "schema: /uniqueItems: keyword 'uniqueItems' is not supported");
  EXPECT_EQ(compile_error(R"({"type":"number","multipleOf":2})"), "schema: /multipleOf: keyword 'multipleOf' is not supported");
  EXPECT_EQ(compile_error(R"({"type":"object","properties":{"a/b":{"type":"object","patternProperties":{}}}})"),
            "schema: /properties/a~1b/patternProperties: keyword 'patternProperties' is not supported");
  EXPECT_EQ(compile_error(R"({"$id":"https://example.com/a","anyOf":[{"$id":"b","type":"null"}]})"),
            "schema: /anyOf/0/$id: $id inside a subschema is not supported");
  EXPECT_EQ(compile_error("[1]"), "schema: (root): a schema must be an object or a boolean");
  EXPECT_EQ(compile_error("false"), "schema: (root): the schema false admits no value");
}

TEST(JsonSchema, RefusesWhatItCannotIntersect) {
  EXPECT_EQ(compile_error(R"({"type":"string","anyOf":[{"maxLength":2},{"minLength":5}]})"),
            "schema: /type: 'type' beside 'anyOf' is not supported");
  EXPECT_EQ(compile_error(R"({"$ref":"#/$defs/a","maxLength":3,"$defs":{"a":{"type":"string"}}})"),
            "schema: /maxLength: 'maxLength' beside '$ref' is not supported");
  EXPECT_EQ(compile_error(R"({"allOf":[{"type":"string"},{"maxLength":3}]})"),
            "schema: /allOf: allOf with more than one schema is not supported");
  EXPECT_EQ(compile_error(R"({"enum":["a","bbbb"],"maxLength":3})"), "schema: /maxLength: 'maxLength' beside 'enum' is not supported");
  EXPECT_EQ(compile_error(R"({"type":"string","pattern":"^a+$","maxLength":3})"),
            "schema: /maxLength: 'maxLength' beside 'pattern' is not supported");
  EXPECT_EQ(compile_error(R"({"type":"string","format":"uri"})"),
            "schema: /format: format 'uri' is not supported (supported: date, time, date-time, uuid, email)");
}

TEST(JsonSchema, OneOfOnlyWhenTheBranchesCannotOverlap) {
  compile_ok(R"({"oneOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]})");
  compile_ok(R"({"oneOf":[
    {"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number"}},"required":["kind","r"]},
    {"type":"object","properties":{"kind":{"enum":["square","box"]},"side":{"type":"number"}},"required":["kind","side"]}]})");
  EXPECT_EQ(compile_error(R"({"oneOf":[{"type":"number"},{"type":"integer"}]})"),
            "schema: /oneOf: oneOf branches 0 and 1 may match the same value (only branches of different types, or objects "
            "told apart by a required const/enum property, are supported); use anyOf");
  compile_error(R"({"oneOf":[{"type":"object","properties":{"a":{"const":1}}},{"type":"object","properties":{"a":{"const":2}}}]})");
}

TEST(JsonSchema, RefCyclesThatProduceNothingAreRefused) {
  EXPECT_EQ(compile_error(R"({"$ref":"#"})"),
            "schema: (root): the schema refers to itself through $ref without any JSON in between, so it describes no value");
  EXPECT_NE(compile_error(R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"anyOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"})")
                .find("refers to itself"),
            std::string::npos);
  EXPECT_EQ(compile_error(R"({"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"]})"),
            "schema: (root): no finite JSON value satisfies this schema (it requires itself through $ref)");
  // The same recursion with a way out is fine.
  compile_ok(R"({"type":"object","properties":{"a":{"$ref":"#"}}})");
  compile_ok(R"({"anyOf":[{"type":"null"},{"type":"array","items":{"$ref":"#"},"minItems":1}]})");
  EXPECT_EQ(compile_error(R"({"$ref":"#/$defs/missing"})"),
            "schema: /$ref: '#/$defs/missing' does not resolve to a schema in this document");
  EXPECT_EQ(compile_error(R"({"$ref":"https://example.com/s.json"})"),
            "schema: /$ref: only references inside the schema (#/...) are supported, not 'https://example.com/s.json'");
}

TEST(JsonSchema, PatternsRefuseWhatRegularGrammarsCannotSay) {
  EXPECT_EQ(compile_error(R"({"type":"string","pattern":"(a)\\1"})"), "schema: /pattern: at character 5: backreferences are not supported");
  EXPECT_EQ(compile_error(R"js({"type":"string","pattern":"a(?=b)"})js"),
            "schema: /pattern: at character 2: lookahead and lookbehind assertions are not supported");
  EXPECT_EQ(compile_error(R"({"type":"string","pattern":"\\bword"})"),
            "schema: /pattern: at character 2: word boundaries (\\b) are not supported");
  EXPECT_EQ(compile_error(R"({"type":"string","pattern":"a^b"})"),
            "schema: /pattern: at character 1: '^' is supported only at the start of the pattern or of a top-level alternative");
  EXPECT_EQ(compile_error(R"({"type":"string","pattern":"(a"})"), "schema: /pattern: at character 2: missing ')'");
  EXPECT_EQ(compile_error(R"({"type":"string","pattern":"a{2000}"})"),
            "schema: /pattern: at character 7: repetition count above 1024 is not supported");
  EXPECT_NE(compile_error(R"({"type":"string","pattern":"((a{1000}){1000}){1000}"})").find("too large"), std::string::npos);
  compile_ok(R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3,4}(\\.[a-z]+)?$"})");
  compile_ok(R"({"type":"string","pattern":"x|^y$|(?:z)*"})");
}

TEST(JsonSchema, BoundsThatAdmitNothingAreRefused) {
  EXPECT_EQ(compile_error(R"({"type":"string","minLength":5,"maxLength":2})"), "schema: /maxLength: maxLength is less than minLength");
  EXPECT_EQ(compile_error(R"({"type":"string","maxLength":100000})"), "schema: /maxLength: maxLength above 1024 is not supported");
  EXPECT_EQ(compile_error(R"({"type":"array","minItems":3,"maxItems":1})"), "schema: /minItems: minItems is more than the items allowed");
  EXPECT_EQ(compile_error(R"({"type":"array","prefixItems":[{"type":"null"}],"items":false,"minItems":2})"),
            "schema: /minItems: minItems is more than the items allowed");
  EXPECT_EQ(compile_error(R"({"type":"integer","minimum":5,"maximum":4})"),
            "schema: /maximum: no integer of at most 16 digits lies within the bounds");
  EXPECT_EQ(compile_error(R"({"type":"integer","exclusiveMinimum":true})"),
            "schema: /exclusiveMinimum: exclusiveMinimum as a boolean (draft 4) is not supported; give the bound as a number");
  EXPECT_EQ(compile_error(R"({"type":"number","minimum":0.5})"),
            "schema: /minimum: a number's bounds must be integers (fractional bounds are not supported)");
  EXPECT_EQ(compile_error(R"({"type":"object","properties":{},"required":["a"],"additionalProperties":false})"),
            "schema: /required: required property 'a' is not in properties and additional properties are not allowed");
  EXPECT_EQ(compile_error(R"({"enum":[]})"), "schema: /enum: enum must be a non-empty array");
  EXPECT_EQ(compile_error(R"({"type":"string","enum":[1,2]})"), "schema: /enum: no value has the schema's type");
}

TEST(JsonSchema, PathologicalSchemasAreBounded) {
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += R"({"type":"array","items":)";
  deep += "{}";
  for (int i = 0; i < 100; ++i) deep += "}";
  EXPECT_EQ(compile_error(deep), "schema: JSON nested deeper than 64 levels");
  std::string huge_enum = R"({"enum":[)";
  for (int i = 0; i < 2000; ++i) huge_enum += (i ? "," : "") + std::to_string(i);
  huge_enum += "]}";
  EXPECT_EQ(compile_error(huge_enum), "schema: /enum: enum has more than 1024 values");
  // A long chain of references: each hop is a rule, compiled once.
  std::string chain = R"({"$ref":"#/$defs/d0","$defs":{)";
  for (int i = 0; i < 300; ++i) chain += (i ? "," : "") + std::string("\"d") + std::to_string(i) + "\":{\"$ref\":\"#/$defs/d" + std::to_string(i + 1) + "\"}";
  chain += R"(,"d300":{"type":"null"}}})";
  EXPECT_NE(compile_error(chain).find("nested too deeply"), std::string::npos);
  // oneOf's proof that branches are apart follows references, and stops early rather than multiplying.
  std::string branches;
  for (int i = 0; i < 40; ++i) branches += (i ? "," : "") + std::string(R"({"$ref":"#"})");
  EXPECT_NE(compile_error(R"({"oneOf":[{"type":"string"},{"anyOf":[)" + branches + "]}]}").find("may match the same value"),
            std::string::npos);
  // Repetitions a GBNF reader would expand into too many rules.
  std::string long_strings = R"({"type":"object","properties":{)";
  for (int i = 0; i < 60; ++i) long_strings += (i ? "," : "") + std::string("\"s") + std::to_string(i) + "\":{\"maxLength\":1000}";
  long_strings += "}}";
  EXPECT_EQ(compile_error(long_strings),
            "schema: (root): the grammar would be too large (its groups and repetitions expand past 50000 rules)");
  EXPECT_EQ(json_schema_to_gbnf("{}", "bad prefix").status().message(),
            "schema: rule prefix 'bad prefix' may hold only letters, digits and '-'");
}

// ---- grammars run through the matcher -------------------------------------------------------------------

using OrderedJson = nlohmann::ordered_json;

using testing::byte_tokens;
constexpr int32_t kEndToken = 256;

std::shared_ptr<const Grammar> schema_grammar(const std::string& schema) {
  auto gbnf = json_schema_to_gbnf(schema, "s-");
  EXPECT_TRUE(gbnf.is_ok()) << schema << ": " << (gbnf.is_ok() ? "" : gbnf.status().message());
  if (!gbnf.is_ok()) return nullptr;
  auto grammar = parse_gbnf(gbnf.value(), "s-root");
  EXPECT_TRUE(grammar.is_ok()) << gbnf.value() << (grammar.is_ok() ? "" : grammar.status().message());
  return grammar.is_ok() ? grammar.value() : nullptr;
}

bool matches(const std::shared_ptr<const Grammar>& grammar, const std::string& text) {
  GrammarMatcher matcher(grammar, byte_tokens());
  for (char c : text) {
    if (!matcher.accept(static_cast<uint8_t>(c)).is_ok()) return false;
  }
  return matcher.can_end();
}

struct Fixture {
  std::string file;
  OrderedJson json;
};

std::vector<Fixture> schema_fixtures() {
  std::vector<Fixture> fixtures;
  for (const auto& entry : std::filesystem::directory_iterator(PAGEDLM_SCHEMA_FIXTURES_DIR)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    fixtures.push_back({entry.path().filename().string(), OrderedJson::parse(in)});
  }
  std::sort(fixtures.begin(), fixtures.end(), [](const Fixture& a, const Fixture& b) { return a.file < b.file; });
  return fixtures;
}

TEST(JsonSchemaGrammar, FixtureCorpusAcceptsValidAndRefusesInvalidInstances) {
  const auto fixtures = schema_fixtures();
  ASSERT_GE(fixtures.size(), 15u);
  for (const Fixture& fixture : fixtures) {
    SCOPED_TRACE(fixture.file);
    const auto grammar = schema_grammar(fixture.json["schema"].dump());
    ASSERT_NE(grammar, nullptr);
    for (const OrderedJson& instance : fixture.json["valid"]) {
      EXPECT_TRUE(matches(grammar, instance.dump())) << "valid, refused: " << instance.dump();
      EXPECT_TRUE(matches(grammar, instance.dump(2))) << "valid, refused: " << instance.dump(2);
    }
    for (const OrderedJson& instance : fixture.json["invalid"]) {
      EXPECT_FALSE(matches(grammar, instance.dump())) << "invalid, accepted: " << instance.dump();
      EXPECT_FALSE(matches(grammar, instance.dump(2))) << "invalid, accepted: " << instance.dump(2);
    }
  }
}

// Walks of random allowed bytes: the mask is never empty before the grammar may end (no dead ends), and every
// walk that ends is JSON.
TEST(JsonSchemaGrammar, RandomWalksNeverDeadEndAndEndAsJson) {
  std::mt19937 rng(24);
  TokenMask mask;
  for (const Fixture& fixture : schema_fixtures()) {
    SCOPED_TRACE(fixture.file);
    const auto grammar = schema_grammar(fixture.json["schema"].dump());
    ASSERT_NE(grammar, nullptr);
    for (int walk = 0; walk < 10; ++walk) {
      GrammarMatcher matcher(grammar, byte_tokens());
      std::string text;
      bool ended = false;
      for (int step = 0; step < 3000 && !ended; ++step) {
        matcher.fill_mask(mask);
        std::vector<int32_t> allowed;
        for (int32_t t = 0; t <= kEndToken; ++t) {
          if (mask_allows(mask, t)) allowed.push_back(t);
        }
        ASSERT_FALSE(allowed.empty()) << "dead end after " << text;
        // Favour ending and closing so that walks finish.
        const int32_t token = mask_allows(mask, kEndToken) && rng() % 4 == 0 ? kEndToken : allowed[rng() % allowed.size()];
        if (token == kEndToken) {
          ended = true;
          break;
        }
        ASSERT_TRUE(matcher.accept(token).is_ok());
        text += static_cast<char>(token);
        if (matcher.must_end()) ended = true;
      }
      if (ended) EXPECT_TRUE(OrderedJson::accept(text)) << text;
    }
  }
}

TEST(JsonSchemaGrammar, AnyJsonValue) {
  const auto value = parse_gbnf(json_value_gbnf(false));
  const auto object = parse_gbnf(json_value_gbnf(true));
  ASSERT_TRUE(value.is_ok() && object.is_ok());
  for (const char* text : {"1", "-0.5e+3", "\"x\\u00e9\"", "[1, {\"a\": [true, null]}]", "{}", "{\n  \"k\": \"v\"\n}"}) {
    EXPECT_TRUE(matches(value.value(), text)) << text;
  }
  EXPECT_TRUE(matches(object.value(), "{\"a\":{\"b\":[]}}"));
  for (const char* text : {"[1]", "\"x\"", "01", "{\"a\":1,}", "[1 2]", "{\"a\" :1}", "{} ", " {}", "{\"a\":\"\n\"}"}) {
    EXPECT_FALSE(matches(object.value(), text)) << text;
  }
}

TEST(JsonSchemaGrammar, OptionalTuplePositionsAndOpenItems) {
  const auto grammar = schema_grammar(
      R"({"type":"array","prefixItems":[{"type":"integer"},{"type":"string","maxLength":2},{"type":"boolean"}],"items":{"type":"null"},"maxItems":5})");
  ASSERT_NE(grammar, nullptr);
  for (const char* ok : {"[]", "[1]", "[1,\"ab\"]", "[1,\"\",true]", "[1,\"\",true,null]", "[1,\"\",false,null,null]"}) {
    EXPECT_TRUE(matches(grammar, ok)) << ok;
  }
  for (const char* bad : {"[\"a\"]", "[1,2]", "[1,\"abc\"]", "[1,\"\",true,1]", "[1,\"\",true,null,null,null]", "[null]"}) {
    EXPECT_FALSE(matches(grammar, bad)) << bad;
  }
}

TEST(JsonSchemaGrammar, AdditionalKeysNeverRepeatADeclaredOne) {
  const auto grammar = schema_grammar(
      R"({"type":"object","properties":{"ab":{"type":"integer"},"abc":{"type":"integer"},"x":{"type":"integer"}},"additionalProperties":{"type":"null"}})");
  ASSERT_NE(grammar, nullptr);
  for (const char* ok : {"{}", "{\"ab\":1}", "{\"a\":null}", "{\"abcd\":null}", "{\"\":null}", "{\"ab\":1,\"y\":null,\"xx\":null}", "{\"b\":null}"}) {
    EXPECT_TRUE(matches(grammar, ok)) << ok;
  }
  for (const char* bad : {"{\"ab\":null}", "{\"abc\":null}", "{\"x\":null}", "{\"y\":1}"}) EXPECT_FALSE(matches(grammar, bad)) << bad;
}

TEST(JsonSchemaGrammar, PatternsMatchTheDecodedStringAsValidatorsSearch) {
  struct Case {
    const char* pattern;
    std::vector<const char*> ok;
    std::vector<const char*> bad;
  };
  const std::vector<Case> cases = {
      {"ab", {"ab", "xaby", "\\\"ab"}, {"a", "ba", ""}},
      {"^a.c$", {"abc", "a\\\"c", "a\\\\c", "aéc"}, {"a\\nc", "abcd", "ac"}},
      {"^[^a-c]{2}$", {"dd", "\\\"\\n", "é\\t"}, {"ad", "d", "ddd"}},
      {"^(\\d+|none)$", {"0", "123", "none"}, {"", "12a", "nonee"}},
      {"^\\s?x\\S*$", {"x", " x", "\\tx", "xyz"}, {"  x", "x y"}},
      {"^[\\w.-]+@[a-z]+\\.(com|org)$", {"a.b-c@site.com", "_@x.org"}, {"@site.com", "a@site.net", "a@Site.com"}},
      {"^\\u00e9\\x41\\/$", {"éA/", "éA\\/"}, {"eA/"}},
      {"^a{2,3}b?$", {"aa", "aaa", "aab", "aaab"}, {"a", "aaaa", "aabb"}},
  };
  for (const Case& c : cases) {
    const std::string schema = OrderedJson{{"type", "string"}, {"pattern", c.pattern}}.dump();
    const auto grammar = schema_grammar(schema);
    ASSERT_NE(grammar, nullptr) << schema;
    for (const char* ok : c.ok) EXPECT_TRUE(matches(grammar, "\"" + std::string(ok) + "\"")) << c.pattern << " on " << ok;
    for (const char* bad : c.bad) EXPECT_FALSE(matches(grammar, "\"" + std::string(bad) + "\"")) << c.pattern << " on " << bad;
  }
}

TEST(JsonSchemaGrammar, NumbersStayJsonAndWithinBounds) {
  const auto number = schema_grammar(R"({"type":"number"})");
  for (const char* ok : {"0", "-0", "1.5", "-12e3", "1E-7", "0.000", "9999999999999999"}) EXPECT_TRUE(matches(number, ok)) << ok;
  for (const char* bad : {"01", "1.", ".5", "+1", "1e", "--1", "99999999999999999", "NaN", "1e400"}) EXPECT_FALSE(matches(number, bad)) << bad;
  const auto ranged = schema_grammar(R"({"type":"number","exclusiveMinimum":-2,"maximum":3})");
  for (const char* ok : {"-1.999", "-0.5", "0", "2.75", "3", "3.000", "-1"}) EXPECT_TRUE(matches(ranged, ok)) << ok;
  for (const char* bad : {"-2", "-2.0", "-2.5", "3.01", "4", "-0", "1e2"}) EXPECT_FALSE(matches(ranged, bad)) << bad;
  const auto int32 = schema_grammar(R"({"type":"integer","format":"int32"})");
  EXPECT_TRUE(matches(int32, "-2147483648"));
  EXPECT_TRUE(matches(int32, "2147483647"));
  EXPECT_FALSE(matches(int32, "2147483648"));
  EXPECT_FALSE(matches(int32, "-2147483649"));
  EXPECT_EQ(compile_error(R"({"type":"number","format":"int32"})"),
            "schema: /format: format 'int32' is not supported on a number (supported: int32, int64 on integers; float, double)");
  const auto integer = schema_grammar(R"({"type":"integer","minimum":-105,"exclusiveMaximum":2000})");
  std::set<int> accepted;
  for (int v = -300; v <= 2300; ++v) {
    if (matches(integer, std::to_string(v))) accepted.insert(v);
  }
  EXPECT_EQ(accepted.size(), 2105u);
  EXPECT_EQ(*accepted.begin(), -105);
  EXPECT_EQ(*accepted.rbegin(), 1999);
  EXPECT_FALSE(matches(integer, "007"));
}

TEST(JsonSchemaGrammar, StringLengthsCountCodePoints) {
  const auto grammar = schema_grammar(R"({"type":"string","minLength":2,"maxLength":3})");
  for (const char* ok : {"\"ab\"", "\"日本語\"", "\"\\n\\u0041\"", "\"a😀\""}) EXPECT_TRUE(matches(grammar, ok)) << ok;
  for (const char* bad : {"\"a\"", "\"abcd\"", "\"\\ud83d\\ude00\"", "\"a\nb\""}) EXPECT_FALSE(matches(grammar, bad)) << bad;
}

TEST(JsonSchemaGrammar, WhitespaceIsBoundedAndNeverTrails) {
  const auto grammar = schema_grammar(R"({"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"}}},"required":["a"]})");
  EXPECT_TRUE(matches(grammar, "{\n  \"a\": [\n    1,\n    2\n  ]\n}"));
  EXPECT_TRUE(matches(grammar, "{ \"a\": [ 1, 2 ] }"));
  EXPECT_FALSE(matches(grammar, "{  \"a\":[]}"));
  EXPECT_FALSE(matches(grammar, "{\"a\" : []}"));
  EXPECT_FALSE(matches(grammar, "{\"a\":[]} "));
  EXPECT_FALSE(matches(grammar, "{\"a\":[1 ,2]}"));
  GrammarMatcher matcher(grammar, byte_tokens());
  for (char c : std::string("{\"a\":[]}")) ASSERT_TRUE(matcher.accept(static_cast<uint8_t>(c)).is_ok());
  EXPECT_TRUE(matcher.must_end());
}

}  // namespace
}  // namespace pagedlm::grammar
