'use strict';
// Tool calling: OpenAI-shaped `tools` and `tool_choice` checked, the grammar that makes a model call a tool
// (tool_choice 'required' or a named function), and the reply split into content and tool calls by the
// native parsers of each chat-template family (native/chat/tool_calls.h).
const crypto = require('node:crypto');

const TOOL_CALL_FORMATS = ['generic', 'llama3', 'hermes', 'mistral'];
// OpenAI's limit on a function's name.
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const TOOL_KEYS = new Set(['type', 'function']);
const FUNCTION_KEYS = new Set(['name', 'description', 'parameters', 'strict']);
// A function without parameters takes an empty object.
const NO_PARAMETERS = { type: 'object', properties: {} };

function toolError(ErrorType, param, message) {
  const error = new ErrorType(`${param} ${message}`);
  error.param = param;
  return error;
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function checkFunction(fn, at) {
  if (!isPlainObject(fn)) throw toolError(TypeError, at, 'must be an object { name, description, parameters }');
  for (const key of Object.keys(fn)) {
    if (!FUNCTION_KEYS.has(key)) throw toolError(TypeError, `${at}.${key}`, `is not supported (a function has ${[...FUNCTION_KEYS].join(', ')})`);
  }
  if (typeof fn.name !== 'string' || !FUNCTION_NAME.test(fn.name)) {
    throw toolError(TypeError, `${at}.name`, `must be 1 to 64 letters, digits, _ or -, got ${JSON.stringify(fn.name)}`);
  }
  if (fn.description !== undefined && typeof fn.description !== 'string') throw toolError(TypeError, `${at}.description`, 'must be a string');
  if (fn.parameters !== undefined && !isPlainObject(fn.parameters)) throw toolError(TypeError, `${at}.parameters`, 'must be a JSON Schema object');
  if (fn.strict !== undefined && fn.strict !== null && typeof fn.strict !== 'boolean') throw toolError(TypeError, `${at}.strict`, 'must be a boolean');
  const checked = { name: fn.name };
  if (fn.description !== undefined) checked.description = fn.description;
  checked.parameters = fn.parameters ?? NO_PARAMETERS;
  return checked;
}

/** tools: [{ type: 'function', function: { name, description, parameters } }] -> the same, checked; [] when absent. */
function checkTools(tools, param = 'tools') {
  if (tools === undefined || tools === null) return [];
  if (!Array.isArray(tools)) throw toolError(TypeError, param, 'must be an array of { type: "function", function: { name, description, parameters } }');
  const names = new Set();
  return tools.map((tool, i) => {
    const at = `${param}[${i}]`;
    if (!isPlainObject(tool)) throw toolError(TypeError, at, 'must be an object { type: "function", function }');
    for (const key of Object.keys(tool)) {
      if (!TOOL_KEYS.has(key)) throw toolError(TypeError, `${at}.${key}`, 'is not supported (a tool has type and function)');
    }
    if (tool.type !== 'function') throw toolError(TypeError, `${at}.type`, `must be "function", got ${JSON.stringify(tool.type)}`);
    const fn = checkFunction(tool.function, `${at}.function`);
    if (names.has(fn.name)) throw toolError(TypeError, `${at}.function.name`, `repeats the name ${JSON.stringify(fn.name)}`);
    names.add(fn.name);
    return { type: 'function', function: fn };
  });
}

/**
 * tool_choice -> { mode: 'none' | 'auto' | 'required', name? }. A named function ({ type: 'function',
 * function: { name } }) is 'required' of that one tool. Without tools only 'none' (the default) is possible.
 */
function checkToolChoice(choice, tools, param = 'tool_choice') {
  if (choice === undefined || choice === null) return { mode: tools.length ? 'auto' : 'none' };
  if (choice === 'none' || choice === 'auto' || choice === 'required') {
    if (choice !== 'none' && tools.length === 0) throw toolError(TypeError, param, `is "${choice}" but no tools were given`);
    return { mode: choice };
  }
  const name = isPlainObject(choice) && choice.type === 'function' && isPlainObject(choice.function) ? choice.function.name : undefined;
  if (typeof name !== 'string') throw toolError(TypeError, param, 'must be "none", "auto", "required" or { type: "function", function: { name } }');
  if (!tools.some((t) => t.function.name === name)) throw toolError(TypeError, `${param}.function.name`, `names ${JSON.stringify(name)}, which is not one of the tools`);
  return { mode: 'required', name };
}

function checkToolCallFormat(format, param = 'toolCallFormat') {
  if (format === undefined) return undefined;
  if (!TOOL_CALL_FORMATS.includes(format)) throw toolError(RangeError, param, `must be one of ${TOOL_CALL_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
  return format;
}

// GBNF string literal of a text.
const literal = (text) => JSON.stringify(text);

/**
 * The grammar that makes a reply consist of tool calls in `format`, for `choice` ('required', or one named
 * function), one call or (`parallel`) several. `schemaToGrammar(schema, { rulePrefix })` compiles a tool's
 * parameters (JSON Schema) to GBNF whose start rule is `<rulePrefix>root`.
 * -> { grammar, prefix }: `prefix` goes at the end of the prompt, before the grammar's text: Mistral's
 * [TOOL_CALLS] is a control token, which a grammar (text only) cannot produce; it is parsed back with the reply.
 */
function toolCallGrammar({ format, tools, choice, parallel, schemaToGrammar }) {
  const chosen = choice.name ? tools.filter((t) => t.function.name === choice.name) : tools;
  const rules = [];
  const callRules = chosen.map((tool, i) => {
    const prefix = `tool${i}-`;
    const argumentsKey = format === 'llama3' ? 'parameters' : 'arguments';
    rules.push(compileParameters(tool, tools.indexOf(tool), prefix, schemaToGrammar).trim());
    rules.push(`tool${i} ::= ${literal(`{"name": "${tool.function.name}", "${argumentsKey}": `)} ${prefix}root "}"`);
    return `tool${i}`;
  });
  rules.push(`call ::= ${callRules.join(' | ')}`);
  const more = (separator, item) => (parallel ? ` (${literal(separator)} ${item})*` : '');
  let root;
  let prefix = '';
  switch (format) {
    case 'hermes':
      rules.push(`tool-call-block ::= ${literal('<tool_call>\n')} call ${literal('\n</tool_call>')}`);
      root = `tool-call-block${more('\n', 'tool-call-block')}`;
      break;
    case 'mistral':
      prefix = '[TOOL_CALLS]';
      root = `"[" call${more(', ', 'call')} "]"`;
      break;
    case 'llama3':
      root = `call${more('\n', 'call')}`;
      break;
    default:
      root = parallel ? `"[" call${more(', ', 'call')} "]"` : 'call';
  }
  return { grammar: [`root ::= ${root}`, ...rules].join('\n') + '\n', prefix };
}

// A tool's parameters as grammar rules; a schema the compiler refuses is an error naming the tool.
function compileParameters(tool, index, rulePrefix, schemaToGrammar) {
  try {
    return schemaToGrammar(tool.function.parameters, { rulePrefix });
  } catch (error) {
    const refused = toolError(TypeError, `tools[${index}].function.parameters`, `cannot be enforced: ${error.message}`);
    if (error.code) refused.code = error.code; // ERR_INVALID_SCHEMA
    throw refused;
  }
}

const callId = () => `call_${crypto.randomBytes(18).toString('base64url')}`;

/**
 * A reply -> { content, toolCalls } with the native parser `parse(reply, format)`. Each call is OpenAI's
 * { id, type: 'function', function: { name, arguments: JSON text } } plus `arguments`, the parsed object.
 * Calls to functions that are not among `tools` are not calls: the reply stays text. Without `parallel`
 * only the first call is kept.
 */
function parseReply(reply, { format, tools, parallel, parse }) {
  const parsed = parse(reply, format);
  const known = new Set(tools.map((t) => t.function.name));
  if (parsed.toolCalls.length === 0 || parsed.toolCalls.some((c) => !known.has(c.name))) return { content: reply, toolCalls: [] };
  const calls = parallel ? parsed.toolCalls : parsed.toolCalls.slice(0, 1);
  return {
    content: parsed.content,
    toolCalls: calls.map((c) => ({ id: callId(), type: 'function', function: { name: c.name, arguments: c.arguments }, arguments: JSON.parse(c.arguments) })),
  };
}

// Where a tool call may begin in a reply: a family's marker, or (CALL_JSON) JSON as its first character.
const CALL_MARKERS = ['<tool_call>', '[TOOL_CALLS]', '<|python_tag|>', '```'];
const CALL_JSON = new Set(['{', '[']);

/**
 * A streamed reply that may call tools: its text goes out as content while it cannot be (the start of) a call,
 * and is held from where one may begin until the whole reply is parsed.
 */
class ReplyGate {
  #text = '';
  #sent = 0;
  #held = false;

  /** Adds a token's text; returns the text that may be sent as content now. */
  push(text) {
    this.#text += text;
    if (this.#held) return '';
    const safe = this.#safeLength();
    const out = this.#text.slice(this.#sent, safe);
    this.#sent = safe;
    return out;
  }

  // How much of the text cannot belong to a call: up to the first marker, or to a marker's possible start at the end.
  #safeLength() {
    const text = this.#text;
    const first = text.trimStart();
    if (first === '') return this.#sent; // whitespace so far: JSON may follow
    if (this.#sent === 0 && CALL_JSON.has(first[0])) {
      this.#held = true;
      return 0;
    }
    let safe = text.length;
    for (const marker of CALL_MARKERS) {
      const at = text.indexOf(marker, this.#sent);
      if (at !== -1) {
        this.#held = true;
        safe = Math.min(safe, at);
        continue;
      }
      for (let k = Math.min(marker.length - 1, text.length - this.#sent); k > 0; k--) {
        if (text.endsWith(marker.slice(0, k))) {
          safe = Math.min(safe, text.length - k);
          break;
        }
      }
    }
    return safe;
  }

  /** The content still to send once the reply is complete, from chat()'s parsed choice. */
  rest(choice) {
    const { content } = choice.message;
    const sent = this.#text.slice(0, this.#sent);
    if (!choice.message.tool_calls) return content.startsWith(sent) ? content.slice(sent.length) : '';
    // The content of a reply with calls is trimmed; what was sent is where it starts.
    const lead = sent.trimStart();
    return content.startsWith(lead) ? content.slice(lead.length) : '';
  }
}

module.exports = { TOOL_CALL_FORMATS, checkTools, checkToolChoice, checkToolCallFormat, toolCallGrammar, parseReply, ReplyGate };
