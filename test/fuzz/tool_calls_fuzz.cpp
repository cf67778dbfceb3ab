// libFuzzer: arbitrary model replies through every family's tool-call parser. Each call found must carry
// a name and arguments that are a JSON object (compact text starting with '{'), and a reply without calls
// must come back whole as the content.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "chat/tool_calls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagedlm::chat;
  if (size == 0) return 0;
  // The first byte picks the family, so that the corpus explores all of them.
  const auto family = static_cast<ToolCallFamily>(data[0] % 4);
  const std::string_view reply(reinterpret_cast<const char*>(data + 1), size - 1);
  const ParsedReply parsed = parse_tool_calls(reply, family);
  for (const ToolCall& call : parsed.calls) {
    if (call.name.empty() || call.arguments.size() < 2 || call.arguments.front() != '{' || call.arguments.back() != '}') std::abort();
  }
  if (parsed.calls.empty() && parsed.content != reply) std::abort();
  if (parsed.content.size() > reply.size()) std::abort();
  detect_tool_call_family(reply);
  return 0;
}
