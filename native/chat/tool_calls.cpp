#include "chat/tool_calls.h"

#include <nlohmann/json.hpp>

namespace pagedlm::chat {

namespace {

using Json = nlohmann::ordered_json;  // ordered: arguments keep the key order the model wrote

// Deeper JSON than any tool's arguments need; the bound keeps parsing and serializing (recursive) cheap
// on whatever a model, or a fuzzer, writes.
constexpr int kMaxJsonDepth = 128;

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";
constexpr std::string_view kMistralCallId = "[CALL_ID]";
constexpr std::string_view kFence = "```";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

size_t skip_space(std::string_view s, size_t pos) {
  while (pos < s.size() && is_space(s[pos])) ++pos;
  return pos;
}

// One past the bracket that closes the object or array opening at `start`, or npos when it is not closed
// (or nests past kMaxJsonDepth). Only finds the extent: the JSON is checked when parsed.
size_t json_value_end(std::string_view s, size_t start) {
  if (start >= s.size() || (s[start] != '{' && s[start] != '[')) return std::string_view::npos;
  int depth = 0;
  bool in_string = false;
  for (size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return std::string_view::npos;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

std::optional<Json> parse_json(std::string_view text) {
  try {
    Json value = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) return std::nullopt;
    return value;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::string compact(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Arguments as the model wrote them: an object, or a string holding one's JSON text (some models quote them).
std::optional<std::string> arguments_text(const Json& arguments) {
  if (arguments.is_object()) return compact(arguments);
  if (!arguments.is_string()) return std::nullopt;
  const auto& text = arguments.get_ref<const std::string&>();
  if (text.size() > 0 && text.size() < 1 << 20) {
    const std::string_view inner = trim(text);
    if (json_value_end(inner, 0) != inner.size()) return std::nullopt;
    if (auto parsed = parse_json(inner); parsed && parsed->is_object()) return compact(*parsed);
  }
  return std::nullopt;
}

// {name, arguments} (or Llama's {name, parameters}, or OpenAI's {type, function: {name, arguments}}).
// `arguments_required`: the generic form needs the key, so that a reply that is merely a JSON object
// with a "name" is not taken for a call; a template's own markers already say that a call follows.
std::optional<ToolCall> call_of(const Json& value, bool arguments_required) {
  if (!value.is_object()) return std::nullopt;
  if (auto fn = value.find("function"); fn != value.end() && fn->is_object()) return call_of(*fn, arguments_required);
  auto name = value.find("name");
  if (name == value.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) return std::nullopt;
  auto arguments = value.find("arguments");
  if (arguments == value.end()) arguments = value.find("parameters");
  if (arguments == value.end()) {
    if (arguments_required) return std::nullopt;
    return ToolCall{name->get<std::string>(), "{}"};
  }
  auto text = arguments_text(*arguments);
  if (!text) return std::nullopt;
  return ToolCall{name->get<std::string>(), std::move(*text)};
}

// A call, an array of calls, or {"tool_calls": [...]}; nullopt if any element is not a call.
std::optional<std::vector<ToolCall>> calls_of(const Json& value, bool arguments_required) {
  const Json* list = &value;
  if (value.is_object()) {
    auto wrapped = value.find("tool_calls");
    if (wrapped == value.end() || !wrapped->is_array()) {
      auto call = call_of(value, arguments_required);
      if (!call) return std::nullopt;
      return std::vector<ToolCall>{std::move(*call)};
    }
    list = &*wrapped;
  }
  if (!list->is_array() || list->empty()) return std::nullopt;
  std::vector<ToolCall> calls;
  for (const Json& element : *list) {
    auto call = call_of(element, arguments_required);
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
  }
  return calls;
}

// `text` is exactly one JSON object or array (around whitespace) holding calls.
std::optional<std::vector<ToolCall>> calls_in(std::string_view text, bool arguments_required) {
  text = trim(text);
  if (json_value_end(text, 0) != text.size()) return std::nullopt;
  auto value = parse_json(text);
  if (!value) return std::nullopt;
  return calls_of(*value, arguments_required);
}

void append(std::vector<ToolCall>& calls, std::vector<ToolCall>&& more) {
  for (auto& call : more) calls.push_back(std::move(call));
}

// The family parsers: nullopt for a reply whose calls are malformed; no calls when it has none.

std::optional<ParsedReply> parse_hermes(std::string_view reply) {
  ParsedReply parsed;
  size_t pos = 0;
  for (size_t open; (open = reply.find(kHermesOpen, pos)) != std::string_view::npos;) {
    parsed.content.append(reply.substr(pos, open - pos));
    // The call's JSON ends where its brackets close (its strings may hold "</tool_call>"); a reply cut off
    // right after the last call (the model ended its turn there) has no closing tag.
    const size_t body = skip_space(reply, open + kHermesOpen.size());
    const size_t end = json_value_end(reply, body);
    if (end == std::string_view::npos) return std::nullopt;
    const size_t after = skip_space(reply, end);
    const bool closed = reply.substr(after, kHermesClose.size()) == kHermesClose;
    if (!closed && after != reply.size()) return std::nullopt;
    auto calls = calls_in(reply.substr(body, end - body), false);
    if (!calls) return std::nullopt;
    append(parsed.calls, std::move(*calls));
    pos = closed ? after + kHermesClose.size() : reply.size();
  }
  parsed.content.append(reply.substr(pos));
  return parsed;
}

std::optional<ParsedReply> parse_llama3(std::string_view reply) {
  ParsedReply parsed;
  std::string_view body = reply;
  if (size_t tag = reply.find(kPythonTag); tag != std::string_view::npos) {
    parsed.content = reply.substr(0, tag);
    body = reply.substr(tag + kPythonTag.size());
  } else if (trim(reply).empty() || trim(reply).front() != '{') {
    return parsed;  // prose, no calls
  }
  for (size_t pos = 0;;) {
    while (pos < body.size() && (is_space(body[pos]) || body[pos] == ';')) ++pos;
    if (pos == body.size()) break;
    const size_t end = json_value_end(body, pos);
    if (body[pos] != '{' || end == std::string_view::npos) return std::nullopt;
    auto calls = calls_in(body.substr(pos, end - pos), false);
    if (!calls) return std::nullopt;
    append(parsed.calls, std::move(*calls));
    pos = end;
  }
  return parsed;
}

// After [TOOL_CALLS]: a JSON array (or object) of calls, or name[ARGS]{...} (name[CALL_ID]id[ARGS]{...}).
std::optional<std::vector<ToolCall>> mistral_calls(std::string_view segment) {
  segment = trim(segment);
  if (!segment.empty() && (segment.front() == '[' || segment.front() == '{')) return calls_in(segment, false);
  const size_t args = segment.find(kMistralArgs);
  if (args == std::string_view::npos) return std::nullopt;
  std::string_view name = segment.substr(0, args);
  if (size_t id = name.find(kMistralCallId); id != std::string_view::npos) name = name.substr(0, id);
  name = trim(name);
  if (name.empty()) return std::nullopt;
  const std::string_view arguments = trim(segment.substr(args + kMistralArgs.size()));
  if (arguments.empty() || arguments.front() != '{' || json_value_end(arguments, 0) != arguments.size()) return std::nullopt;
  auto value = parse_json(arguments);
  if (!value || !value->is_object()) return std::nullopt;
  return std::vector<ToolCall>{ToolCall{std::string(name), compact(*value)}};
}

std::optional<ParsedReply> parse_mistral(std::string_view reply) {
  ParsedReply parsed;
  size_t marker = reply.find(kMistralCalls);
  if (marker == std::string_view::npos) {
    parsed.content = reply;
    return parsed;
  }
  parsed.content = reply.substr(0, marker);
  while (marker != std::string_view::npos) {
    const size_t start = marker + kMistralCalls.size();
    marker = reply.find(kMistralCalls, start);
    auto calls = mistral_calls(reply.substr(start, marker == std::string_view::npos ? std::string_view::npos : marker - start));
    if (!calls) return std::nullopt;
    append(parsed.calls, std::move(*calls));
  }
  return parsed;
}

// The whole reply is calls, or a ```json fence holding them with prose around it.
ParsedReply parse_generic(std::string_view reply) {
  ParsedReply parsed;
  if (auto calls = calls_in(reply, true)) {
    parsed.calls = std::move(*calls);
    return parsed;
  }
  const size_t open = reply.find(kFence);
  if (open == std::string_view::npos) return parsed;
  size_t body = open + kFence.size();
  while (body < reply.size() && reply[body] != '\n' && reply[body] != '{' && reply[body] != '[') ++body;  // the info string: json
  const size_t close = reply.find(kFence, body);
  if (close == std::string_view::npos) return parsed;
  if (auto calls = calls_in(reply.substr(body, close - body), true)) {
    parsed.calls = std::move(*calls);
    parsed.content.append(reply.substr(0, open));
    parsed.content.append(reply.substr(close + kFence.size()));
  }
  return parsed;
}

std::optional<ParsedReply> parse_family(std::string_view reply, ToolCallFamily family) {
  switch (family) {
    case ToolCallFamily::kLlama3:
      return parse_llama3(reply);
    case ToolCallFamily::kHermes:
      return parse_hermes(reply);
    case ToolCallFamily::kMistral:
      return parse_mistral(reply);
    case ToolCallFamily::kGeneric:
      break;
  }
  return ParsedReply{};
}

}  // namespace

std::string_view tool_call_family_name(ToolCallFamily family) {
  switch (family) {
    case ToolCallFamily::kLlama3:
      return "llama3";
    case ToolCallFamily::kHermes:
      return "hermes";
    case ToolCallFamily::kMistral:
      return "mistral";
    case ToolCallFamily::kGeneric:
      break;
  }
  return "generic";
}

std::optional<ToolCallFamily> tool_call_family_from_name(std::string_view name) {
  for (auto family : {ToolCallFamily::kGeneric, ToolCallFamily::kLlama3, ToolCallFamily::kHermes, ToolCallFamily::kMistral}) {
    if (tool_call_family_name(family) == name) return family;
  }
  return std::nullopt;
}

ToolCallFamily detect_tool_call_family(std::string_view chat_template) {
  if (chat_template.find(kHermesOpen) != std::string_view::npos) return ToolCallFamily::kHermes;
  if (chat_template.find(kMistralCalls) != std::string_view::npos) return ToolCallFamily::kMistral;
  // Llama 3.1's template names the tool role `ipython` and writes built-in tool calls after <|python_tag|>.
  if (chat_template.find(kPythonTag) != std::string_view::npos || chat_template.find("ipython") != std::string_view::npos) {
    return ToolCallFamily::kLlama3;
  }
  return ToolCallFamily::kGeneric;
}

ParsedReply parse_tool_calls(std::string_view reply, ToolCallFamily family) {
  auto parsed = parse_family(reply, family);
  if (!parsed) return ParsedReply{std::string(reply), {}};  // malformed calls: the reply is text
  if (parsed->calls.empty()) parsed = parse_generic(reply);
  if (parsed->calls.empty()) return ParsedReply{std::string(reply), {}};
  parsed->content = std::string(trim(parsed->content));
  return std::move(*parsed);
}

}  // namespace pagedlm::chat
