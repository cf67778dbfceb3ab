'use strict';
// The speculative option of generate(), chat(), stream() and Engine.load: its checks, the load-time default,
// and what a result and engine.stats() report. Identity with plain decoding is tested in the native suite
// (test/native/speculative_engine_test.cpp), where a test proposer can be plugged in.
const { Engine } = require('../..');
const { speculativeOption } = require('../../lib/options');
const { describeWithModels } = require('../support/models');
const { startRouter, stopRouter } = require('../support/router');

describe('speculativeOption', () => {
  test('false, a proposer name, or { proposer, tokens }', () => {
    expect(speculativeOption(undefined)).toBeUndefined();
    expect(speculativeOption(false)).toEqual({ proposer: 'none', tokens: 4 });
    expect(speculativeOption('ngram')).toEqual({ proposer: 'ngram', tokens: undefined }); // the engine fills it in
    expect(speculativeOption({ proposer: 'draft', tokens: 16 })).toEqual({ proposer: 'draft', tokens: 16 });
    expect(speculativeOption({ proposer: 'ngram' })).toEqual({ proposer: 'ngram', tokens: undefined });
  });

  test('wrong types are TypeErrors, wrong values RangeErrors, each naming the option', () => {
    expect(() => speculativeOption(true)).toThrow(new TypeError("speculative must be false, 'ngram', 'draft' or { proposer, tokens }, got boolean true"));
    expect(() => speculativeOption(null)).toThrow(TypeError);
    expect(() => speculativeOption(['ngram'])).toThrow(TypeError);
    expect(() => speculativeOption('medusa')).toThrow(new RangeError("speculative must be one of 'ngram', 'draft', got \"medusa\""));
    expect(() => speculativeOption({ tokens: 2 })).toThrow(new TypeError("speculative.proposer must be one of 'ngram', 'draft', got nothing"));
    expect(() => speculativeOption({ proposer: 'ngram', tokens: 0 })).toThrow(new RangeError('speculative.tokens must be at least 1 and at most 16, got 0'));
    expect(() => speculativeOption({ proposer: 'ngram', tokens: 17 })).toThrow(RangeError);
    expect(() => speculativeOption({ proposer: 'ngram', tokens: 2.5 })).toThrow(new RangeError('speculative.tokens must be an integer, got 2.5'));
    expect(() => speculativeOption({ proposer: 'ngram', token: 2 })).toThrow(new TypeError("unknown option 'token' in speculative: did you mean 'tokens'?"));
  });
});

describeWithModels('speculative decoding through the API', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 128, kvCache: { blocks: 64 } });
  });
  afterAll(() => engine.close());

  test('each entry point checks the option', async () => {
    await expect(engine.generate('Hi', { speculative: 'medusa' })).rejects.toThrow(RangeError);
    await expect(engine.chat([{ role: 'user', content: 'Hi' }], { speculative: { proposer: 'ngram', tokens: 99 } })).rejects.toThrow(RangeError);
    await expect(engine.stream('Hi', { speculative: 1 }).next()).rejects.toThrow(TypeError);
    await expect(Engine.load(modelPath, { speculative: 'eagle' })).rejects.toThrow(RangeError);
  });

  test('a proposer the engine lacks rejects the request', async () => {
    await expect(engine.generate('Hi', { maxTokens: 2, speculative: 'draft' })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED', message: expect.stringMatching(/draft model/) });
  });

  test('plain requests report no speculation, and the stats count none', async () => {
    const plain = await engine.generate('Hi', { maxTokens: 3, temperature: 0 });
    const off = await engine.generate('Hi', { maxTokens: 3, temperature: 0, speculative: false });
    expect(plain).not.toHaveProperty('speculation');
    expect(off).not.toHaveProperty('speculation');
    expect(off.tokens).toEqual(plain.tokens);
    expect(engine.stats().speculation).toEqual({ proposed: 0, accepted: 0, acceptanceRate: 0, tokensPerStep: 0 });
  });

  test('the router takes it as a pagedlm extension field', async () => {
    const { server, url } = await startRouter(engine);
    try {
      const post = (body) => fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Hi', max_tokens: 2, ...body }) });
      const bad = await post({ speculative: { proposer: 'ngram', tokens: 40 } });
      expect(bad.status).toBe(400);
      expect((await bad.json()).error).toMatchObject({ param: 'speculative', message: 'speculative.tokens must be at least 1 and at most 16, got 40' });
      const lacking = await post({ speculative: 'draft' });
      expect(lacking.status).toBe(400);
      expect((await lacking.json()).error).toMatchObject({ code: 'unsupported_value', message: expect.stringMatching(/draft model/) });
      const off = await post({ speculative: false, temperature: 0 });
      expect(off.status).toBe(200);
      expect((await off.json()).choices[0].text).toBe((await engine.generate('Hi', { maxTokens: 2, temperature: 0 })).text);
    } finally {
      await stopRouter(server);
    }
  });

  test('the load-time default applies to requests that do not say, and false overrides it', async () => {
    const speculating = await Engine.load(modelPath, { contextLength: 128, kvCache: { blocks: 64 }, speculative: { proposer: 'draft', tokens: 3 } });
    try {
      await expect(speculating.generate('Hi', { maxTokens: 2 })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
      const off = await speculating.generate('Hi', { maxTokens: 2, temperature: 0, speculative: false });
      expect(off).not.toHaveProperty('speculation');
      expect(off.tokens).toHaveLength(2);
    } finally {
      speculating.close();
    }
  });
});

