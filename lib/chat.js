'use strict';
// Chat prompts: the model's own template from GGUF `tokenizer.chat_template` (Jinja, rendered with
// @huggingface/jinja), or, for models without one, a ChatML fallback:
//   <|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n
const { Template } = require('@huggingface/jinja');

const FALLBACK_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const FALLBACK_STOP = ['<|im_end|>', '<|im_start|>'];
const ROLES = new Set(['system', 'user', 'assistant', 'tool']);

function checkMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw new TypeError('messages must be a non-empty array of { role, content }');
  return messages.map((m, i) => {
    if (m === null || typeof m !== 'object') throw new TypeError(`messages[${i}] must be an object with role and content`);
    if (!ROLES.has(m.role)) throw new RangeError(`messages[${i}].role must be one of ${[...ROLES].join(', ')}, got ${String(m.role)}`);
    if (typeof m.content !== 'string') throw new TypeError(`messages[${i}].content must be a string`);
    return { role: m.role, content: m.content };
  });
}

/** Renders chat messages into a prompt for one engine; compiled templates are cached per source text. */
class ChatFormatter {
  #compiled = new Map();

  constructor(info) {
    this.info = info;
    this.usesFallback = !info.chatTemplate;
  }

  /** -> { text, addBos, stop }: the prompt text, whether BOS still has to be added, extra stop strings. */
  render(messages, { template, addGenerationPrompt = true } = {}) {
    const source = template ?? this.info.chatTemplate ?? FALLBACK_TEMPLATE;
    let compiled = this.#compiled.get(source);
    if (!compiled) {
      compiled = new Template(source);
      this.#compiled.set(source, compiled);
    }
    const checked = checkMessages(messages);
    let text;
    try {
      text = compiled.render({ messages: checked, add_generation_prompt: addGenerationPrompt, bos_token: this.info.bosToken, eos_token: this.info.eosToken });
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
