// Tool calls in a model's reply: each chat-template family has its own way of writing them, and the reply
// is split into the calls and the text around them (the message's content).
//   llama3   Llama 3.1/3.2: `{"name": ..., "parameters": {...}}`, optionally after <|python_tag|>, several
//            separated by ';' or newlines; the reply is nothing but calls (text may precede <|python_tag|>).
//   hermes   Qwen 2.5/3, Hermes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, any number.
//   mistral  `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`, or `[TOOL_CALLS]name[ARGS]{...}` (v11+).
//   generic  a JSON object {name, arguments}, an array of them, or {"tool_calls": [...]}, optionally in a
//            ```json fence, the reply being nothing else.
// Every family falls back to the generic form when its own finds no call. A reply whose calls are malformed
// (JSON that does not parse, a call without a name) yields no call: all of it stays content.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pagedlm::chat {

enum class ToolCallFamily { kGeneric, kLlama3, kHermes, kMistral };

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, compact, keys in the order the model wrote them
};

struct ParsedReply {
  std::string content;  // the text outside the calls, trimmed
  std::vector<ToolCall> calls;
};

// "generic" | "llama3" | "hermes" | "mistral".
std::string_view tool_call_family_name(ToolCallFamily family);
std::optional<ToolCallFamily> tool_call_family_from_name(std::string_view name);

// The family a chat template writes tool calls in, from the markers it renders them with; kGeneric when
// it has none of them.
ToolCallFamily detect_tool_call_family(std::string_view chat_template);

ParsedReply parse_tool_calls(std::string_view reply, ToolCallFamily family);

}  // namespace pagedlm::chat