describeWithModels('n-gram speculation end to end', ['aidreams260K.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { threads: 1 });
  });
  afterAll(() => engine.close());
  // Text that repeats itself, so the n-gram proposer finds what follows.
  const prompt = 'Once upon a time, there was a little cat. Once upon a time, there was a little cat. Once upon a time,';

  test('greedy and seeded sampling give the plain tokens, and the counters say what speculation did', async () => {
    for (const sampling of [{ temperature: 0 }, { temperature: 0.9, seed: 5 }]) {
      const options = { ...sampling, maxTokens: 40, ignoreEos: true };
      const plain = await engine.generate(prompt, options);
      const fast = await engine.generate(prompt, { ...options, speculative: { proposer: 'ngram', tokens: 6 } });
      expect(fast.tokens).toEqual(plain.tokens);
      expect(fast.text).toBe(plain.text);
      const { proposed, accepted, acceptanceRate, tokensPerStep } = fast.speculation;
      expect(proposed).toBeGreaterThan(0);
      expect(accepted).toBeLessThanOrEqual(proposed);
      expect(acceptanceRate).toBeCloseTo(accepted / proposed);
      expect(tokensPerStep).toBeGreaterThanOrEqual(1);
    }
    const stats = engine.stats().speculation;
    expect(stats.proposed).toBeGreaterThan(0);
    expect(stats.acceptanceRate).toBeGreaterThan(0);
  });

  test('streamed tokens are the result tokens, one event per token', async () => {
    const streamed = [];
    const result = await engine.generate(prompt, { temperature: 0, maxTokens: 30, ignoreEos: true, speculative: 'ngram', onToken: (t) => streamed.push(t.id) });
    expect(streamed).toEqual(result.tokens);
  });
});

describeWithModels('draft-model speculation end to end', ['aidreams260K.gguf'], (modelPath) => {
  test("a 'draft' request proposes the load's draft.tokens a step unless it names its own", async () => {
    // The model as its own draft: every proposal is accepted, so tokens per step grow to k + 1.
    const engine = await Engine.load(modelPath, { threads: 1, draft: { model: modelPath, tokens: 8 } });
    try {
      const options = { temperature: 0, maxTokens: 64, ignoreEos: true };
      const plain = await engine.generate('Once upon a time', options);
      const byLoad = await engine.generate('Once upon a time', { ...options, speculative: 'draft' });
      const byRequest = await engine.generate('Once upon a time', { ...options, speculative: { proposer: 'draft', tokens: 2 } });
      expect(byLoad.tokens).toEqual(plain.tokens);
      expect(byRequest.tokens).toEqual(plain.tokens);
      expect(byRequest.speculation.tokensPerStep).toBeLessThanOrEqual(3);
      expect(byLoad.speculation.tokensPerStep).toBeGreaterThan(5); // more than the default 4 could give
    } finally {
      await engine.close();
    }
  });
});
