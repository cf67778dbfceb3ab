'use strict';
// Log-probabilities: generate()/stream()/chat() with `logprobs`, and the router's OpenAI shapes for chat
// (logprobs + top_logprobs) and completions (the legacy logprobs object), driven by the official client.
const { Engine } = require('../..');
const { startRouter, stopRouter } = require('../support/router');
const { describeWithModels } = require('../support/models');

// Checks what holds for any token's logprobs: the chosen entry is the token generated, every value is a
// log-probability, the alternatives come most likely first and their probabilities sum to at most 1.
function expectWellFormed(entries, tokens, top) {
  expect(entries.map((e) => e.token)).toEqual(tokens);
  for (const e of entries) {
    expect(e.logprob).toBeLessThanOrEqual(0);
    expect(e.top).toHaveLength(top);
    if (!e.text.includes('\ufffd')) expect(Buffer.from(e.bytes).toString('utf8')).toBe(e.text); // else a partial character
    for (let k = 1; k < e.top.length; k++) expect(e.top[k - 1].logprob).toBeGreaterThanOrEqual(e.top[k].logprob);
    expect(e.top.reduce((sum, t) => sum + Math.exp(t.logprob), 0)).toBeLessThanOrEqual(1 + 1e-6);
    const listed = e.top.find((t) => t.token === e.token);
    if (listed) expect(listed.logprob).toBe(e.logprob);
    else if (e.top.length > 0) expect(e.logprob).toBeLessThanOrEqual(e.top.at(-1).logprob);
  }
}

describeWithModels('logprobs in the JS API', ['stories260K.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath);
  });
  afterAll(() => engine.close());

  const prompt = 'Once upon a time';

  test('greedy: each token is its position\'s most likely one, and asking leaves the tokens as they were', async () => {
    const plain = await engine.generate(prompt, { maxTokens: 10, temperature: 0, ignoreEos: true });
    const withLogprobs = await engine.generate(prompt, { maxTokens: 10, temperature: 0, ignoreEos: true, logprobs: 5 });
    expect(plain.logprobs).toBeUndefined();
    expect(plain.choices[0].logprobs).toBeUndefined();
    expect(withLogprobs.tokens).toEqual(plain.tokens);
    expect(withLogprobs.choices[0].logprobs).toBe(withLogprobs.logprobs);
    expectWellFormed(withLogprobs.logprobs, plain.tokens, 5);
    for (const e of withLogprobs.logprobs) {
      expect(e.top[0].token).toBe(e.token);
      expect(e.top[0].logprob).toBe(e.logprob);
    }
  });

  test('they are the raw model distribution: the same whatever the sampling settings', async () => {
    const greedy = await engine.generate(prompt, { maxTokens: 1, temperature: 0, logprobs: 20 });
    const hot = await engine.generate(prompt, { maxTokens: 1, temperature: 1.7, topK: 3, seed: 9, logprobs: 20 });
    expect(hot.logprobs[0].top).toEqual(greedy.logprobs[0].top);
    expectWellFormed(hot.logprobs, hot.tokens, 20);
  });

  test('sampled runs with n completions: every completion carries its own, and a second run repeats them', async () => {
    const options = { maxTokens: 8, temperature: 1, seed: 3, n: 3, ignoreEos: true, logprobs: 2 };
    const first = await engine.generate(prompt, options);
    const second = await engine.generate(prompt, options);
    for (const c of first.choices) expectWellFormed(c.logprobs, c.tokens, 2);
    expect(second.choices.map((c) => c.logprobs)).toEqual(first.choices.map((c) => c.logprobs));
    // The completions share the prompt, so their first positions share one distribution.
    expect(first.choices[1].logprobs[0].top).toEqual(first.choices[0].logprobs[0].top);
  });

  test('logprobs: 0 gives each token\'s own logprob with no alternatives', async () => {
    const r = await engine.generate(prompt, { maxTokens: 4, temperature: 0, ignoreEos: true, logprobs: 0 });
    expectWellFormed(r.logprobs, r.tokens, 0);
  });

  test('onToken, stream() and chat({ stream: true }) events carry their token\'s entry', async () => {
    const seen = [];
    const done = await engine.generate(prompt, { maxTokens: 6, temperature: 0, ignoreEos: true, logprobs: 3, onToken: (t) => seen.push(t) });
    expect(seen.map((t) => t.logprobs)).toEqual(done.logprobs.map((e) => [e]));
    const streamed = [];
    const stream = engine.stream(prompt, { maxTokens: 6, temperature: 0, ignoreEos: true, logprobs: 3 });
    for await (const t of stream) streamed.push(...t.logprobs);
    expect(streamed).toEqual(done.logprobs);
    expect((await stream.result).logprobs).toEqual(done.logprobs);
    const chatted = [];
    for await (const t of engine.chat([{ role: 'user', content: 'Hi' }], { stream: true, maxTokens: 4, temperature: 0, ignoreEos: true, logprobs: 1 })) {
      chatted.push(t);
    }
    for (const t of chatted) expectWellFormed(t.logprobs, [t.id], 1);
  });

  test('out-of-range counts are errors naming the option', async () => {
    await expect(engine.generate(prompt, { logprobs: 21 })).rejects.toThrow(/logprobs/);
    await expect(engine.generate(prompt, { logprobs: -1 })).rejects.toThrow(/logprobs/);
    await expect(engine.generate(prompt, { logprobs: true })).rejects.toThrow(/logprobs/);
  });
});

