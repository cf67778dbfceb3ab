// The tool-call parsers (chat/tool_calls.h) as plain functions of the addon. JS thread only.
#pragma once

#include <napi.h>

namespace pagedlm::addon {

// Adds parseToolCalls(reply, family) and toolCallFamily(chatTemplate) to the module's exports.
void export_tool_calls(Napi::Env env, Napi::Object exports);

}  // namespace pagedlm::addon
