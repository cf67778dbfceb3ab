#include "addon/tool_calls_wrap.h"

#include <string>

#include "chat/tool_calls.h"

namespace pagedlm::addon {

namespace {

// parseToolCalls(reply: string, family: string): { content, toolCalls: [{ name, arguments }] }
Napi::Value parse_tool_calls(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "parseToolCalls(reply, family)");
  const std::string family_name = info[1].As<Napi::String>().Utf8Value();
  auto family = chat::tool_call_family_from_name(family_name);
  if (!family) throw Napi::TypeError::New(env, "unknown tool-call family '" + family_name + "': one of generic, llama3, hermes, mistral");
  const chat::ParsedReply parsed = chat::parse_tool_calls(info[0].As<Napi::String>().Utf8Value(), *family);
  Napi::Array calls = Napi::Array::New(env, parsed.calls.size());
  for (size_t i = 0; i < parsed.calls.size(); ++i) {
    Napi::Object call = Napi::Object::New(env);
    call.Set("name", parsed.calls[i].name);
    call.Set("arguments", parsed.calls[i].arguments);
    calls.Set(static_cast<uint32_t>(i), call);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("content", parsed.content);
  result.Set("toolCalls", calls);
  return result;
}

// toolCallFamily(chatTemplate: string): 'generic' | 'llama3' | 'hermes' | 'mistral'
Napi::Value tool_call_family(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "toolCallFamily(chatTemplate)");
  const auto family = chat::detect_tool_call_family(info[0].As<Napi::String>().Utf8Value());
  return Napi::String::New(env, std::string(chat::tool_call_family_name(family)));
}

}  // namespace

void export_tool_calls(Napi::Env env, Napi::Object exports) {
  exports.Set("parseToolCalls", Napi::Function::New(env, parse_tool_calls));
  exports.Set("toolCallFamily", Napi::Function::New(env, tool_call_family));
}

}  // namespace pagedlm::addon
