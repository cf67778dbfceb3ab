// The tool-call parsers: each family's form, several calls, text around them, and malformed calls staying text.
#include "chat/tool_calls.h"

#include <gtest/gtest.h>

namespace pagedlm::chat {
namespace {

using Calls = std::vector<std::pair<std::string, std::string>>;

Calls calls_of(const ParsedReply& parsed) {
  Calls calls;
  for (const auto& call : parsed.calls) calls.emplace_back(call.name, call.arguments);
  return calls;
}

TEST(ToolCalls, FamilyNamesRoundTrip) {
  for (auto family : {ToolCallFamily::kGeneric, ToolCallFamily::kLlama3, ToolCallFamily::kHermes, ToolCallFamily::kMistral}) {
    EXPECT_EQ(tool_call_family_from_name(tool_call_family_name(family)), family);
  }
  EXPECT_FALSE(tool_call_family_from_name("qwen").has_value());
}

TEST(ToolCalls, DetectsFamilyFromTemplateMarkers) {
  EXPECT_EQ(detect_tool_call_family("{{- '<tool_call>\\n{\"name\": \"' }}"), ToolCallFamily::kHermes);
  EXPECT_EQ(detect_tool_call_family("{{ '[TOOL_CALLS]' + tool_calls | tojson }}"), ToolCallFamily::kMistral);
  EXPECT_EQ(detect_tool_call_family("{%- if message.role == 'ipython' %}"), ToolCallFamily::kLlama3);
  EXPECT_EQ(detect_tool_call_family("{{ '<|python_tag|>' }}"), ToolCallFamily::kLlama3);
  EXPECT_EQ(detect_tool_call_family("{{ '<|im_start|>' + message['role'] }}"), ToolCallFamily::kGeneric);
}

TEST(ToolCalls, HermesCallsWithTextAround) {
  const auto parsed = parse_tool_calls(
      "Let me look.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\", \"days\": 2}}\n</tool_call>\n"
      "<tool_call>{\"name\":\"time\",\"arguments\":{}}</tool_call>",
      ToolCallFamily::kHermes);
  EXPECT_EQ(parsed.content, "Let me look.");
  EXPECT_EQ(calls_of(parsed), (Calls{{"weather", R"({"city":"Oslo","days":2})"}, {"time", "{}"}}));
}

TEST(ToolCalls, HermesCallWithoutClosingTagAtTheEnd) {
  const auto parsed = parse_tool_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": [1, 2.5, null]}}\n", ToolCallFamily::kHermes);
  EXPECT_EQ(parsed.content, "");
  EXPECT_EQ(calls_of(parsed), (Calls{{"f", R"({"x":[1,2.5,null]})"}}));
}

TEST(ToolCalls, HermesArgumentsMayHoldTheClosingTag) {
  const auto parsed = parse_tool_calls("<tool_call>{\"name\": \"echo\", \"arguments\": {\"text\": \"a</tool_call>b\"}}</tool_call> ok", ToolCallFamily::kHermes);
  EXPECT_EQ(parsed.content, "ok");
  EXPECT_EQ(calls_of(parsed), (Calls{{"echo", R"({"text":"a</tool_call>b"})"}}));
}

TEST(ToolCalls, ArgumentsKeepTheModelsKeyOrderAndUnicode) {
  const auto parsed = parse_tool_calls("<tool_call>{\"name\": \"f\", \"arguments\": {\"z\": \"\\u00e9t\u00e9\", \"a\": true}}</tool_call>", ToolCallFamily::kHermes);
  EXPECT_EQ(calls_of(parsed), (Calls{{"f", "{\"z\":\"\u00e9t\u00e9\",\"a\":true}"}}));
}

TEST(ToolCalls, ArgumentsQuotedAsAStringAreUnquoted) {
  const auto parsed = parse_tool_calls(R"(<tool_call>{"name": "f", "arguments": "{\"x\": 1}"}</tool_call>)", ToolCallFamily::kHermes);
  EXPECT_EQ(calls_of(parsed), (Calls{{"f", R"({"x":1})"}}));
}

TEST(ToolCalls, MalformedHermesCallLeavesTheReplyAsText) {
  for (const char* reply : {"<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": }</tool_call>",
                            "<tool_call>{\"arguments\": {}}</tool_call>",
                            "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",
                            "ok <tool_call>{\"name\": \"f\"} trailing</tool_call>",
                            "<tool_call>{\"name\": \"g\", \"arguments\": {}}</tool_call><tool_call>oops</tool_call>"}) {
    const auto parsed = parse_tool_calls(reply, ToolCallFamily::kHermes);
    EXPECT_TRUE(parsed.calls.empty()) << reply;
    EXPECT_EQ(parsed.content, reply);
  }
}

