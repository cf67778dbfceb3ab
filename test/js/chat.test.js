'use strict';
// engine.chat(): the model's chat template or the ChatML fallback, BOS handling, validation, streaming.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const { writeLlamaModel } = require('../support/gguf-writer');
const { describeWithModels } = require('../support/models');

const LLAMA2_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

describeWithModels('chat', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 512 });
  });
  afterAll(() => engine.close());

  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
  ];

  test('a model without a template gets the ChatML fallback, with BOS added and its end marker as a stop', () => {
    expect(engine.info().chatTemplate).toBeNull();
    const prompt = engine.chatPrompt(messages);
    expect(prompt.text).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(prompt.addBos).toBe(true);
    expect(prompt.stop).toContain('<|im_end|>');
  });

  test('a template that writes BOS itself does not get a second one', () => {
    const prompt = engine.chatPrompt(messages, { template: LLAMA2_TEMPLATE });
    expect(prompt.text).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]');
    expect(prompt.addBos).toBe(false);
    const ids = engine.tokenize(prompt.text, { addBos: false, special: true });
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
  });

  test('chat() equals generate() on the rendered prompt, and streams the same tokens', async () => {
    const chat = await engine.chat(messages, { temperature: 0, maxTokens: 10, template: LLAMA2_TEMPLATE });
    const direct = await engine.generate('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]', { temperature: 0, maxTokens: 10, addBos: false, special: true });
    expect(chat.tokens).toEqual(direct.tokens);
    expect(chat.message).toEqual({ role: 'assistant', content: chat.text });
    const streamed = [];
    for await (const t of engine.chat(messages, { temperature: 0, maxTokens: 10, template: LLAMA2_TEMPLATE, stream: true })) streamed.push(t.id);
    expect(streamed).toEqual(chat.tokens);
  });

  test('developer messages are system messages for a template without that role, and kept for one that has it', () => {
    const developer = [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: 'Hi' }];
    expect(engine.chatPrompt(developer).text).toBe(engine.chatPrompt(messages).text);
    const withDeveloper = "{% for m in messages %}{% if m.role == 'developer' %}D:{% else %}{{ m.role }}:{% endif %}{{ m.content }};{% endfor %}";
    expect(engine.chatPrompt(developer, { template: withDeveloper }).text).toBe('D:Be brief.;user:Hi;');
  });

  test('content as text parts is the parts joined; any other part type is a TypeError naming it', () => {
    const parts = [{ role: 'system', content: [{ type: 'text', text: 'Be ' }, { type: 'text', text: 'brief.' }] }, { role: 'user', content: 'Hi' }];
    expect(engine.chatPrompt(parts).text).toBe(engine.chatPrompt(messages).text);
    const image = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }];
    expect(() => engine.chatPrompt(image)).toThrow(expect.objectContaining({ name: 'TypeError', param: 'messages[0].content[0].type', message: expect.stringMatching(/image_url/) }));
    expect(() => engine.chatPrompt([{ role: 'user', content: 'x', audio: {} }])).toThrow(expect.objectContaining({ param: 'messages[0].audio' }));
  });

  test('tool calls and tool results reach the template as apply_chat_template passes them, arguments parsed', () => {
    const template =
      "{% for m in messages %}{{ m.role }}|{{ m.content }}{% if m.tool_calls %}{% for c in m.tool_calls %}|{{ c.id }} {{ c.function.name }} {{ c.function.arguments | tojson }} {{ c.function.arguments.city }}{% endfor %}{% endif %}" +
      '{% if m.tool_call_id %}|{{ m.tool_call_id }}{% endif %};{% endfor %}';
    const conversation = [
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'rain' },
    ];
    expect(engine.chatPrompt(conversation, { template }).text).toBe('user|Weather?;assistant||call_1 weather {"city": "Oslo"} Oslo;tool|rain|call_1;');
    expect(() => engine.chatPrompt([{ role: 'user', content: 'x', tool_calls: [] }])).toThrow(expect.objectContaining({ param: 'messages[0].tool_calls' }));
  });

  test('bad messages are TypeError / RangeError; a template refusing them is a RangeError', async () => {
    await expect(engine.chat('hi')).rejects.toThrow(TypeError);
    await expect(engine.chat([])).rejects.toThrow(TypeError);
    await expect(engine.chat([{ role: 'robot', content: 'x' }])).rejects.toThrow(RangeError);
    await expect(engine.chat([{ role: 'user', content: 5 }])).rejects.toThrow(TypeError);
    await expect(engine.chat([{ role: 'assistant', content: 'x' }], { template: LLAMA2_TEMPLATE })).rejects.toThrow(/roles must alternate/);
    const failed = engine.chat('hi', { stream: true });
    await expect(failed.next()).rejects.toThrow(TypeError);
  });
});

describe('chat template from the model file', () => {
  test('tokenizer.chat_template is read from GGUF and used by chat()', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-chat-')), 'templated.gguf');
    const template = "{% for m in messages %}{{ bos_token }}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    writeLlamaModel(file, { dim: 64, layers: 1, heads: 4, kvHeads: 2, ffn: 128, vocab: 400, context: 256, type: 'F32', chatTemplate: template });
    const engine = await Engine.load(file);
    try {
      expect(engine.info().chatTemplate).toBe(template);
      const prompt = engine.chatPrompt([{ role: 'user', content: 'hi' }]);
      expect(prompt).toEqual({ text: '<s><user>hi</s><assistant>', addBos: false, stop: [] });
      const reply = await engine.chat([{ role: 'user', content: 'hi' }], { maxTokens: 3, temperature: 0, ignoreEos: true });
      expect(reply.usage.completionTokens).toBe(3);
    } finally {
      await engine.close();
    }
  });
});
