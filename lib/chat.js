'use strict';
// Chat prompts: the model's own template from GGUF `tokenizer.chat_template` (Jinja, rendered with
// @huggingface/jinja), or, for models without one, a ChatML fallback:
//   <|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n
// Messages reach the template as Hugging Face's apply_chat_template passes them: role, content, and where
// present name, tool_calls (assistant) and tool_call_id (tool); `tools` (OpenAI's [{ type: 'function',
// function: { name, description, parameters } }]) reach it as the `tools` variable, as apply_chat_template's
// tools= does, and not at all when there are none (templates test `tools is defined` or `tools is not none`).
const { Template } = require('@huggingface/jinja');

const FALLBACK_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const FALLBACK_STOP = ['<|im_end|>', '<|im_start|>'];
const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
const MESSAGE_KEYS = new Set(['role', 'content', 'name', 'tool_calls', 'tool_call_id']);

// An error about one part of the messages; `param` is its path (messages[1].content), for OpenAI's error shape.
function messageError(ErrorType, param, message) {
  const error = new ErrorType(`${param} ${message}`);
  error.param = param;
  return error;
}

// OpenAI's content parts: only text is supported, joined in order.
function contentText(content, at) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw messageError(TypeError, at, 'must be a string or an array of { type: "text", text } parts');
  return content
    .map((part, j) => {
      if (part === null || typeof part !== 'object') throw messageError(TypeError, `${at}[${j}]`, 'must be an object { type: "text", text }');
      if (part.type !== 'text') throw messageError(TypeError, `${at}[${j}].type`, `is ${JSON.stringify(part.type)}: only "text" content parts are supported`);
      if (typeof part.text !== 'string') throw messageError(TypeError, `${at}[${j}].text`, 'must be a string');
      return part.text;
    })
    .join('');
}

// OpenAI sends a tool call's arguments as a JSON string; chat templates (as apply_chat_template's callers
// give them) expect an object, which they serialize themselves. Arguments that are not valid JSON stay a string.
function toolCallsOf(calls, at) {
  if (!Array.isArray(calls)) throw messageError(TypeError, at, 'must be an array of tool calls');
  return calls.map((call, j) => {
    const where = `${at}[${j}]`;
    if (call === null || typeof call !== 'object') throw messageError(TypeError, where, 'must be an object { id, type: "function", function: { name, arguments } }');
    const fn = call.function;
    if (fn === null || typeof fn !== 'object' || typeof fn.name !== 'string') throw messageError(TypeError, `${where}.function.name`, 'must be a string');
    let args = fn.arguments ?? {};
    if (typeof args === 'string') {
      try {
        args = JSON.parse(args);
      } catch {
        // kept as the string the client sent
      }
    }
    return { id: call.id, type: call.type ?? 'function', function: { name: fn.name, arguments: args } };
  });
}

function checkMessage(m, i) {
  const at = `messages[${i}]`;
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw messageError(TypeError, at, 'must be an object with role and content');
  if (!ROLES.has(m.role)) throw messageError(RangeError, `${at}.role`, `must be one of ${[...ROLES].join(', ')}, got ${String(m.role)}`);
  for (const key of Object.keys(m)) {
    if (!MESSAGE_KEYS.has(key)) throw messageError(TypeError, `${at}.${key}`, `is not supported (a message has ${[...MESSAGE_KEYS].join(', ')})`);
  }
  const checked = { role: m.role };
  const hasToolCalls = m.tool_calls !== undefined && m.tool_calls !== null;
  if (hasToolCalls && m.role !== 'assistant') throw messageError(TypeError, `${at}.tool_calls`, 'is only for assistant messages');
  // An assistant message that makes tool calls may have no content.
  checked.content = hasToolCalls && (m.content === null || m.content === undefined) ? '' : contentText(m.content, `${at}.content`);
  if (m.name !== undefined) {
    if (typeof m.name !== 'string') throw messageError(TypeError, `${at}.name`, 'must be a string');
    checked.name = m.name;
  }
  if (hasToolCalls) checked.tool_calls = toolCallsOf(m.tool_calls, `${at}.tool_calls`);
  if (m.tool_call_id !== undefined) {
    if (m.role !== 'tool') throw messageError(TypeError, `${at}.tool_call_id`, 'is only for tool messages');
    if (typeof m.tool_call_id !== 'string') throw messageError(TypeError, `${at}.tool_call_id`, 'must be a string');
    checked.tool_call_id = m.tool_call_id;
  }
  return checked;
}

function checkMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw messageError(TypeError, 'messages', 'must be a non-empty array of { role, content }');
  return messages.map(checkMessage);
}

// OpenAI's `developer` role is its newer name for `system`: a template that does not name the role gets
// those messages as system messages, as OpenAI's own guidance for older models does.
function mapDeveloperRole(messages, source) {
  if (source.includes('developer')) return messages;
  return messages.map((m) => (m.role === 'developer' ? { ...m, role: 'system' } : m));
}

/** Renders chat messages into a prompt for one engine; compiled templates are cached per source text. */
class ChatFormatter {
  #compiled = new Map();

  constructor(info) {
    this.info = info;
    this.usesFallback = !info.chatTemplate;
  }

  /** The template `render` uses: `template` when given, else the model's, else the fallback. */
  source(template) {
    return template ?? this.info.chatTemplate ?? FALLBACK_TEMPLATE;
  }

  /** -> { text, addBos, stop }: the prompt text, whether BOS still has to be added, extra stop strings. */
  render(messages, { template, addGenerationPrompt = true, tools } = {}) {
    const source = this.source(template);
    let compiled = this.#compiled.get(source);
    if (!compiled) {
      compiled = new Template(source);
      this.#compiled.set(source, compiled);
    }
    const checked = mapDeveloperRole(checkMessages(messages), source);
    let text;
    try {
      const context = { messages: checked, add_generation_prompt: addGenerationPrompt, bos_token: this.info.bosToken, eos_token: this.info.eosToken };
      if (tools?.length) context.tools = tools;
      text = compiled.render(context);
    } catch (error) {
      // Templates reject conversations they do not support (raise_exception), e.g. roles out of order.
      throw new RangeError(`the chat template could not render these messages: ${error.message}`);
    }
    const bos = this.info.bosToken;
    return {
      text,
      // Templates that write BOS themselves must not get a second one.
      addBos: !(bos && text.startsWith(bos)),
      stop: source === FALLBACK_TEMPLATE ? FALLBACK_STOP : [],
    };
  }
}

module.exports = { ChatFormatter, FALLBACK_TEMPLATE, checkMessages };