describeWithModels('logprobs through the OpenAI router', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  let server;
  let client;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 512, kvCache: { blocks: 128 } });
    ({ server, client } = await startRouter(engine, { model: 'tiny' }));
  });
  afterAll(async () => {
    await stopRouter(server);
    await engine.close();
  });

  const messages = [{ role: 'user', content: 'Say something' }];
  const expectChatEntry = (e, top) => {
    expect(Object.keys(e).sort()).toEqual(['bytes', 'logprob', 'token', 'top_logprobs']);
    expect(typeof e.token).toBe('string');
    expect(e.logprob).toBeLessThanOrEqual(0);
    expect(e.bytes.every((b) => Number.isInteger(b) && b >= 0 && b < 256)).toBe(true);
    expect(e.top_logprobs).toHaveLength(top);
    for (const t of e.top_logprobs) expect(Object.keys(t).sort()).toEqual(['bytes', 'logprob', 'token']);
  };

  test('chat: logprobs + top_logprobs, the same in a stream as in one response', async () => {
    const request = { model: 'tiny', messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3 };
    const completion = await client.chat.completions.create(request);
    const { content, refusal } = completion.choices[0].logprobs;
    expect(refusal).toBeNull();
    expect(content).toHaveLength(completion.usage.completion_tokens);
    for (const e of content) {
      expectChatEntry(e, 3);
      expect(e.top_logprobs[0].logprob).toBe(e.logprob); // greedy
    }
    const streamed = [];
    for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
      streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    }
    expect(streamed).toEqual(content);
    const plain = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 2 });
    expect(plain.choices[0].logprobs).toBeNull();
    const own = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 2, logprobs: true });
    for (const e of own.choices[0].logprobs.content) expectChatEntry(e, 0);
  });

  test('completions: the legacy logprobs object, streamed too', async () => {
    const request = { model: 'tiny', prompt: 'The weather', max_tokens: 6, temperature: 0, logprobs: 2 };
    const completion = await client.completions.create(request);
    const lp = completion.choices[0].logprobs;
    expect(Object.keys(lp).sort()).toEqual(['text_offset', 'token_logprobs', 'tokens', 'top_logprobs']);
    expect(lp.tokens).toHaveLength(completion.usage.completion_tokens);
    expect(lp.tokens.join('')).toBe(completion.choices[0].text);
    let offset = 0;
    lp.tokens.forEach((token, i) => {
      expect(lp.text_offset[i]).toBe(offset);
      offset += token.length;
      expect(lp.token_logprobs[i]).toBeLessThanOrEqual(0);
      expect(lp.top_logprobs[i][token]).toBe(lp.token_logprobs[i]); // greedy: the sampled token is in its top
      expect(Object.keys(lp.top_logprobs[i]).length).toBeLessThanOrEqual(3);
    });
    const streamed = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for await (const chunk of await client.completions.create({ ...request, stream: true })) {
      const part = chunk.choices[0]?.logprobs;
      if (part) for (const key of Object.keys(streamed)) streamed[key].push(...part[key]);
    }
    expect(streamed).toEqual(lp);
  });

  test('bad logprobs fields are 400s naming the field', async () => {
    const status = (body) => client.chat.completions.create({ model: 'tiny', messages, max_tokens: 1, ...body }).then(() => 200, (e) => [e.status, e.param]);
    expect(await status({ top_logprobs: 2 })).toEqual([400, 'top_logprobs']);
    expect(await status({ logprobs: true, top_logprobs: 21 })).toEqual([400, 'top_logprobs']);
    expect(await status({ logprobs: 3 })).toEqual([400, 'logprobs']);
    const legacy = await client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 1, logprobs: 30 }).then(() => 200, (e) => [e.status, e.param]);
    expect(legacy).toEqual([400, 'logprobs']);
  });
});
