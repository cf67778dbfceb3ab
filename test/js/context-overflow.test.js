'use strict';
// contextOverflow: a conversation longer than the context keeps going ('truncate-oldest': the leading system
// messages and the newest turns stay, the oldest turns go whole, cut with hysteresis so the prefix cache hits)
// or fails with ERR_CONTEXT_OVERFLOW ('error'), in chat() and in the router.
const { Engine } = require('../..');
const { truncateOldest, replyReserve } = require('../../lib/overflow');
const { describeWithModels } = require('../support/models');
const { startRouter, stopRouter } = require('../support/router');

// A stand-in for rendering + tokenizing: a few tokens of markup per message, one per word, and a count of calls.
function fakeMeasure() {
  const measure = (messages) => {
    measure.calls++;
    return { tokens: 3 + messages.reduce((sum, m) => sum + 4 + m.content.split(' ').length, 0) };
  };
  measure.calls = 0;
  return measure;
}

const words = (n, word) => Array.from({ length: n }, () => word).join(' ');
const system = { role: 'system', content: 'You are terse.' };

// The conversation as a client grows it: turn i is a user message and a reply (some turns call a tool).
function conversation(turns) {
  const messages = [system];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: 'user', content: words(3 + (i % 5), `q${i}`) });
    if (i % 4 === 3) {
      messages.push({ role: 'assistant', content: '', tool_calls: [{ id: `c${i}`, type: 'function', function: { name: 'f', arguments: '{}' } }] });
      messages.push({ role: 'tool', tool_call_id: `c${i}`, content: words(4, `t${i}`) });
    }
    messages.push({ role: 'assistant', content: words(6 + (i % 3), `a${i}`) });
  }
  return messages;
}

// The requests a client sends for that conversation: every prefix ending with a user or tool message.
function requests(messages) {
  const list = [];
  messages.forEach((m, i) => {
    if (m.role === 'user' || m.role === 'tool') list.push(messages.slice(0, i + 1));
  });
  return list;
}

