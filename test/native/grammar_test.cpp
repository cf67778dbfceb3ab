// GBNF parsing, the matcher's accept/allows/can_end/must_end, and masks checked against accepting every token
// one by one on copies of the matcher.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "grammar/gbnf.h"
#include "grammar/grammar.h"
#include "support/byte_tokens.h"

namespace pagedlm::grammar {
namespace {

const char* kJson = R"GBNF(
root   ::= ws value ws
value  ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( ws "," ws member )* ws )? "}"
member ::= string ws ":" ws value
array  ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
string ::= "\"" char* "\""
char   ::= [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws     ::= [ \t\n]*
)GBNF";

const char* kArithmetic = R"GBNF(
# expressions with right recursion
root   ::= expr
expr   ::= term ( [-+] term )*
term   ::= factor ( [*/] factor )*
factor ::= number | "(" expr ")" | "-" factor
number ::= [0-9]+
)GBNF";

std::shared_ptr<const Grammar> parse(const std::string& text) {
  auto result = parse_gbnf(text);
  EXPECT_TRUE(result.is_ok()) << result.status().message();
  return result.is_ok() ? result.value() : nullptr;
}

std::string parse_error(const std::string& text) {
  auto result = parse_gbnf(text);
  EXPECT_FALSE(result.is_ok()) << text;
  if (result.is_ok()) return "";
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument);
  return result.status().message();
}

using testing::byte_tokens;

bool accepts_prefix(const std::shared_ptr<const Grammar>& grammar, const std::string& text, GrammarMatcher* out = nullptr) {
  GrammarMatcher matcher(grammar, byte_tokens());
  for (char c : text) {
    if (!matcher.accept(static_cast<uint8_t>(c)).is_ok()) return false;
  }
  if (out) *out = matcher;
  return true;
}

bool matches(const std::shared_ptr<const Grammar>& grammar, const std::string& text) {
  GrammarMatcher matcher(grammar, byte_tokens());
  return accepts_prefix(grammar, text, &matcher) && matcher.can_end();
}