TEST(ToolCalls, Llama3JsonCallsSeparatedBySemicolonsOrNewlines) {
  const auto parsed = parse_tool_calls(
      "{\"name\": \"weather\", \"parameters\": {\"city\": \"Oslo\"}}; {\"name\": \"time\", \"parameters\": {\"zone\": \"CET\"}}\n"
      "{\"name\": \"date\", \"parameters\": {}}",
      ToolCallFamily::kLlama3);
  EXPECT_EQ(parsed.content, "");
  EXPECT_EQ(calls_of(parsed), (Calls{{"weather", R"({"city":"Oslo"})"}, {"time", R"({"zone":"CET"})"}, {"date", "{}"}}));
}

TEST(ToolCalls, Llama3CallAfterPythonTag) {
  const auto parsed = parse_tool_calls("Checking.<|python_tag|>{\"name\": \"f\", \"parameters\": {\"q\": \"a;b\"}}", ToolCallFamily::kLlama3);
  EXPECT_EQ(parsed.content, "Checking.");
  EXPECT_EQ(calls_of(parsed), (Calls{{"f", R"({"q":"a;b"})"}}));
}

TEST(ToolCalls, Llama3ProseAndBrokenCallsStayText) {
  for (const char* reply : {"The weather in Oslo is mild.", "{\"name\": \"f\", \"parameters\": {}} and then prose",
                            "<|python_tag|>brave_search.call(query=\"oslo\")", "{\"name\": \"f\", \"parameters\": {\"a\": 1}"}) {
    const auto parsed = parse_tool_calls(reply, ToolCallFamily::kLlama3);
    EXPECT_TRUE(parsed.calls.empty()) << reply;
    EXPECT_EQ(parsed.content, reply);
  }
}

TEST(ToolCalls, MistralArrayOfCalls) {
  const auto parsed = parse_tool_calls(
      "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": {\"y\": \"]\"}}]", ToolCallFamily::kMistral);
  EXPECT_EQ(parsed.content, "");
  EXPECT_EQ(calls_of(parsed), (Calls{{"a", R"({"x":1})"}, {"b", R"({"y":"]"})"}}));
}

TEST(ToolCalls, MistralNameArgsForm) {
  const auto parsed = parse_tool_calls("Sure.[TOOL_CALLS]weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]time[CALL_ID]abc123[ARGS]{}", ToolCallFamily::kMistral);
  EXPECT_EQ(parsed.content, "Sure.");
  EXPECT_EQ(calls_of(parsed), (Calls{{"weather", R"({"city":"Oslo"})"}, {"time", "{}"}}));
}

TEST(ToolCalls, MistralMalformedStaysText) {
  for (const char* reply : {"[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}", "[TOOL_CALLS][ARGS]{}", "[TOOL_CALLS]f[ARGS]{} extra"}) {
    const auto parsed = parse_tool_calls(reply, ToolCallFamily::kMistral);
    EXPECT_TRUE(parsed.calls.empty()) << reply;
    EXPECT_EQ(parsed.content, reply);
  }
}

TEST(ToolCalls, GenericObjectArrayAndWrappedList) {
  EXPECT_EQ(calls_of(parse_tool_calls(" {\"name\": \"f\", \"arguments\": {\"a\": 1}} ", ToolCallFamily::kGeneric)), (Calls{{"f", R"({"a":1})"}}));
  EXPECT_EQ(calls_of(parse_tool_calls("[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"parameters\": {\"b\": false}}]", ToolCallFamily::kGeneric)),
            (Calls{{"f", "{}"}, {"g", R"({"b":false})"}}));
  EXPECT_EQ(calls_of(parse_tool_calls(R"({"tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\":2}"}}]})", ToolCallFamily::kGeneric)),
            (Calls{{"f", R"({"a":2})"}}));
}

TEST(ToolCalls, GenericCallInAFenceKeepsTheProse) {
  const auto parsed = parse_tool_calls("I will call it:\n```json\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n```\nDone.", ToolCallFamily::kGeneric);
  EXPECT_EQ(parsed.content, "I will call it:\n\nDone.");
  EXPECT_EQ(calls_of(parsed), (Calls{{"f", R"({"a":1})"}}));
}

TEST(ToolCalls, GenericNeedsArgumentsSoPlainJsonIsNotACall) {
  const auto parsed = parse_tool_calls(R"({"name": "Ada", "age": 36})", ToolCallFamily::kGeneric);
  EXPECT_TRUE(parsed.calls.empty());
  EXPECT_EQ(parsed.content, R"({"name": "Ada", "age": 36})");
}

TEST(ToolCalls, FamiliesFallBackToTheGenericForm) {
  const auto parsed = parse_tool_calls("```json\n{\"name\": \"f\", \"arguments\": {}}\n```", ToolCallFamily::kHermes);
  EXPECT_EQ(calls_of(parsed), (Calls{{"f", "{}"}}));
}

TEST(ToolCalls, DeepNestingIsRefusedNotRecursedInto) {
  const std::string deep = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": " + std::string(5000, '[') + std::string(5000, ']') + "}}</tool_call>";
  const auto parsed = parse_tool_calls(deep, ToolCallFamily::kHermes);
  EXPECT_TRUE(parsed.calls.empty());
  EXPECT_EQ(parsed.content, deep);
}

}  // namespace
}  // namespace pagedlm::chat