describe('truncate-oldest, on a stand-in tokenizer', () => {
  const promptLimit = 120;

  test('a conversation that fits is sent whole', () => {
    const messages = conversation(2);
    const fitted = truncateOldest(messages, { measure: fakeMeasure(), promptLimit });
    expect(fitted.truncatedMessages).toBe(0);
    expect(fitted.messages).toEqual(messages);
  });

  test('what is kept fits, starts with the system message then a user message, and drops only whole turns', () => {
    for (const request of requests(conversation(60))) {
      const measure = fakeMeasure();
      const { messages, truncatedMessages, measured } = truncateOldest(request, { measure, promptLimit });
      expect(measured.tokens).toBeLessThanOrEqual(promptLimit);
      expect(measure(messages).tokens).toBe(measured.tokens);
      expect(messages[0]).toBe(system);
      expect(messages.length + truncatedMessages).toBe(request.length);
      expect(messages.slice(1)).toEqual(request.slice(1 + truncatedMessages));
      if (truncatedMessages > 0) expect(messages[1].role).toBe('user');
      const calls = new Set(messages.flatMap((m) => (m.tool_calls ?? []).map((c) => c.id)));
      for (const m of messages.filter((x) => x.role === 'tool')) expect(calls.has(m.tool_call_id)).toBe(true);
    }
  });

  test('the cut moves only when the kept part outgrows the limit, and then to about half of it: each request extends the previous prompt', () => {
    let previous = 0;
    let moves = 0;
    const measure = fakeMeasure();
    for (const request of requests(conversation(60))) {
      const { truncatedMessages, measured } = truncateOldest(request, { measure: fakeMeasure(), promptLimit });
      const previousCutFits = measure([request[0], ...request.slice(1 + previous)]).tokens <= promptLimit;
      if (previousCutFits) {
        expect(truncatedMessages).toBe(previous);
      } else {
        expect(truncatedMessages).toBeGreaterThan(previous);
        expect(measured.tokens).toBeLessThanOrEqual(promptLimit / 2);
        moves++;
      }
      previous = truncatedMessages;
    }
    // Each move frees about half the limit: a handful of moves, not one per request.
    expect(moves).toBeGreaterThan(2);
    expect(moves).toBeLessThan(requests(conversation(60)).length / 4);
  });

  test('the cut does not depend on how the conversation was sent before: a stateless caller gets the same cut twice', () => {
    const messages = conversation(40);
    const first = truncateOldest(messages, { measure: fakeMeasure(), promptLimit });
    const again = truncateOldest(messages.map((m) => ({ ...m })), { measure: fakeMeasure(), promptLimit });
    expect(first.truncatedMessages).toBeGreaterThan(0);
    expect(again.truncatedMessages).toBe(first.truncatedMessages);
  });

  test('a long history costs a few measurements per cut, not one per prefix: twice the turns, about twice the work', () => {
    const work = (turns) => {
      let renderedMessages = 0;
      const measure = fakeMeasure();
      const counting = (messages) => {
        renderedMessages += messages.length;
        return measure(messages);
      };
      const messages = conversation(turns);
      const { truncatedMessages } = truncateOldest(messages, { measure: counting, promptLimit });
      expect(truncatedMessages).toBeGreaterThan(messages.length - 40);
      return renderedMessages;
    };
    const ratio = work(4000) / work(2000);
    expect(ratio).toBeGreaterThan(1.5);
    expect(ratio).toBeLessThan(2.5);
  });

  test('developer messages at the front stay too; a system message between turns goes with its turn', () => {
    const messages = [system, { role: 'developer', content: 'Answer in French.' }, ...conversation(30).slice(1)];
    messages.splice(6, 0, { role: 'system', content: 'Now be verbose.' });
    const { messages: kept } = truncateOldest(messages, { measure: fakeMeasure(), promptLimit });
    expect(kept.slice(0, 2)).toEqual(messages.slice(0, 2));
    expect(kept).not.toContainEqual({ role: 'system', content: 'Now be verbose.' });
    expect(kept[2].role).toBe('user');
  });

  test('when the system messages and the newest turn alone do not fit, ERR_CONTEXT_OVERFLOW', () => {
    const messages = [...conversation(3), { role: 'user', content: words(200, 'long') }];
    expect(() => truncateOldest(messages, { measure: fakeMeasure(), promptLimit })).toThrow(expect.objectContaining({ code: 'ERR_CONTEXT_OVERFLOW' }));
    expect(() => truncateOldest([{ role: 'system', content: words(200, 'rules') }], { measure: fakeMeasure(), promptLimit })).toThrow(/the system messages alone take/);
  });

  test('the reply keeps maxTokens free, at most a quarter of the context', () => {
    expect(replyReserve(4096, 512)).toBe(512);
    expect(replyReserve(256, 512)).toBe(64);
    expect(replyReserve(256, 10)).toBe(10);
  });
});

const SYSTEM_PROMPT = 'You are a helpful assistant. Answer every question in one short sentence.';
const question = (turn) => `Turn ${turn}: tell me one thing about the number ${turn * 7}, please.`;
// Replies of a fixed length, whatever the random-weight model samples.
const REPLY = { temperature: 0, maxTokens: 12, ignoreEos: true };