TEST(GbnfParse, ReportsLineAndColumn) {
  EXPECT_EQ(parse_error("root ::= value\nvalue ::= \"a\" valu"), "grammar: line 2, column 15: undefined rule 'valu'");
  EXPECT_EQ(parse_error("start ::= \"a\""), "grammar: line 1, column 1: no rule named 'root' (the start rule)");
  EXPECT_NE(parse_error("root ::= \"abc").find("line 1, column 10: unterminated string"), std::string::npos);
  EXPECT_NE(parse_error("root ::=\n  \"a\\q\"").find("line 2, column 5: unknown escape '\\q'"), std::string::npos);
  EXPECT_NE(parse_error("root ::= []").find("line 1, column 10: empty character class"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [^\\x00-\\U0010FFFF]").find("empty character class"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [a-z").find("unterminated character class"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [z-a]").find("backwards"), std::string::npos);
  EXPECT_NE(parse_error("root ::= (\"a\"").find("missing ')'"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\")").find("unexpected ')'"), std::string::npos);
  EXPECT_NE(parse_error("root ::= * \"a\"").find("nothing to repeat"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\"{3,1}").find("backwards"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"\\x4\"").find("needs 2 hexadecimal digits"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"\\U00110000\"").find("past U+10FFFF"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\"\nroot ::= \"b\"").find("line 2, column 1: rule 'root' is defined twice"),
            std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\" ::=").find("unexpected ':'"), std::string::npos);
  EXPECT_NE(parse_error("root = \"a\"").find("expected '::='"), std::string::npos);
  EXPECT_NE(parse_error(std::string("root ::= \"\xff\"")).find("invalid UTF-8"), std::string::npos);
  EXPECT_EQ(parse_error("root ::= \xc3\xa9"), "grammar: line 1, column 10: unexpected byte 0xC3");
}

TEST(GbnfParse, RefusesLeftRecursion) {
  EXPECT_NE(parse_error("root ::= root \"a\" | \"b\"").find("line 1, column 1: rule 'root' is left-recursive"),
            std::string::npos);
  // Indirect, and through a prefix that can match empty text.
  const std::string indirect = parse_error("root ::= a\na ::= b \"x\"\nb ::= opt a | \"y\"\nopt ::= \"z\"?");
  EXPECT_NE(indirect.find("left-recursive"), std::string::npos) << indirect;
  EXPECT_NE(parse_error("root ::= (\"a\"?)*").find("repeats an expression that can match empty text"),
            std::string::npos);
  // Right recursion and recursion behind a character are fine.
  EXPECT_TRUE(parse_gbnf("root ::= \"a\" root | \"\"").is_ok());
  EXPECT_TRUE(parse_gbnf("root ::= \"(\" root \")\" | \"x\"").is_ok());
}

TEST(GbnfParse, BoundsPathologicalInput) {
  const auto started = std::chrono::steady_clock::now();
  EXPECT_NE(parse_error("root ::= \"a\"{0,100000}").find("larger than"), std::string::npos);
  EXPECT_NE(parse_error("root ::= " + std::string(100000, '(') + "\"a\"" + std::string(100000, ')'))
                .find("nested deeper than"),
            std::string::npos);
  std::string many_rules = "root ::=", many_elements = "root ::=";
  for (int i = 0; i < 7; ++i) many_rules += " \"a\"{0,10000}";
  for (int i = 0; i < 120; ++i) many_elements += " \"a\"{10000}";
  EXPECT_NE(parse_error(many_rules).find("rules after expanding"), std::string::npos);
  EXPECT_NE(parse_error(many_elements).find("elements after expanding"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"" + std::string(kMaxTextBytes, 'a') + "\"").find("longer than"),
            std::string::npos);
  // A large alternation parses and matches in bounded time.
  std::string words = "root ::= \"w0\"";
  for (int i = 1; i < 10000; ++i) words += " | \"w" + std::to_string(i) + "\"";
  auto grammar = parse(words);
  ASSERT_TRUE(grammar);
  EXPECT_TRUE(matches(grammar, "w9999"));
  EXPECT_FALSE(matches(grammar, "w10000"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
}

TEST(GbnfParse, SyntaxOfLlamaCppGrammars) {
  auto grammar = parse(R"(
root ::= item-list   # comment after a rule
item-list ::=
    "[" (
      item ("," item)*
    )? "]"
  | "none"
item ::= [a-zA-Z_] [a-zA-Z_0-9\-]* | "\u00e9\x41\t" | .
)");
  ASSERT_TRUE(grammar);
  EXPECT_TRUE(matches(grammar, "[a,b_1,x-y]"));
  EXPECT_TRUE(matches(grammar, "[]"));
  EXPECT_TRUE(matches(grammar, "none"));
  EXPECT_TRUE(matches(grammar, "[\xc3\xa9\x41\t]"));
  EXPECT_TRUE(matches(grammar, "[\xe2\x82\xac]"));  // . is any character
  EXPECT_FALSE(matches(grammar, "[a,]"));
  EXPECT_FALSE(matches(grammar, "[1a]"));
}

TEST(GrammarMatcher, ArithmeticAndJson) {
  auto arithmetic = parse(kArithmetic);
  ASSERT_TRUE(arithmetic);
  for (const char* ok : {"1", "1+2*3", "(1+2)*-3", "((4))/2-1"}) EXPECT_TRUE(matches(arithmetic, ok)) << ok;
  for (const char* bad : {"", "1+", "(1", "1)", "a", "1++2"}) EXPECT_FALSE(matches(arithmetic, bad)) << bad;

  auto json = parse(kJson);
  ASSERT_TRUE(json);
  for (const char* ok : {"{}", " [1, 2.5e-3, -0, true, null] ", R"({"a": {"b": ["x\n\u00e9", {}]}})",
                         "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""}) {
    EXPECT_TRUE(matches(json, ok)) << ok;
  }
  for (const char* bad : {"{", "[1,]", "01", "\"a", "{\"a\" 1}", "tru", "\"\\x\"", "\"a\x01\""}) {
    EXPECT_FALSE(matches(json, bad)) << bad;
  }
}

TEST(GrammarMatcher, RepetitionBoundsAndClasses) {
  auto grammar = parse("root ::= [a-c]{2} \"-\" [0-9]{1,3} \"-\" \"x\"{2,} \"-\" [^a-z\\n]?");
  ASSERT_TRUE(grammar);
  EXPECT_TRUE(matches(grammar, "ab-1-xx-"));
  EXPECT_TRUE(matches(grammar, "cc-123-xxxxx-Z"));
  EXPECT_TRUE(matches(grammar, "aa-9-xx-\xe6\x97\xa5"));
  EXPECT_FALSE(matches(grammar, "a-1-xx-"));
  EXPECT_FALSE(matches(grammar, "abc-1-xx-"));
  EXPECT_FALSE(matches(grammar, "ab-1234-xx-"));
  EXPECT_FALSE(matches(grammar, "ab-1-x-"));
  EXPECT_FALSE(matches(grammar, "ab-1-xx-q"));
  EXPECT_FALSE(matches(grammar, "ab-1-xx-\n"));
  auto upto = parse("root ::= \"ab\"{,2} \"c\"{3}");
  ASSERT_TRUE(upto);
  EXPECT_TRUE(matches(upto, "ccc"));
  EXPECT_TRUE(matches(upto, "ababccc"));
  EXPECT_FALSE(matches(upto, "abababccc"));
  EXPECT_FALSE(matches(upto, "acc"));
}

TEST(GrammarMatcher, UnicodeClassesAndPartialCharacters) {
  auto grammar = parse("root ::= [\\u00e0-\\u00ff] [\\U0001F600-\\U0001F64F] \"\xe2\x82\xac\"");
  ASSERT_TRUE(grammar);
  EXPECT_TRUE(matches(grammar, "\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac"));
  EXPECT_FALSE(matches(grammar, "e\xf0\x9f\x98\x80\xe2\x82\xac"));
  // A partial character is allowed only when it can still become an allowed character.
  EXPECT_TRUE(accepts_prefix(grammar, "\xc3"));
  EXPECT_FALSE(accepts_prefix(grammar, "\xc2"));    // U+0080..U+00BF: none in the class
  EXPECT_FALSE(accepts_prefix(grammar, "\xc3\xa9\xf0\x9f\x99\x90"));  // U+1F650: past the range
  EXPECT_TRUE(accepts_prefix(grammar, "\xc3\xa9\xf0\x9f\x99"));
  GrammarMatcher partial(grammar, byte_tokens());
  ASSERT_TRUE(partial.accept(0xc3).is_ok());
  EXPECT_FALSE(partial.can_end());
  // Invalid UTF-8 is never allowed, even where the grammar takes any character.
  auto any = parse("root ::= .*");
  ASSERT_TRUE(any);
  for (const char* bad : {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90", "\x80", "\xe0\x80"}) {
    EXPECT_FALSE(accepts_prefix(any, bad)) << bad;
  }
  EXPECT_TRUE(matches(any, "\xf4\x8f\xbf\xbf"));
}

TEST(GrammarMatcher, CanEndMustEndAndEndTokens) {
  auto grammar = parse("root ::= \"a\" \"b\"?");
  ASSERT_TRUE(grammar);
  GrammarMatcher matcher(grammar, byte_tokens());
  EXPECT_FALSE(matcher.can_end());
  EXPECT_FALSE(matcher.allows(256));
  ASSERT_TRUE(matcher.accept('a').is_ok());
  EXPECT_TRUE(matcher.can_end());
  EXPECT_FALSE(matcher.must_end());
  EXPECT_TRUE(matcher.allows(256));
  ASSERT_TRUE(matcher.accept('b').is_ok());
  EXPECT_TRUE(matcher.must_end());
  EXPECT_FALSE(matcher.allows('b'));
  EXPECT_FALSE(matcher.accept('b').is_ok());
  EXPECT_TRUE(matcher.must_end());  // a refused token leaves the state as it was
  ASSERT_TRUE(matcher.accept(256).is_ok());
  EXPECT_TRUE(matcher.must_end());
  EXPECT_FALSE(matcher.allows(-1));
  EXPECT_FALSE(matcher.allows(257));
}

TEST(GrammarMatcher, CopiesAreIndependent) {
  auto grammar = parse("root ::= \"ab\" | \"ac\"");
  ASSERT_TRUE(grammar);
  GrammarMatcher first(grammar, byte_tokens());
  ASSERT_TRUE(first.accept('a').is_ok());
  GrammarMatcher second(first);
  ASSERT_TRUE(first.accept('b').is_ok());
  EXPECT_TRUE(second.allows('b'));
  ASSERT_TRUE(second.accept('c').is_ok());
  EXPECT_TRUE(first.can_end());
  EXPECT_TRUE(second.can_end());
  GrammarMatcher third(grammar, byte_tokens());
  third = second;
  EXPECT_TRUE(third.must_end());
}


// Tokens that split characters, span several terminals, are invalid UTF-8, empty or control tokens.
std::shared_ptr<const TokenIndex> mixed_tokens() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  for (const char* piece :
       {"{\"", "\":", "\", \"", "true", "tr", "ue,", "\xc3\xa9", "\xc3", "\xa9\"", "\xe2\x82", "\xac", "\xe2\x82\xac",
        "\xf0\x9f\x98\x80", "\xf0\x9f", "\x98\x80\"", "\xed\xa0\x80", "\xc0\x80", "123", "1.5e", "-0", "  ", "\n",
        "[1,", "]}", "\\u00", "e9\"", "null", "nul", "\"a\":{\"b\":[", "a\xc3", "\xa9\xe2\x82", "(1+", "2)*", "w1",
        "w19", "ab", "ba", "\xc3\xa9\xc3", "x", "x"}) {
    bytes.emplace_back(piece);
  }
  const int32_t text_count = static_cast<int32_t>(bytes.size());
  bytes.emplace_back("");          // empty piece
  bytes.emplace_back("<|ctl|>");   // control token
  bytes.emplace_back("</s>");      // end token
  std::vector<bool> is_text(bytes.size(), true);
  is_text[static_cast<size_t>(text_count) + 1] = false;
  is_text[static_cast<size_t>(text_count) + 2] = false;
  return std::make_shared<const TokenIndex>(bytes, is_text, std::vector<int32_t>{text_count + 2});
}

// Compares fill_mask and allows with accepting each token on a copy, along random walks of allowed tokens.
void check_masks_on_random_walks(const std::shared_ptr<const Grammar>& grammar,
                                 const std::shared_ptr<const TokenIndex>& tokens, uint32_t seed, int walks,
                                 int steps) {
  std::mt19937 random(seed);
  for (int walk = 0; walk < walks; ++walk) {
    GrammarMatcher matcher(grammar, tokens);
    for (int step = 0; step < steps; ++step) {
      TokenMask mask;
      matcher.fill_mask(mask);
      ASSERT_EQ(mask.size(), (static_cast<size_t>(tokens->vocab_size()) + 63) / 64);
      std::vector<int32_t> allowed;
      for (int32_t t = 0; t < tokens->vocab_size(); ++t) {
        GrammarMatcher copy(matcher);
        const bool accepted = copy.accept(t).is_ok();
        ASSERT_EQ(mask_allows(mask, t), accepted) << "token " << t << " step " << step << " seed " << seed;
        ASSERT_EQ(matcher.allows(t), accepted) << "token " << t;
        if (accepted) allowed.push_back(t);
      }
      TokenMask again;
      matcher.fill_mask(again);  // from the cache
      ASSERT_EQ(again, mask);
      if (allowed.empty() || matcher.must_end()) break;
      ASSERT_TRUE(matcher.accept(allowed[random() % allowed.size()]).is_ok());
    }
  }
}

TEST(GrammarMask, AgreesWithAcceptingEachToken) {
  auto tokens = mixed_tokens();
  for (const char* text : {kJson, kArithmetic, "root ::= [\\u00e0-\\u00ff]+ \"\xe2\x82\xac\" | \"x\"* \"w\" [0-9]{1,3}",
                           "root ::= (\"ab\" | \"a\" \"\xc3\xa9\" | [^a-z]{2})* \"ba\"?"}) {
    auto grammar = parse(text);
    ASSERT_TRUE(grammar);
    check_masks_on_random_walks(grammar, tokens, 7, 12, 30);
  }
}

// Random grammars over a small alphabet with one- to four-byte characters, on a vocabulary of random strings
// over the same bytes (so many tokens split characters).
std::string random_grammar(std::mt19937& random) {
  const std::vector<std::string> atoms = {"\"a\"", "\"b\"", "\"\xc3\xa9\"", "\"\xe2\x82\xac\"", "\"ab\"",
                                          "[a-b]", "[^a]", "[\\u00e0-\\u20ff]", ".", "\"\xf0\x9f\x98\x80\"", "\"\""};
  const std::vector<std::string> postfix = {"", "", "", "*", "+", "?", "{2}", "{1,3}", "{0,}"};
  std::string text;
  const int rules = 1 + static_cast<int>(random() % 4);
  for (int r = 0; r < rules; ++r) {
    text += (r == 0 ? std::string("root") : "r" + std::to_string(r)) + " ::= ";
    const int alternatives = 1 + static_cast<int>(random() % 3);
    for (int a = 0; a < alternatives; ++a) {
      if (a > 0) text += " | ";
      const int length = 1 + static_cast<int>(random() % 3);
      for (int e = 0; e < length; ++e) {
        const int pick = static_cast<int>(random() % 10);
        std::string item = pick < 8 || r + 1 >= rules
                               ? atoms[random() % atoms.size()]
                               : "r" + std::to_string(r + 1 + static_cast<int>(random() % (rules - r - 1)));
        if (random() % 5 == 0) item = "(" + item + " | " + atoms[random() % atoms.size()] + ")";
        text += item + postfix[random() % postfix.size()] + " ";
      }
    }
    text += "\n";
  }
  return text;
}

TEST(GrammarMask, AgreesOnRandomGrammars) {
  std::mt19937 random(11);
  const std::string alphabet = "ab\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
  std::vector<std::string> bytes;
  for (int i = 0; i < 300; ++i) {
    std::string token;
    const int length = 1 + static_cast<int>(random() % 5);
    for (int j = 0; j < length; ++j) token += alphabet[random() % alphabet.size()];
    bytes.push_back(token);
  }
  bytes.emplace_back("</s>");
  std::vector<bool> is_text(bytes.size(), true);
  is_text.back() = false;
  auto tokens = std::make_shared<const TokenIndex>(bytes, is_text, std::vector<int32_t>{300});
  int parsed = 0;
  for (uint32_t g = 0; g < 200; ++g) {
    const std::string text = random_grammar(random);
    auto result = parse_gbnf(text);
    if (!result.is_ok()) {
      // Only repetitions of expressions that may match nothing are refused here.
      EXPECT_NE(result.status().message().find("empty text"), std::string::npos) << text;
      continue;
    }
    ++parsed;
    check_masks_on_random_walks(result.value(), tokens, g, 3, 8);
    if (::testing::Test::HasFatalFailure()) {
      ADD_FAILURE() << text;
      return;
    }
  }
  EXPECT_GT(parsed, 100);
}

TEST(GrammarMask, SharedCacheKeepsVocabulariesApart) {
  auto grammar = parse("root ::= \"a\"");
  ASSERT_TRUE(grammar);
  auto first = std::make_shared<const TokenIndex>(std::vector<std::string>{"a", "b"}, std::vector<bool>{true, true},
                                                  std::vector<int32_t>{});
  auto second = std::make_shared<const TokenIndex>(std::vector<std::string>{"b", "a"}, std::vector<bool>{true, true},
                                                   std::vector<int32_t>{});
  TokenMask mask;
  GrammarMatcher(grammar, first).fill_mask(mask);
  EXPECT_TRUE(mask_allows(mask, 0));
  EXPECT_FALSE(mask_allows(mask, 1));
  GrammarMatcher(grammar, second).fill_mask(mask);
  EXPECT_FALSE(mask_allows(mask, 0));
  EXPECT_TRUE(mask_allows(mask, 1));
}

TEST(GrammarMatcher, AmbiguityIsBoundedInTimeAndStaysValid) {
  // Every 'a' doubles the ways to finish (each needs its own closing letter): the stack set is capped.
  auto grammar = parse("root ::= \"a\" root \"b\" | \"a\" root \"c\" | \"\"");
  ASSERT_TRUE(grammar);
  const auto started = std::chrono::steady_clock::now();
  GrammarMatcher matcher(grammar, byte_tokens());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(matcher.accept('a').is_ok());
  TokenMask mask;
  matcher.fill_mask(mask);
  EXPECT_TRUE(mask_allows(mask, 'a'));
  EXPECT_TRUE(mask_allows(mask, 'b') || mask_allows(mask, 'c'));
  // Whatever it allows keeps the text inside the grammar: closing greedily always ends.
  int closed = 0;
  while (!matcher.can_end() && closed < 40) {
    ASSERT_TRUE(matcher.accept(matcher.allows('b') ? 'b' : 'c').is_ok());
    ++closed;
  }
  EXPECT_EQ(closed, 20);
  // Repetitions of repetitions (found by the fuzzer): each level doubles the stacks.
  auto nested = parse("root ::= [\\u00e0-\\u00ff]" + std::string(56, '+'));
  ASSERT_TRUE(nested);
  GrammarMatcher deep(nested, byte_tokens());
  for (int i = 0; i < 6; ++i) {
    for (int32_t t = 0; t < 256; ++t) (void)deep.allows(t);
    deep.fill_mask(mask);
    ASSERT_TRUE(mask_allows(mask, 0xc3));
    ASSERT_TRUE(deep.accept(0xc3).is_ok());
    ASSERT_TRUE(deep.accept(0xa9).is_ok());
    EXPECT_TRUE(deep.can_end());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
}

TEST(GrammarMask, CacheDropsLeastRecentlyUsedMasks) {
  const auto mask = std::make_shared<const TokenMask>(TokenMask(16, 1));
  const size_t entry = 8 + 1 + 16 * sizeof(uint64_t);  // index id + key + mask
  MaskCache cache(3 * entry);
  cache.insert(1, "a", mask);
  cache.insert(1, "b", mask);
  cache.insert(1, "c", mask);
  EXPECT_TRUE(cache.find(1, "a"));  // now the most recent
  cache.insert(1, "d", mask);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_TRUE(cache.find(1, "a"));
  EXPECT_FALSE(cache.find(1, "b"));
  EXPECT_FALSE(cache.find(2, "a"));
}

}  // namespace
}  // namespace pagedlm::grammar