describeWithModels('contextOverflow on a 256-token context', ['synth-tiny-f16.gguf'], (modelPath) => {
  const CONTEXT = 256;
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: CONTEXT });
  });
  afterAll(() => engine.close());

  const promptTokens = (messages) => {
    const rendered = engine.chatPrompt(messages);
    return engine.tokenize(rendered.text, { addBos: rendered.addBos, special: true }).length;
  };

  // Plays `turns` turns through `ask(messages) -> { reply, truncatedMessages, promptTokens }`; per turn, the
  // messages sent, what came back and the prefix-cache tokens the request hit.
  async function converse(turns, ask) {
    const messages = [{ role: 'system', content: SYSTEM_PROMPT }];
    const log = [];
    for (let turn = 1; turn <= turns; turn++) {
      messages.push({ role: 'user', content: question(turn) });
      const before = engine.cache.stats().hitTokens;
      const answer = await ask(messages);
      log.push({ ...answer, sent: [...messages], hitTokens: engine.cache.stats().hitTokens - before });
      messages.push({ role: 'assistant', content: answer.reply });
    }
    return log;
  }

  // Turns after a truncation that kept the previous turn's cut: they extend its prompt.
  function checkCacheHits(log) {
    const systemTokens = promptTokens([{ role: 'system', content: SYSTEM_PROMPT }]);
    const blockSize = engine.info().kvBlockSize;
    const sameCut = log.filter((entry, i) => i > 0 && entry.truncatedMessages > 0 && entry.truncatedMessages === log[i - 1].truncatedMessages);
    expect(sameCut.length).toBeGreaterThan(log.length / 3);
    for (const entry of sameCut) {
      const previous = log[log.indexOf(entry) - 1];
      expect(entry.hitTokens).toBeGreaterThan(systemTokens + blockSize);
      // All of the previous prompt's full blocks but the last, which the re-tokenized reply may change.
      expect(entry.hitTokens).toBeGreaterThanOrEqual(Math.floor(previous.promptTokens / blockSize) * blockSize - blockSize);
    }
  }

  test("truncate-oldest (chat()'s default): a 50-turn chat keeps answering, keeps the system prompt, and hits the prefix cache past it", async () => {
    const log = await converse(50, async (messages) => {
      const result = await engine.chat(messages, REPLY);
      return { reply: result.text, truncatedMessages: result.truncatedMessages, promptTokens: result.usage.promptTokens, tokens: result.tokens.length };
    });
    const reserve = replyReserve(CONTEXT, REPLY.maxTokens);
    for (const { sent, truncatedMessages, promptTokens: sentTokens, tokens } of log) {
      expect(tokens).toBe(REPLY.maxTokens);
      expect(sentTokens).toBeLessThanOrEqual(CONTEXT - reserve);
      // What was sent: the system prompt, then the newest messages from a user message on.
      const kept = [sent[0], ...sent.slice(1 + truncatedMessages)];
      expect(kept[1].role).toBe('user');
      expect(sentTokens).toBe(promptTokens(kept));
    }
    expect(log[0].truncatedMessages).toBe(0);
    expect(log[49].truncatedMessages).toBeGreaterThan(50);
    checkCacheHits(log);
  });

  test('what is kept renders under a template that insists on user/assistant alternation from a user message', async () => {
    const strict =
      "{% for m in messages %}{% if m.role == 'system' %}{% if not loop.first %}{{ raise_exception('system first') }}{% endif %}" +
      "{% elif (m.role == 'user') != ((loop.index0 - (1 if messages[0].role == 'system' else 0)) % 2 == 0) %}{{ raise_exception('roles must alternate from a user message') }}" +
      "{% endif %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ";
    const messages = [{ role: 'system', content: SYSTEM_PROMPT }];
    for (let turn = 1; turn <= 30; turn++) {
      messages.push({ role: 'user', content: question(turn) });
      const result = await engine.chat(messages, { ...REPLY, template: strict, maxTokens: 4 });
      messages.push({ role: 'assistant', content: result.text });
    }
    const last = await engine.chat(messages.concat({ role: 'user', content: 'And finally?' }), { ...REPLY, template: strict, maxTokens: 4 });
    expect(last.truncatedMessages).toBeGreaterThan(0);
    expect(last.truncatedMessages % 2).toBe(0);
  });

  test('a stream reports what was dropped before its first token', async () => {
    const messages = [{ role: 'system', content: SYSTEM_PROMPT }];
    for (let turn = 1; turn <= 30; turn++) messages.push({ role: 'user', content: question(turn) }, { role: 'assistant', content: 'It is a number.' });
    messages.push({ role: 'user', content: question(31) });
    const stream = engine.chat(messages, { ...REPLY, stream: true });
    expect(stream.truncatedMessages).toBeGreaterThan(0);
    let count = 0;
    for await (const token of stream) count += token.text === undefined ? 0 : 1;
    const result = await stream.result;
    expect(count).toBe(REPLY.maxTokens);
    expect(result.truncatedMessages).toBe(stream.truncatedMessages);
  });

  test("'error': the chat fails with ERR_CONTEXT_OVERFLOW once its history outgrows the context, and not before", async () => {
    const outcomes = [];
    await expect(
      converse(50, async (messages) => {
        const tokens = promptTokens(messages);
        try {
          const result = await engine.chat(messages, { ...REPLY, contextOverflow: 'error' });
          outcomes.push({ tokens, ok: true });
          expect(result.truncatedMessages).toBe(0);
          return { reply: result.text, truncatedMessages: 0, promptTokens: result.usage.promptTokens };
        } catch (error) {
          outcomes.push({ tokens, ok: false });
          throw error;
        }
      }),
    ).rejects.toMatchObject({ name: 'PagedlmError', code: 'ERR_CONTEXT_OVERFLOW', message: expect.stringContaining("contextOverflow: 'truncate-oldest'") });
    const failed = outcomes[outcomes.length - 1];
    expect(failed).toMatchObject({ ok: false });
    expect(failed.tokens).toBeGreaterThanOrEqual(CONTEXT);
    expect(outcomes.slice(0, -1).every((o) => o.ok && o.tokens < CONTEXT)).toBe(true);
    expect(outcomes.length).toBeGreaterThan(3);
  });

  test('a system prompt and newest turn that cannot fit fail with ERR_CONTEXT_OVERFLOW under truncate-oldest too', async () => {
    const messages = [{ role: 'system', content: SYSTEM_PROMPT }, { role: 'user', content: 'word '.repeat(300) }];
    await expect(engine.chat(messages, REPLY)).rejects.toMatchObject({ code: 'ERR_CONTEXT_OVERFLOW', message: expect.stringContaining('the system messages and the newest turn alone take') });
  });

  test('contextOverflow takes only its two policies', async () => {
    const messages = [{ role: 'user', content: 'Hi' }];
    await expect(engine.chat(messages, { contextOverflow: 'drop' })).rejects.toThrow(new TypeError(`contextOverflow must be 'truncate-oldest' or 'error', got "drop"`));
    await expect(engine.chat(messages, { contextOverflow: true })).rejects.toThrow(TypeError);
    await expect(engine.chat(messages, { contextOverflow: 'error', stream: true }).result.then((r) => r.truncatedMessages)).resolves.toBe(0);
    expect(() => require('../../express').createRouter(engine, { contextOverflow: 'truncate' })).toThrow(new TypeError(`contextOverflow must be 'truncate-oldest' or 'error', got "truncate"`));
  });

  describe('the router', () => {
    const ask = (client) => async (messages) => {
      const { data, response } = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: REPLY.maxTokens, temperature: 0, ignore_eos: true }).withResponse();
      return {
        reply: data.choices[0].message.content,
        truncatedMessages: Number(response.headers.get('x-pagedlm-truncated-messages')),
        promptTokens: data.usage.prompt_tokens,
      };
    };

    test("by default answers a chat that outgrows the context with OpenAI's 400 context_length_exceeded", async () => {
      const { server, client } = await startRouter(engine);
      try {
        await expect(converse(50, ask(client))).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'messages' });
      } finally {
        await stopRouter(server);
      }
    });

    test("with contextOverflow: 'truncate-oldest', a stateless client's 50-turn chat keeps going, says what was dropped and hits the cache", async () => {
      const { server, client, url } = await startRouter(engine, { contextOverflow: 'truncate-oldest' });
      try {
        const log = await converse(50, ask(client));
        expect(log[0].truncatedMessages).toBe(0);
        expect(log[49].truncatedMessages).toBeGreaterThan(50);
        for (const { sent, truncatedMessages, promptTokens: sentTokens } of log) {
          expect(sentTokens).toBe(promptTokens([sent[0], ...sent.slice(1 + truncatedMessages)]));
        }
        checkCacheHits(log);
        // Streaming: the header comes with the event stream.
        const messages = log[49].sent;
        const response = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ messages, max_tokens: 4, stream: true }),
        });
        expect(response.status).toBe(200);
        expect(response.headers.get('x-pagedlm-truncated-messages')).toBe(String(log[49].truncatedMessages));
        expect(await response.text()).toContain('data: [DONE]');
      } finally {
        await stopRouter(server);
      }
    });

    test('truncate-oldest still refuses a newest turn that cannot fit, with context_length_exceeded', async () => {
      const { server, client } = await startRouter(engine, { contextOverflow: 'truncate-oldest' });
      try {
        const messages = [{ role: 'system', content: SYSTEM_PROMPT }, { role: 'user', content: 'word '.repeat(300) }];
        await expect(client.chat.completions.create({ model: 'tiny', messages, max_tokens: 4 })).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'messages' });
      } finally {
        await stopRouter(server);
      }
    });
  });
});
